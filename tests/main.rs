//! The integration suite: one test binary, so the crate is linked once. Each area of the code has
//! a module here, and they share `util` (one fixture, one key, the binary with a clean
//! environment). Run one area with `cargo test --test integration wandb::`.

#[macro_use]
mod util;

mod analyze;
mod architecture;
mod cli;
mod containers;
mod datasets;
mod init;
mod interop;
mod launch;
mod lifecycle;
mod results;
mod server;
mod train;
mod wandb;
mod workflows;
