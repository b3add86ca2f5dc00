//! Local W&B-compatible server.

use crate::cli::ServerArgs;

pub async fn run_cli(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("the server is not built yet")
}
