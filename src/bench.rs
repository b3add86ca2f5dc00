//! `mlwf bench`: speed figures, printed for people and recorded in `docs/benchmarks.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Map};

use crate::cli::BenchLogArgs;
use crate::sdk::official_sdk_command;
use crate::server::{self, RunningServer, ServerOptions};
use crate::wandb::{ApiKey, Client, RunSpec, Settings};

/// The official SDK's side of `bench log`, run by the Python interpreter given on the command line.
const SDK_LOG_SCRIPT: &str = include_str!("../benches/wandb_sdk_log.py");

/// Per-call cost of `log()` for one client.
#[derive(Debug, Deserialize)]
struct LogCost {
    log_us_per_call: f64,
    finish_s: f64,
}

/// Times `log()` of mlwf's client and of the official SDK against one local server.
pub async fn log(args: BenchLogArgs) -> anyhow::Result<()> {
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
    let result = compare(&args, &server, &key, scratch.path()).await;
    server.shutdown().await;
    result
}

async fn compare(
    args: &BenchLogArgs,
    server: &RunningServer,
    key: &str,
    scratch: &Path,
) -> anyhow::Result<()> {
    let ours = mlwf_log_cost(args, server, key).await?;
    println!(
        "log() cost, {} steps of {} metrics, against one local mlwf server:",
        args.steps, args.metrics
    );
    println!(
        "  mlwf client     {:>9.3} µs/call   finish {:.3} s",
        ours.log_us_per_call, ours.finish_s
    );
    if !args.python.exists() {
        println!(
            "  official wandb  skipped: no Python at {} (run scripts/test.sh once, or pass --python)",
            args.python.display()
        );
        return Ok(());
    }
    let sdk = sdk_log_cost(args, server, key, scratch).await?;
    println!(
        "  official wandb  {:>9.3} µs/call   finish {:.3} s",
        sdk.log_us_per_call, sdk.finish_s
    );
    println!(
        "  mlwf is {:.0}x cheaper per log()",
        sdk.log_us_per_call / ours.log_us_per_call
    );
    Ok(())
}

async fn mlwf_log_cost(
    args: &BenchLogArgs,
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
    args: &BenchLogArgs,
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
