//! `mlwf bench`: speed figures, printed for people and recorded in `docs/benchmarks.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Map};

use crate::analyze::compare::Judging;
use crate::analyze::event::Dispatch;
use crate::analyze::facts::Project;
use crate::analyze::llm::{fake::FakeClaude, Claude};
use crate::analyze::redact::Redactor;
use crate::analyze::synthetic::{self, SyntheticRun};
use crate::analyze::Options;
use crate::cli::{BenchAnalyzeArgs, BenchLogArgs, BenchTrainArgs};
use crate::github::actions::Actions;
use crate::github::fake::FakeGitHub;
use crate::github::GitHub;
use crate::sdk::official_sdk_command;
use crate::server::{self, RunningServer, ServerOptions};
use crate::train::backend::Backend;
use crate::train::config::TrainConfig;
use crate::train::cpu::CpuBackend;
use crate::train::data::{Batch, SplitMix64};
use crate::train::device::{self, Selected};
use crate::train::model::{Gpt, ModelConfig};
use crate::train::trainer::train_step;
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
    let (scratch, server, key) = scratch_server().await?;
    let result = compare(&args, &server, &key, scratch.path()).await;
    server.shutdown().await;
    result
}

/// A local server over a scratch directory, and a key it accepts.
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

/// Times one `mlwf analyze` from start (clients built) to comment posted, against the local
/// server seeded with trainer-shaped runs, a fake GitHub and an instant fake Claude. Each
/// repetition reports a fresh run on its own PR, as a webhook would.
pub async fn analyze(args: BenchAnalyzeArgs) -> anyhow::Result<()> {
    let (_scratch, server, key) = scratch_server().await?;
    let result = analyze_cases(&args, &server, &key).await;
    server.shutdown().await;
    result
}

async fn analyze_cases(
    args: &BenchAnalyzeArgs,
    server: &RunningServer,
    key: &str,
) -> anyhow::Result<()> {
    const TOKEN: &str = "bench-github-token";
    let client = Client::new(Settings::new(server.base_url(), Some(ApiKey::new(key)))?)?;
    let entity = client.resolve_entity(None).await?;
    let project = Project {
        client: client.clone(),
        entity: entity.clone(),
        project: "bench".into(),
        ui_url: server.base_url().to_owned(),
    };
    for seed in 0..3 {
        let mut base = SyntheticRun::finished(
            &format!("base{seed}"),
            "main",
            "c0ffee",
            seed,
            1.0 + 0.01 * seed as f64,
        );
        // Only the run under test is to be reported.
        base.tags = vec![crate::analyze::REPORTED_TAG.to_owned()];
        synthetic::log_run(&client, &entity, "bench", &base).await?;
    }
    let github = FakeGitHub::start("bench", "repo", TOKEN).await?;
    let claude = FakeClaude::start("The loss diverged; lower the learning rate.", 0).await?;
    println!("mlwf analyze, start to comment posted, against a local server, fake GitHub and fake Claude ({} runs each):", args.repeat);
    let cases: [(&str, bool, bool); 3] = [
        ("success report", false, false),
        ("failure report, LLM disabled", true, false),
        ("failure report, fake LLM", true, true),
    ];
    let mut pr = 0;
    for (name, failed, llm) in cases {
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            pr += 1;
            let branch = format!("bench/{pr}");
            let id = format!("run{pr:05}");
            let spec = if failed {
                SyntheticRun::failed(
                    &id,
                    &branch,
                    60,
                    1,
                    &["step 50 train/loss nan", "error: loss is NaN at step 60"],
                )
            } else {
                SyntheticRun::finished(&id, &branch, "beef", 7, 0.8)
            };
            synthetic::log_run(&client, &entity, "bench", &spec).await?;
            github.open_pr(pr, &branch);
            let start = Instant::now();
            let options = Options {
                judging: Judging::default(),
                baseline_branch: "main".into(),
                run: None,
                dispatch: Dispatch::default(),
                max_runs: 20,
                github: Some(GitHub::new(github.url(), TOKEN, "bench/repo".parse()?)?),
                claude: if llm {
                    Some(Claude::new(&claude.url, "sk-ant-bench", "fake-model")?)
                } else {
                    None
                },
                actions: Actions::default(),
                redactor: Redactor::new([key, TOKEN]),
            };
            let outcome = crate::analyze::run(&project, &options).await?;
            let elapsed = start.elapsed();
            if outcome.reports.len() != 1 || github.comments(pr).len() != 1 {
                bail!("the benchmark expected one report and one comment on PR #{pr}");
            }
            times.push(elapsed);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "  {name:<30} median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
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

/// Step times of one `bench train` measurement.
#[derive(Debug, Clone, serde::Serialize)]
struct TrainSpeed {
    preset: String,
    device: String,
    parameters: usize,
    batch_size: usize,
    seq_len: usize,
    steps: usize,
    ms_per_step_median: f64,
    ms_per_step_min: f64,
    tokens_per_sec: f64,
}

/// Times training steps of a preset's model on random tokens: the trainer's own step, with no
/// data loading, evaluation or W&B run around it.
pub fn train(args: BenchTrainArgs) -> anyhow::Result<()> {
    let config = TrainConfig::preset(&args.preset)?;
    let batch_size = args.batch_size.unwrap_or(config.train.batch_size);
    // GPT-2's tokenizer for its shapes; Tiny Shakespeare's 65 characters otherwise.
    let vocab = args.vocab.unwrap_or(if args.preset == "gpt2-124m" {
        50257
    } else {
        65
    });
    let model = config.model.model_config(vocab);
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let precision = match &args.precision {
        Some(text) => text.parse()?,
        None => config.precision()?,
    };
    let speed = match device::select(&args.device.parse()?, precision)? {
        Selected::Cpu { why } => {
            if let Some(why) = why {
                eprintln!("mlwf: {why}");
            }
            time_train_steps(
                CpuBackend::new(),
                "cpu".into(),
                model,
                &config,
                batch_size,
                &args,
            )?
        }
        Selected::Cuda(backend) => {
            let name = format!("{} ({precision})", backend.gpu_facts().name);
            time_train_steps(backend, name, model, &config, batch_size, &args)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&speed)?);
    } else {
        println!(
            "train step, preset {} on {}: {} parameters, batch {}×{} tokens, {} timed steps",
            speed.preset,
            speed.device,
            speed.parameters,
            speed.batch_size,
            speed.seq_len,
            speed.steps
        );
        println!(
            "  {:.2} ms/step (median; min {:.2})   {:.0} tokens/s",
            speed.ms_per_step_median, speed.ms_per_step_min, speed.tokens_per_sec
        );
    }
    Ok(())
}

fn time_train_steps<B: Backend>(
    backend: B,
    device: String,
    model: ModelConfig,
    config: &TrainConfig,
    batch_size: usize,
    args: &BenchTrainArgs,
) -> anyhow::Result<TrainSpeed> {
    let seq = model.block_size;
    let vocab = model.vocab_size as u64;
    let mut gpt = Gpt::new(model, backend, config.train.seed)?;
    let o = &config.optim;
    let optimizer = o.adamw();
    let mut rng = SplitMix64::new(config.train.seed);
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let mut ids = || -> Vec<u32> {
            (0..batch_size * seq)
                .map(|_| rng.below(vocab) as u32)
                .collect()
        };
        let batch = Batch {
            inputs: ids(),
            targets: ids(),
        };
        let begun = Instant::now();
        train_step(
            &mut gpt,
            &optimizer,
            &batch,
            (batch_size, seq),
            o.learning_rate as f32,
            o.grad_clip as f32,
            false,
        )?;
        if i >= args.warmup {
            times.push(begun.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = ms(times[times.len() / 2]);
    Ok(TrainSpeed {
        preset: args.preset.clone(),
        device,
        parameters: gpt.num_parameters(),
        batch_size,
        seq_len: seq,
        steps: args.steps,
        ms_per_step_median: median,
        ms_per_step_min: ms(times[0]),
        tokens_per_sec: (batch_size * seq) as f64 / (median / 1e3),
    })
}
