//! `mlwf results`: read runs back.

use crate::backend::BackendOptions;
use crate::cli::SummaryArgs;

pub async fn summary(_backend: &BackendOptions, _args: SummaryArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
