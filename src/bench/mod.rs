//! `mlwf bench`: speed figures, printed by `commands/bench.rs` and recorded in
//! `docs/benchmarks.md`. `log`, `analyze` and `agent` run against the test fakes, so they exist only in
//! builds with the `testkit` feature (the default).

#[cfg(feature = "testkit")]
pub mod agent;
#[cfg(feature = "testkit")]
pub mod analyze;
#[cfg(feature = "testkit")]
pub mod log;
pub mod train;

#[cfg(feature = "testkit")]
use anyhow::Context as _;

#[cfg(feature = "testkit")]
use crate::server::{self, RunningServer, ServerOptions};

/// A local server over a scratch directory, and a key it accepts.
#[cfg(feature = "testkit")]
async fn scratch_server() -> anyhow::Result<(tempfile::TempDir, RunningServer, String)> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let key = server::generate_key();
    let server = server::start(
        ServerOptions {
            data_dir: scratch.path().join("server"),
            api_keys: vec![key.clone()],
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    Ok((scratch, server, key))
}
