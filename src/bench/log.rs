//! `mlwf bench log`: the cost of one `log()` call, mlwf's client against the official SDK on
//! the same local server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Map};

use super::scratch_server;
use crate::server::RunningServer;
use crate::testkit::sdk::official_sdk_command;
use crate::wandb::{ApiKey, Client, RunSpec, Settings};

/// The official SDK's side of `bench log`, run by the Python interpreter given on the command line.
const SDK_LOG_SCRIPT: &str = include_str!("../../benches/wandb_sdk_log.py");

/// What `bench log` measures.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Logged steps per measurement.
    pub steps: usize,
    /// Metrics per step.
    pub metrics: usize,
    /// A Python interpreter with the official `wandb` package; the SDK is skipped without one.
    pub python: PathBuf,
}

/// Per-call cost of `log()` for one client.
#[derive(Debug, Clone, Deserialize)]
pub struct LogCost {
    pub log_us_per_call: f64,
    pub finish_s: f64,
}

/// mlwf's cost, and the official SDK's when its interpreter exists.
#[derive(Debug, Clone)]
pub struct LogCosts {
    pub mlwf: LogCost,
    pub sdk: Option<LogCost>,
}

/// Times `log()` of mlwf's client and of the official SDK against one local server.
pub async fn log(options: &LogOptions) -> anyhow::Result<LogCosts> {
    let (scratch, server, key) = scratch_server().await?;
    let result = log_costs(options, &server, &key, scratch.path()).await;
    server.shutdown().await;
    result
}

async fn log_costs(
    options: &LogOptions,
    server: &RunningServer,
    key: &str,
    scratch: &Path,
) -> anyhow::Result<LogCosts> {
    let mlwf = mlwf_log_cost(options, server, key).await?;
    let sdk = if options.python.exists() {
        Some(sdk_log_cost(options, server, key, scratch).await?)
    } else {
        None
    };
    Ok(LogCosts { mlwf, sdk })
}

async fn mlwf_log_cost(
    args: &LogOptions,
    server: &RunningServer,
    key: &str,
) -> anyhow::Result<LogCost> {
    let client = Client::new(Settings::new(server.base_url(), Some(ApiKey::new(key)))?)?;
    let spec = RunSpec {
        entity: Some("bench".into()),
        project: Some("bench".into()),
        ..RunSpec::default()
    };
    let run = client
        .start_run(spec)
        .await
        .context("starting the benchmark run")?;
    let names: Vec<String> = (0..args.metrics).map(|i| format!("m{i}")).collect();
    let start = Instant::now();
    for step in 0..args.steps {
        // Building the row is part of the caller's cost in both clients, so it is timed.
        let row: Map<_, _> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), json!(step as f64 * 0.001 + i as f64)))
            .collect();
        run.log(row);
    }
    let logged = start.elapsed();
    let start = Instant::now();
    run.finish(0).await.context("finishing the benchmark run")?;
    Ok(LogCost {
        log_us_per_call: per_call_us(logged, args.steps),
        finish_s: start.elapsed().as_secs_f64(),
    })
}

async fn sdk_log_cost(
    args: &LogOptions,
    server: &RunningServer,
    key: &str,
    scratch: &Path,
) -> anyhow::Result<LogCost> {
    let script = scratch.join("wandb_sdk_log.py");
    std::fs::write(&script, SDK_LOG_SCRIPT).context("writing the SDK benchmark script")?;
    let output = official_sdk_command(&args.python, &script, server.base_url(), key, scratch)
        .context("preparing the SDK's directories")?
        .arg(args.steps.to_string())
        .arg(args.metrics.to_string())
        .env("WANDB_ENTITY", "bench")
        .output()
        .await
        .with_context(|| format!("running {}", args.python.display()))?;
    if !output.status.success() {
        bail!(
            "the official SDK benchmark failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .with_context(|| format!("reading the SDK benchmark's output {last:?}"))
}

fn per_call_us(elapsed: Duration, calls: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / calls.max(1) as f64
}
