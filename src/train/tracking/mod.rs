//! Everything a training run tells W&B besides its metrics rows: system metrics, console
//! output, prediction tables, checkpoints (as model artifacts), git facts, and the guard that
//! always finishes the run with the right exit code.

pub mod console;
pub mod git;
pub mod sysmetrics;
pub mod table;
