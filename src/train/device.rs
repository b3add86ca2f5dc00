//! Choosing where training runs: `--device auto|cpu|cuda[:N]`, and the matmul precision on a GPU.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Context, Result};

use crate::train::backend::Precision;
use crate::train::cuda::CudaBackend;

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    /// The best available: a GPU when the CUDA backend is built and sees one, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    anyhow!("unknown device {text:?}: expected auto, cpu, cuda or cuda:N")
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

serde_as_text!(Device);

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
