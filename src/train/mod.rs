//! The trainer: a GPT-style model on a backend trait (CPU reference on ndarray, CUDA kernels on
//! cudarc), its data, config, optimizer, evaluation, W&B tracking, and the training loop
//! (`trainer`).

/// Serializes a config value type as its text form (`Display`) and reads it back through
/// `FromStr`, so a bad value is an error at the moment it is set, with the parser's message.
macro_rules! serde_as_text {
    ($type:ty) => {
        impl TryFrom<String> for $type {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                text.parse()
                    .map_err(|err: anyhow::Error| format!("{err:#}"))
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> String {
                value.to_string()
            }
        }
    };
}

pub mod backend;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod device;
pub mod eval;
pub mod model;
pub mod optim;
pub mod rng;
pub mod tracking;
pub mod trainer;
