//! Opening a GPU: the driver library, the device, its facts, and the compiled kernels.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use super::compile::{cache_dir, Arch, Nvrtc, KERNELS};
use crate::train::backend::DeviceError;

/// Whether the CUDA driver library (`libcuda.so`) can be loaded. cudarc panics at its first call
/// when it cannot, so every path into the driver API checks this first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the candidate names.
    unsafe { sys::is_culib_present() }
}

/// `cuDriverGetVersion`'s encoding, 1000·major + 10·minor, as `major.minor`.
fn cuda_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The CUDA version the installed driver supports, e.g. 13000 for CUDA 13.0.
fn driver_version() -> Result<i32> {
    let mut version = 0;
    // SAFETY: the driver library is present (checked by the caller); writes one int.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .context("cuDriverGetVersion failed")?;
    Ok(version)
}

/// Fails when NVRTC is newer than the driver: its PTX would use an ISA version the driver's JIT
/// does not know, and loading would fail with a less helpful code. `driver` is
/// `cuDriverGetVersion`'s 1000·major + 10·minor.
fn check_nvrtc_supported(nvrtc: (i32, i32), driver: i32) -> Result<()> {
    let nvrtc_encoded = 1000 * nvrtc.0 + 10 * nvrtc.1;
    if nvrtc_encoded > driver {
        bail!(
            "NVRTC {}.{} is newer than the driver, which supports CUDA {}: use an NVRTC no newer \
             than that (put its lib directory first on LD_LIBRARY_PATH, or set {}) or update \
             the driver",
            nvrtc.0,
            nvrtc.1,
            cuda_version_string(driver),
            super::compile::NVRTC_DIR_ENV,
        );
    }
    Ok(())
}

/// What a run records about its GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFacts {
    pub ordinal: usize,
    pub name: String,
    pub total_memory_bytes: usize,
    pub arch: Arch,
    pub multiprocessors: u32,
    /// The CUDA version the driver supports, e.g. `13.0`.
    pub driver_cuda_version: String,
    pub nvrtc_version: String,
}

/// A device with its context, the one stream every op runs on, and the loaded kernels.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub facts: GpuFacts,
    functions: HashMap<&'static str, CudaFunction>,
}

/// A driver call's failure on device `ordinal`, classified (out of memory, or another
/// failure) with the driver's error kept as its source.
pub fn device_error(ordinal: usize, what: &str, err: DriverError) -> anyhow::Error {
    let device = format!("cuda:{ordinal}");
    let what = what.to_owned();
    let source = Box::new(err);
    if err.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        DeviceError::OutOfMemory {
            device,
            what,
            source,
        }
    } else {
        DeviceError::Failed {
            device,
            what,
            source,
        }
    }
    .into()
}

fn driver(ordinal: usize, what: &str) -> impl FnOnce(DriverError) -> anyhow::Error + '_ {
    move |e| device_error(ordinal, what, e)
}

impl Gpu {
    /// Opens device `ordinal` and compiles (or loads from the cache) every kernel for it.
    pub fn open(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            bail!("no CUDA driver: libcuda.so is not installed or not on the loader's path");
        }
        let count =
            CudaContext::device_count().map_err(driver(ordinal, "counting CUDA devices"))?;
        if count <= 0 {
            bail!("the CUDA driver sees no GPU");
        }
        if ordinal >= count as usize {
            bail!("there is no cuda:{ordinal}: the driver sees {count} GPU(s)");
        }
        let nvrtc = Nvrtc::load(None)?;
        let driver_cuda = driver_version()?;
        check_nvrtc_supported(nvrtc.version, driver_cuda)?;
        let ctx = CudaContext::new(ordinal).map_err(driver(ordinal, "creating a CUDA context"))?;
        // One stream orders every op, so cudarc's per-buffer events (which serialize access
        // across streams) are pure overhead. Buffers are only created after this.
        // SAFETY: the backend uses no stream but `stream` below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver(ordinal, "reading the compute capability"))?;
        let arch = Arch {
            major: major as u32,
            minor: minor as u32,
        };
        let name = ctx
            .name()
            .map_err(driver(ordinal, "reading the GPU name"))?;
        if major < 8 {
            bail!(
                "{name} (compute capability {major}.{minor}) is too old: the kernels use \
                 mma.sync, which needs compute capability 8.0 (Ampere) or newer"
            );
        }
        let multiprocessors =
            ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(driver(ordinal, "reading the multiprocessor count"))? as u32;
        let facts = GpuFacts {
            ordinal,
            total_memory_bytes: ctx
                .total_mem()
                .map_err(driver(ordinal, "reading the memory size"))?,
            name,
            arch,
            multiprocessors,
            driver_cuda_version: cuda_version_string(driver_cuda),
            nvrtc_version: nvrtc.version_string(),
        };
        let functions = load_kernels(&ctx, &nvrtc, &facts)?;
        Ok(Self {
            ctx,
            stream,
            facts,
            functions,
        })
    }

    /// The loaded entry point `name`; every name the backend uses is in [`KERNELS`], all
    /// loaded by [`Gpu::open`].
    pub fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .with_context(|| format!("kernel {name} is not loaded"))
    }

    /// A failed driver call on this GPU (see [`device_error`]).
    pub fn error(&self, what: &str, err: DriverError) -> anyhow::Error {
        device_error(self.facts.ordinal, what, err)
    }
}

fn load_kernels(
    ctx: &Arc<CudaContext>,
    nvrtc: &Nvrtc,
    facts: &GpuFacts,
) -> Result<HashMap<&'static str, CudaFunction>> {
    let cache = cache_dir();
    let mut functions = HashMap::new();
    for kernel in &KERNELS {
        let ptx = nvrtc.compile_cached(kernel, facts.arch, cache.as_deref())?;
        let module = ctx.load_module(Ptx::from_src(ptx)).map_err(|e| {
            if e.0 == sys::cudaError_enum::CUDA_ERROR_UNSUPPORTED_PTX_VERSION {
                anyhow!(
                    "the driver (CUDA {}) cannot load PTX from NVRTC {}: NVRTC is newer than the \
                     driver supports; use an NVRTC no newer than CUDA {} (set {} to its lib \
                     directory) or update the driver",
                    facts.driver_cuda_version,
                    facts.nvrtc_version,
                    facts.driver_cuda_version,
                    super::compile::NVRTC_DIR_ENV,
                )
            } else {
                anyhow::Error::new(e).context(format!("loading the {} kernels", kernel.file))
            }
        })?;
        for &entry in kernel.entries {
            let function = module
                .load_function(entry)
                .with_context(|| format!("loading kernel {entry} from {}", kernel.file))?;
            functions.insert(entry, function);
        }
    }
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvrtc_newer_than_the_driver_is_a_clear_error() {
        check_nvrtc_supported((12, 9), 13000).unwrap();
        check_nvrtc_supported((13, 0), 13000).unwrap();
        let err = check_nvrtc_supported((13, 1), 13000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NVRTC 13.1 is newer than the driver, which supports CUDA 13.0"),
            "{err}"
        );
        assert!(check_nvrtc_supported((12, 9), 12080).is_err());
        assert_eq!(cuda_version_string(12090), "12.9");
    }
}
