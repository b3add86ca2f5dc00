//! The CUDA kernels compile and assemble, without a GPU: every `kernels/*.cu` file goes through
//! the backend's own NVRTC path (the `nvidia-cuda-nvrtc-cu12` wheel) for sm_80 and sm_90, then
//! through `ptxas` (the `nvidia-cuda-nvcc-cu12` wheel), which must report no register spills in
//! the hot kernels. Both wheels come with `scripts/requirements-test.txt`; without them the
//! tests skip, unless `MLWF_REQUIRE_PYTHON` is set (as `scripts/test.sh` does), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mlwf::train::cuda::compile::{Arch, KernelSource, Nvrtc, HOT_KERNELS, KERNELS};

/// The matmul modes that must run on tensor cores, and the instruction that shows it.
const TENSOR_CORE_OPS: [(&str, &str); 2] = [
    (
        "gemm_tf32",
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
    ),
    (
        "gemm_bf16",
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
    ),
];

const ARCHS: [Arch; 2] = [Arch { major: 8, minor: 0 }, Arch { major: 9, minor: 0 }];

/// The CUDA wheels of the test venv: NVRTC loaded, and the path of ptxas.
struct Toolchain {
    nvrtc: Nvrtc,
    ptxas: PathBuf,
}

/// The directory of `package`'s files in the venv of `MLWF_PYTHON` (else `.venv/bin/python`).
fn wheel_dir(package: &str) -> Option<PathBuf> {
    let python = std::env::var_os("MLWF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let script = format!(
        "import importlib.util as u; print(u.find_spec('{package}').submodule_search_locations[0])"
    );
    let out = Command::new(python).args(["-c", &script]).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The toolchain, or `None` (the test skips and says why) when the wheels are missing, unless
/// `MLWF_REQUIRE_PYTHON` is set.
fn toolchain() -> Option<&'static Toolchain> {
    static TOOLCHAIN: OnceLock<Result<Toolchain, String>> = OnceLock::new();
    let found = TOOLCHAIN.get_or_init(|| {
        let missing = "the nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvcc-cu12 wheels are not in \
                       the test venv (set MLWF_PYTHON or run scripts/test.sh)";
        let nvrtc_dir = wheel_dir("nvidia.cuda_nvrtc").ok_or(missing)?.join("lib");
        let ptxas = wheel_dir("nvidia.cuda_nvcc")
            .ok_or(missing)?
            .join("bin/ptxas");
        let nvrtc = Nvrtc::load(Some(&nvrtc_dir)).map_err(|e| format!("{e:#}"))?;
        Ok(Toolchain { nvrtc, ptxas })
    });
    match found {
        Ok(toolchain) => Some(toolchain),
        Err(why) => {
            assert!(std::env::var_os("MLWF_REQUIRE_PYTHON").is_none(), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// One entry point's resources as `ptxas -v` reports them.
#[derive(Debug)]
struct Usage {
    entry: String,
    registers: u32,
    spill_bytes: u32,
}

/// Parses `ptxas -v`: a "Compiling entry function 'NAME'" line, then one with
/// "N bytes spill stores, M bytes spill loads", then one with "Used R registers".
fn parse_ptxas(log: &str) -> Vec<Usage> {
    let number_before = |line: &str, unit: &str| -> u32 {
        let at = line.find(unit).unwrap_or(0);
        line[..at]
            .split(|c: char| !c.is_ascii_digit())
            .rfind(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let mut usages: Vec<Usage> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let entry = rest.split('\'').next().unwrap_or_default().to_string();
            usages.push(Usage {
                entry,
                registers: 0,
                spill_bytes: 0,
            });
        } else if let Some(usage) = usages.last_mut() {
            if line.contains("spill stores") {
                usage.spill_bytes += number_before(line, "bytes spill stores")
                    + number_before(line, "bytes spill loads");
            }
            if line.contains("Used") && line.contains("registers") {
                usage.registers = number_before(line, "registers");
            }
        }
    }
    usages
}

fn assemble(ptxas: &Path, ptx: &str, file: &str, arch: Arch, dir: &Path) -> (bool, String) {
    let ptx_path = dir.join(format!("{file}.{}.ptx", arch.sm()));
    std::fs::write(&ptx_path, ptx).unwrap();
    let out = Command::new(ptxas)
        .arg(format!("-arch={}", arch.sm()))
        .arg("-v")
        .arg(&ptx_path)
        .arg("-o")
        .arg(ptx_path.with_extension("cubin"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), log)
}

#[test]
fn every_kernel_compiles_and_assembles_without_hot_spills() {
    let Some(tc) = toolchain() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for arch in ARCHS {
        for kernel in &KERNELS {
            let ptx = match tc.nvrtc.compile(kernel, arch) {
                Ok(ptx) => ptx,
                Err(e) => {
                    failures.push(format!("{e:#}"));
                    continue;
                }
            };
            for (entry, instruction) in TENSOR_CORE_OPS {
                if kernel.entries.contains(&entry) && !ptx.contains(instruction) {
                    failures.push(format!("{entry}: no {instruction} in its PTX"));
                }
            }
            let (ok, log) = assemble(&tc.ptxas, &ptx, kernel.file, arch, dir.path());
            if !ok {
                failures.push(format!(
                    "ptxas failed on {} for {}:\n{log}",
                    kernel.file,
                    arch.sm()
                ));
                continue;
            }
            let usages = parse_ptxas(&log);
            for &entry in kernel.entries {
                let Some(usage) = usages.iter().find(|u| u.entry == entry) else {
                    failures.push(format!(
                        "{}: no entry point {entry} in the PTX for {} (ptxas log:\n{log})",
                        kernel.file,
                        arch.sm()
                    ));
                    continue;
                };
                eprintln!(
                    "{} {:>26}: {:>3} registers, {} spill bytes",
                    arch.sm(),
                    entry,
                    usage.registers,
                    usage.spill_bytes
                );
                if HOT_KERNELS.contains(&entry) && usage.spill_bytes > 0 {
                    failures.push(format!(
                        "{entry} spills registers on {} ({} bytes); ptxas log:\n{log}",
                        arch.sm(),
                        usage.spill_bytes
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_broken_kernel_fails_with_the_compiler_log() {
    let Some(tc) = toolchain() else { return };
    let broken = KernelSource {
        file: "broken.cu",
        source: "extern \"C\" __global__ void broken(float* x) {\n    x[0] = not_declared;\n}\n",
        entries: &["broken"],
        layout_checks: None,
    };
    let err = format!("{:#}", tc.nvrtc.compile(&broken, ARCHS[1]).unwrap_err());
    assert!(
        err.contains("broken.cu(2)"),
        "the log names the file and line: {err}"
    );
    assert!(
        err.contains("not_declared"),
        "the log names the problem: {err}"
    );
    assert!(
        err.contains("compute_90"),
        "the error names the target: {err}"
    );
}

#[test]
fn ptxas_spill_reports_are_read() {
    // The format of ptxas 12.x, so that a spilling kernel cannot pass unnoticed.
    let log = "ptxas info    : Compiling entry function 'gemm_bf16' for 'sm_90'\n\
               ptxas info    : Function properties for gemm_bf16\n\
               \x20   16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
               ptxas info    : Used 255 registers, used 1 barriers, 10240 bytes smem\n";
    let usages = parse_ptxas(log);
    assert_eq!(usages.len(), 1);
    assert_eq!(usages[0].entry, "gemm_bf16");
    assert_eq!(usages[0].spill_bytes, 20);
    assert_eq!(usages[0].registers, 255);
}

#[test]
fn compiled_kernels_are_cached_by_source_arch_and_nvrtc_version() {
    let Some(tc) = toolchain() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kernel = &KERNELS[0];
    let ptx = tc
        .nvrtc
        .compile_cached(kernel, ARCHS[0], Some(dir.path()))
        .unwrap();
    let cached: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(std::fs::read_to_string(&cached[0]).unwrap(), ptx);
    // A second call reads the file instead of compiling.
    std::fs::write(&cached[0], "// from the cache").unwrap();
    let again = tc
        .nvrtc
        .compile_cached(kernel, ARCHS[0], Some(dir.path()))
        .unwrap();
    assert_eq!(again, "// from the cache");
    // Another architecture is another entry.
    tc.nvrtc
        .compile_cached(kernel, ARCHS[1], Some(dir.path()))
        .unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // An unwritable cache costs a compile, not the run.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    assert_eq!(
        tc.nvrtc
            .compile_cached(kernel, ARCHS[0], Some(&file))
            .unwrap(),
        ptx
    );
}

#[test]
fn an_nvrtc_directory_without_nvrtc_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("libnvrtc.so.13"), "not a library").unwrap();
    let err = format!("{:#}", Nvrtc::load(Some(dir.path())).unwrap_err());
    assert!(
        err.contains("under a name cudarc loads") && err.contains(&*dir.path().to_string_lossy()),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let err = format!("{:#}", Nvrtc::load(Some(&missing)).unwrap_err());
    assert!(err.contains("reading the NVRTC library directory"), "{err}");
}
