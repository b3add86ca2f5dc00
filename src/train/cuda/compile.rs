//! The kernel sources, compiled at run time by NVRTC for the device's exact architecture and
//! cached on disk.
//!
//! Sources are embedded in the binary, so a build needs no CUDA toolkit and a run compiles
//! exactly the kernels it was built with. The cache key is the SHA-256 of everything that
//! determines the PTX: the source (with the shared prelude), the target architecture, the NVRTC
//! version and the compiler options.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use cudarc::nvrtc::{self, CompileError, CompileOptions};
use sha2::{Digest, Sha256};

/// One kernel family: a `kernels/*.cu` file and the entry points the backend launches from it.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// The file name, as compiler messages show it.
    pub file: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
    /// Compile-time checks appended to the source: `static_assert`s that a parameter struct
    /// matches its Rust mirror, so a mismatch fails the compile instead of a launch.
    pub layout_checks: Option<fn() -> String>,
}

/// Definitions every kernel file uses (reductions, index loops); prepended to each.
pub const PRELUDE: &str = include_str!("../../../kernels/common.cuh");

macro_rules! kernel {
    ($file:literal, [$($entry:literal),* $(,)?]) => {
        kernel!($file, [$($entry),*], None)
    };
    ($file:literal, [$($entry:literal),* $(,)?], $checks:expr) => {
        KernelSource {
            file: $file,
            source: include_str!(concat!("../../../kernels/", $file)),
            entries: &[$($entry),*],
            layout_checks: $checks,
        }
    };
}

/// Every kernel family the backend loads.
pub const KERNELS: [KernelSource; 10] = [
    kernel!("embedding.cu", ["embedding_forward", "embedding_backward"]),
    kernel!(
        "layernorm.cu",
        [
            "layernorm_forward",
            "layernorm_backward_input",
            "layernorm_backward_params"
        ]
    ),
    kernel!(
        "matmul.cu",
        ["gemm_fp32", "gemm_tf32", "gemm_bf16", "bias_backward"],
        Some(super::matmul::layout_checks)
    ),
    kernel!(
        "attention.cu",
        ["causal_softmax_forward", "causal_softmax_backward"]
    ),
    kernel!("gelu.cu", ["gelu_forward", "gelu_backward"]),
    kernel!("residual.cu", ["residual_forward", "residual_backward"]),
    kernel!("dropout.cu", ["dropout"]),
    kernel!("classifier.cu", ["softmax_cross_entropy"]),
    kernel!("adamw.cu", ["adamw"]),
    kernel!("norm.cu", ["sum_squares", "scale"]),
];

/// The entry points that run once or more per layer per step: where a register spill costs.
pub const HOT_KERNELS: [&str; 9] = [
    "gemm_tf32",
    "gemm_bf16",
    "gemm_fp32",
    "layernorm_forward",
    "layernorm_backward_input",
    "causal_softmax_forward",
    "causal_softmax_backward",
    "softmax_cross_entropy",
    "adamw",
];

impl KernelSource {
    /// The text NVRTC compiles: the prelude, then the file, with a `#line` marker so that
    /// messages about the file name its own lines.
    pub fn full_source(&self) -> String {
        let checks = self.layout_checks.map(|f| f()).unwrap_or_default();
        format!(
            "#line 1 \"common.cuh\"\n{PRELUDE}\n#line 1 \"{}\"\n{}\n{checks}",
            self.file, self.source
        )
    }
}

/// A compute capability, e.g. `(9, 0)` for H100/H200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    /// The PTX virtual architecture NVRTC targets, e.g. `compute_90`.
    pub fn compute(&self) -> String {
        format!("compute_{}{}", self.major, self.minor)
    }

    /// The real architecture ptxas assembles for, e.g. `sm_90`.
    pub fn sm(&self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }
}

/// Environment variable naming a directory that holds `libnvrtc.so*` (and its builtins), e.g.
/// the `nvidia/cuda_nvrtc/lib` folder of the `nvidia-cuda-nvrtc-cu12` wheel.
pub const NVRTC_DIR_ENV: &str = "MLWF_NVRTC_LIB_DIR";

/// Libraries loaded by absolute path. They stay loaded for the life of the process: the dynamic
/// loader then resolves cudarc's later `dlopen("libnvrtc.so.12")` (and NVRTC's own dlopen of its
/// builtins) to these by their soname, whatever `LD_LIBRARY_PATH` says.
static PRELOADED: OnceLock<Vec<libloading::Library>> = OnceLock::new();

fn preload(dir: &Path) -> Result<()> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the NVRTC library directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // The `.alt` variants are the same libraries built for another C++ ABI.
            name.starts_with("libnvrtc") && name.contains(".so") && !name.contains(".alt.")
        })
        .collect();
    // The builtins first: libnvrtc looks for them as soon as it compiles.
    let is_builtins = |path: &PathBuf| path.to_string_lossy().contains("builtins");
    found.sort_by_key(|path| !is_builtins(path));
    // The loader hands the preloaded library to cudarc only under a name cudarc asks for.
    let wanted = cudarc::get_lib_name_candidates("nvrtc");
    let usable = |path: &PathBuf| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        !is_builtins(path) && wanted.iter().any(|w| w == name)
    };
    if !found.iter().any(usable) {
        bail!(
            "no libnvrtc in {} under a name cudarc loads (such as libnvrtc.so or \
             libnvrtc.so.12); for another CUDA major version, put a libnvrtc.so link to it \
             first on LD_LIBRARY_PATH instead",
            dir.display()
        );
    }
    let mut libs = Vec::new();
    for path in &found {
        // SAFETY: loading NVRTC runs no initialization code with preconditions of ours.
        let lib = unsafe { libloading::Library::new(path) }
            .with_context(|| format!("loading {}", path.display()))?;
        libs.push(lib);
    }
    // A second preload (another directory) keeps the first: the loader already resolved to it.
    let _ = PRELOADED.set(libs);
    Ok(())
}

/// A loaded NVRTC.
#[derive(Debug, Clone, Copy)]
pub struct Nvrtc {
    /// `(major, minor)`, e.g. `(12, 9)`.
    pub version: (i32, i32),
}

impl Nvrtc {
    /// Loads NVRTC from `dir`, else from the directory in `MLWF_NVRTC_LIB_DIR`, else from the
    /// loader's search path (`LD_LIBRARY_PATH`, the system). Fails, never panics, when it is
    /// missing.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let from_env = std::env::var_os(NVRTC_DIR_ENV).map(PathBuf::from);
        if let Some(dir) = dir.map(Path::to_path_buf).or(from_env) {
            preload(&dir)?;
        }
        // SAFETY: only tries to dlopen the candidate names; cudarc panics on a missing library
        // at its first call, so this check has to come before any.
        if !unsafe { nvrtc::sys::is_culib_present() } {
            bail!(
                "NVRTC (libnvrtc.so) not found: install the CUDA toolkit or the \
                 nvidia-cuda-nvrtc-cu12 wheel and add its lib directory to LD_LIBRARY_PATH, \
                 or set {NVRTC_DIR_ENV} to it"
            );
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library is present; nvrtcVersion writes two ints.
        unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .context("nvrtcVersion failed")?;
        Ok(Self {
            version: (major, minor),
        })
    }

    pub fn version_string(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    fn options(arch: Arch) -> Vec<String> {
        vec![
            format!("--gpu-architecture={}", arch.compute()),
            "--std=c++17".into(),
            // Line tables only: profilers map time to source lines, at no cost in speed.
            "--generate-line-info".into(),
        ]
    }

    /// Compiles `kernel` to PTX for `arch`. A compile error carries NVRTC's log.
    pub fn compile(&self, kernel: &KernelSource, arch: Arch) -> Result<String> {
        compile_source(kernel.file, &kernel.full_source(), arch)
    }

    /// [`Nvrtc::compile`] through the on-disk cache in `cache_dir`. A cache that cannot be read
    /// or written costs a compile, never the run.
    pub fn compile_cached(
        &self,
        kernel: &KernelSource,
        arch: Arch,
        cache_dir: Option<&Path>,
    ) -> Result<String> {
        let source = kernel.full_source();
        let Some(dir) = cache_dir else {
            return compile_source(kernel.file, &source, arch);
        };
        let mut hash = Sha256::new();
        for part in [&source, &arch.compute(), &self.version_string()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for option in Self::options(arch) {
            hash.update(option.as_bytes());
            hash.update([0]);
        }
        let key = hex::encode(hash.finalize());
        let stem = kernel.file.trim_end_matches(".cu");
        let path = dir.join(format!("{stem}-{}-{}.ptx", arch.sm(), &key[..16]));
        if let Ok(ptx) = std::fs::read_to_string(&path) {
            return Ok(ptx);
        }
        let ptx = compile_source(kernel.file, &source, arch)?;
        if let Err(err) = write_atomically(&path, &ptx) {
            tracing::warn!("kernel cache: could not write {}: {err:#}", path.display());
        }
        Ok(ptx)
    }
}

fn compile_source(file: &str, source: &str, arch: Arch) -> Result<String> {
    let options = CompileOptions {
        options: Nvrtc::options(arch),
        name: Some(file.to_string()),
        ..Default::default()
    };
    match nvrtc::compile_ptx_with_opts(source, options) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => bail!(
            "NVRTC failed to compile {file} for {}:\n{}",
            arch.compute(),
            log.to_string_lossy().trim_end()
        ),
        Err(err) => Err(anyhow::Error::new(err).context(format!("NVRTC failed on {file}"))),
    }
}

/// Writes through a temporary file in the same directory, so a concurrent run never reads a
/// half-written PTX file.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path)?;
    Ok(())
}

/// The kernel cache directory: `$MLWF_KERNEL_CACHE`, else `$XDG_CACHE_HOME/mlwf/kernels`, else
/// `~/.cache/mlwf/kernels`; `None` when none can be named.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("MLWF_KERNEL_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("mlwf/kernels")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/mlwf/kernels")))
}
