//! mlwf: the machine-learning experiment loop on Weights & Biases and GitHub.
//!
//! The folders are the architecture (see `docs/architecture.md`), in floors whose imports only
//! point down: `cli` (clap) → `commands` (one file per subcommand: settings resolved once) →
//! `bench` → `train`, `analyze`, `launch`, `agent` → `connect` (a W&B server or the embedded store) → `wandb` (the
//! client), `server` (the W&B-compatible server), `github`. `testkit` holds test scaffolding,
//! behind its feature.

pub mod agent;
pub mod analyze;
pub mod artifacts;
pub mod automation;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod datasets;
pub mod experiment;
pub mod git;
pub mod github;
pub mod launch;
pub mod lifecycle;
pub mod plot;
pub mod retry;
pub mod scaffold;
pub mod secrets;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod train;
pub mod wandb;
