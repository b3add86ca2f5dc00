//! `mlwf bench`: speed figures.

use crate::cli::BenchLogArgs;

pub async fn log(_args: BenchLogArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
