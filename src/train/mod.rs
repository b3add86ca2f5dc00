//! The trainer: a GPT-style model on a backend trait (CPU reference on ndarray, CUDA kernels on
//! cudarc), its data, config, optimizer, evaluation, W&B tracking, and the training loop
//! (`trainer`).

pub mod backend;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod device;
pub mod eval;
pub mod model;
pub mod optim;
pub mod tracking;
pub mod trainer;
