//! Choosing where training runs: `--device auto|cpu|cuda[:N]`, and the matmul precision on a GPU.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Context, Result};

use crate::train::config::Device;
use crate::train::cuda::CudaBackend;

/// The arithmetic of the GPU matrix products. Everything else (LayerNorm, softmax, the
/// optimizer, the f32 master weights) is f32 in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 FMAs: matches the CPU reference to f32 rounding.
    #[default]
    Fp32,
    /// TF32 tensor cores (10-bit mantissa inputs), f32 accumulation.
    Tf32,
    /// BF16 tensor cores (8-bit mantissa inputs), f32 accumulation: the fastest.
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "fp32" => Ok(Self::Fp32),
            "tf32" => Ok(Self::Tf32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(anyhow!(
                "unknown precision {text:?}: expected fp32, tf32 or bf16"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Bf16 => "bf16",
        })
    }
}

/// The backend a run trains on.
#[allow(clippy::large_enum_variant)] // one per run, moved once into the model: no box needed
pub enum Selected {
    /// `why` is the one line explaining why `auto` fell back to the CPU; `None` when the CPU
    /// was asked for.
    Cpu {
        why: Option<String>,
    },
    Cuda(CudaBackend),
}

/// Opens the backend `device` names. `auto` takes GPU 0 when it is usable and otherwise falls
/// back to the CPU with the reason; an explicit `cuda`/`cuda:N` that cannot be used is an error.
pub fn select(device: &Device, precision: Precision) -> Result<Selected> {
    match *device {
        Device::Cpu => Ok(Selected::Cpu { why: None }),
        Device::Cuda(ordinal) => CudaBackend::new(ordinal, precision)
            .map(Selected::Cuda)
            .with_context(|| format!("device cuda:{ordinal} cannot be used")),
        Device::Auto => Ok(match CudaBackend::new(0, precision) {
            Ok(backend) => Selected::Cuda(backend),
            Err(err) => Selected::Cpu {
                why: Some(format!("training on the CPU: no usable GPU ({err:#})")),
            },
        }),
    }
}
