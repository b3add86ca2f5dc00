//! mlwf: the machine-learning experiment loop on Weights & Biases and GitHub.
//!
//! Layout: `wandb` is the W&B client every other part talks through, `server` the local
//! W&B-compatible server (also the embedded default), `backend` picks between the two,
//! `results` reads runs back, `analyze` reports finished runs to GitHub (through `github`),
//! `bench` measures, and `cli` holds the clap definitions.

pub mod analyze;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod github;
pub mod results;
pub mod sdk;
pub mod server;
pub mod train;
pub mod wandb;
