//! GPU system metrics with the official W&B client's keys (`gpu.{i}.*`): memory from the CUDA
//! driver, always; utilisation, temperature and power from NVML (`libnvidia-ml.so.1`, installed
//! with every NVIDIA driver), when it loads. cudarc has no NVML binding, so the five calls used
//! are bound here by hand.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext};
use serde_json::json;

use crate::train::backend::MetricSource;
use crate::wandb::Row;

type NvmlDevice = *mut c_void;

#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    gpu: c_uint,
    memory: c_uint,
}

/// The NVML entry points used, resolved once.
struct Nvml {
    _lib: libloading::Library,
    device: NvmlDevice,
    utilization: unsafe extern "C" fn(NvmlDevice, *mut NvmlUtilization) -> c_int,
    temperature: unsafe extern "C" fn(NvmlDevice, c_int, *mut c_uint) -> c_int,
    power: unsafe extern "C" fn(NvmlDevice, *mut c_uint) -> c_int,
}

// SAFETY: NVML is thread-safe, and the device handle is an opaque token valid for the library's
// lifetime, which `_lib` holds.
unsafe impl Send for Nvml {}

const NVML_SUCCESS: c_int = 0;
const NVML_TEMPERATURE_GPU: c_int = 0;

impl Nvml {
    /// NVML's handle for the device with this PCI bus id, or `None` when NVML is unavailable.
    fn open(pci_bus_id: &str) -> Option<Self> {
        // SAFETY: the symbols are declared with NVML's documented C signatures; every call
        // checks its return code.
        unsafe {
            let lib = libloading::Library::new("libnvidia-ml.so.1").ok()?;
            let init: libloading::Symbol<unsafe extern "C" fn() -> c_int> =
                lib.get(b"nvmlInit_v2").ok()?;
            if init() != NVML_SUCCESS {
                return None;
            }
            let by_bus: libloading::Symbol<
                unsafe extern "C" fn(*const c_char, *mut NvmlDevice) -> c_int,
            > = lib.get(b"nvmlDeviceGetHandleByPciBusId_v2").ok()?;
            let bus = std::ffi::CString::new(pci_bus_id).ok()?;
            let mut device: NvmlDevice = std::ptr::null_mut();
            if by_bus(bus.as_ptr(), &mut device) != NVML_SUCCESS {
                return None;
            }
            let utilization = *lib.get(b"nvmlDeviceGetUtilizationRates").ok()?;
            let temperature = *lib.get(b"nvmlDeviceGetTemperature").ok()?;
            let power = *lib.get(b"nvmlDeviceGetPowerUsage").ok()?;
            Some(Self {
                _lib: lib,
                device,
                utilization,
                temperature,
                power,
            })
        }
    }

    fn sample(&self, prefix: &str, row: &mut Row) {
        // SAFETY: valid device handle and out-pointers to locals.
        unsafe {
            let mut u = NvmlUtilization::default();
            if (self.utilization)(self.device, &mut u) == NVML_SUCCESS {
                row.insert(format!("{prefix}.gpu"), json!(u.gpu));
                row.insert(format!("{prefix}.memory"), json!(u.memory));
            }
            let mut temp = 0;
            if (self.temperature)(self.device, NVML_TEMPERATURE_GPU, &mut temp) == NVML_SUCCESS {
                row.insert(format!("{prefix}.temp"), json!(temp));
            }
            let mut milliwatts = 0;
            if (self.power)(self.device, &mut milliwatts) == NVML_SUCCESS {
                row.insert(
                    format!("{prefix}.powerWatts"),
                    json!(f64::from(milliwatts) / 1000.0),
                );
            }
        }
    }
}

/// The PCI bus id of the context's device, the key that NVML and CUDA number devices by alike
/// (their ordinals can differ).
fn pci_bus_id(ctx: &CudaContext) -> Option<String> {
    let mut buf = [0 as c_char; 32];
    // SAFETY: writes a NUL-terminated string of at most `len` bytes into `buf`.
    let r =
        unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as c_int, ctx.cu_device()) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return None;
    }
    // SAFETY: NUL-terminated by the driver within `buf`.
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(id.to_string_lossy().into_owned())
}

/// Samples one GPU: `gpu.{i}.memoryAllocated` (% of total) and `gpu.{i}.memoryAllocatedBytes`
/// (device-wide use, as `cuMemGetInfo` reports it), plus `gpu.{i}.gpu`, `.memory`, `.temp` and
/// `.powerWatts` when NVML is available.
pub struct GpuMetrics {
    ctx: Arc<CudaContext>,
    prefix: String,
    nvml: Option<Nvml>,
}

impl GpuMetrics {
    pub(super) fn new(ctx: Arc<CudaContext>, ordinal: usize) -> Self {
        let nvml = pci_bus_id(&ctx).and_then(|id| Nvml::open(&id));
        if nvml.is_none() {
            tracing::info!("NVML is not available: GPU metrics will report memory only");
        }
        Self {
            ctx,
            prefix: format!("gpu.{ordinal}"),
            nvml,
        }
    }
}

impl MetricSource for GpuMetrics {
    fn sample(&mut self, row: &mut Row) {
        // mem_get_info binds the context to the sampler's thread first.
        if let Ok((free, total)) = self.ctx.mem_get_info() {
            let used = total.saturating_sub(free);
            row.insert(format!("{}.memoryAllocatedBytes", self.prefix), json!(used));
            if total > 0 {
                row.insert(
                    format!("{}.memoryAllocated", self.prefix),
                    json!(100.0 * used as f64 / total as f64),
                );
            }
        }
        if let Some(nvml) = &self.nvml {
            nvml.sample(&self.prefix, row);
        }
    }
}
