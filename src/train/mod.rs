//! The trainer: a GPT-style model on a backend trait (CPU reference on ndarray; CUDA later),
//! its data, config, optimizer and W&B tracking.

pub mod config;
pub mod data;
pub mod tracking;
