//! `mlwf bench`: runs a measurement and prints its figures.

use std::process::ExitCode;

use anyhow::Context;

use super::print;
use crate::bench;
use crate::cli::{BenchCommand, BenchTrainArgs};

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Log(args) => log(args).await?,
        BenchCommand::Train(args) => train(args)?,
        BenchCommand::Analyze(args) => analyze(args).await?,
        BenchCommand::Agent(args) => agent(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: BenchTrainArgs) -> anyhow::Result<()> {
    let options = bench::train::TrainOptions {
        preset: args.preset,
        steps: args.steps,
        warmup: args.warmup,
        batch_size: args.batch_size,
        vocab: args.vocab,
        device: args.device.parse()?,
        precision: args.precision.as_deref().map(str::parse).transpose()?,
    };
    let speed = bench::train::train(&options)?;
    if args.json {
        let json = serde_json::to_string_pretty(&speed).context("encoding the figures")?;
        return print(&format!("{json}\n"));
    }
    print(&format!(
        "train step, preset {} on {}: {} parameters, batch {}×{} tokens, {} timed steps\n  \
         {:.2} ms/step (median; min {:.2})   {:.0} tokens/s\n",
        speed.preset,
        speed.device,
        speed.parameters,
        speed.batch_size,
        speed.seq_len,
        speed.steps,
        speed.ms_per_step_median,
        speed.ms_per_step_min,
        speed.tokens_per_sec
    ))
}

#[cfg(feature = "testkit")]
async fn log(args: crate::cli::BenchLogArgs) -> anyhow::Result<()> {
    let options = bench::log::LogOptions {
        steps: args.steps,
        metrics: args.metrics,
        python: args.python,
    };
    let costs = bench::log::log(&options).await?;
    let mut text = format!(
        "log() cost, {} steps of {} metrics, against one local mlwf server:\n  \
         mlwf client     {:>9.3} µs/call   finish {:.3} s\n",
        options.steps, options.metrics, costs.mlwf.log_us_per_call, costs.mlwf.finish_s
    );
    match &costs.sdk {
        None => {
            text += &format!(
                "  official wandb  skipped: no Python at {} (run scripts/test.sh once, or pass \
                 --python)\n",
                options.python.display()
            )
        }
        Some(sdk) => {
            text += &format!(
                "  official wandb  {:>9.3} µs/call   finish {:.3} s\n  mlwf is {:.0}x cheaper \
                 per log()\n",
                sdk.log_us_per_call,
                sdk.finish_s,
                sdk.log_us_per_call / costs.mlwf.log_us_per_call
            )
        }
    }
    print(&text)
}

#[cfg(feature = "testkit")]
async fn analyze(args: crate::cli::BenchAnalyzeArgs) -> anyhow::Result<()> {
    let cases = bench::analyze::analyze(args.repeat).await?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut text = format!(
        "mlwf analyze, start to comment posted, against a local server, fake GitHub and fake \
         Claude ({} runs each):\n",
        args.repeat
    );
    for case in cases {
        let times = &case.times;
        text += &format!(
            "  {:<30} median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms\n",
            case.name,
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    print(&text)
}

#[cfg(feature = "testkit")]
async fn agent(args: crate::cli::BenchAgentArgs) -> anyhow::Result<()> {
    let options = bench::agent::AgentOptions {
        python: args.python,
        idle: args.idle,
        pushes: args.pushes,
        image: args.image,
    };
    let figures = bench::agent::agent(&options).await?;
    if args.json {
        let json = serde_json::to_string_pretty(&figures).context("encoding the figures")?;
        return print(&format!("{json}\n"));
    }
    let mut text = format!(
        "launch agents on one local server, idle {:?} then {} pushes each:\n",
        options.idle, options.pushes
    );
    let width = figures.iter().map(|f| f.agent.len()).max().unwrap_or(0);
    for agent in &figures {
        let times: Vec<String> = agent
            .push_to_start_s
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect();
        text += &format!(
            "  {:<width$} idle RSS {:>7.1} MiB   push to job start {} s\n",
            agent.agent,
            agent.idle_rss_mib,
            times.join(" / ")
        );
    }
    if figures.len() < 2 {
        text += &format!(
            "  wandb launch-agent   skipped: no Python at {}\n",
            options.python.display()
        );
    }
    print(&text)
}

#[cfg(not(feature = "testkit"))]
async fn agent(_: crate::cli::BenchAgentArgs) -> anyhow::Result<()> {
    needs_testkit("agent")
}

#[cfg(not(feature = "testkit"))]
async fn log(_: crate::cli::BenchLogArgs) -> anyhow::Result<()> {
    needs_testkit("log")
}

#[cfg(not(feature = "testkit"))]
async fn analyze(_: crate::cli::BenchAnalyzeArgs) -> anyhow::Result<()> {
    needs_testkit("analyze")
}

#[cfg(not(feature = "testkit"))]
fn needs_testkit(what: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`mlwf bench {what}` runs against the test fakes, which this build leaves out; build mlwf \
         with its default features (`cargo run --release -- bench {what}`)"
    )
}
