//! `mlwf launch`: the branch, queue, config overrides and entrypoint, checked before anything
//! is logged or pushed.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{env, job_template, print, store_settings};
use crate::cli::{LaunchArgs, StoreArgs};
use crate::connect::{self, Purpose};
use crate::launch::{self, LaunchSettings, Launched, Outcome};
use crate::lifecycle::jobs;
use crate::wandb::RunState;

pub async fn run(store_args: &StoreArgs, args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let mut template = job_template(args.queue.as_deref())?;
    template.entrypoint = match &args.entrypoint {
        Some(text) => Some(
            shlex::split(text)
                .filter(|words| !words.is_empty())
                .with_context(|| format!("--entrypoint {text:?} is not a command line"))?,
        ),
        None => None,
    };
    template.priority = args.priority.as_deref().map(parse_priority).transpose()?;
    let dir = std::env::current_dir().context("reading the current directory")?;
    let settings = jobs::settings(
        &dir,
        args.branch.as_deref(),
        &template,
        &args.set,
        args.name.clone(),
    )?;

    let store = connect::open(&store_settings(store_args, None, env), Purpose::Read).await?;
    let result = launch_and_follow(&store, &settings, &args).await;
    store.close().await;
    result
}

async fn launch_and_follow(
    store: &connect::Store,
    settings: &LaunchSettings,
    args: &LaunchArgs,
) -> anyhow::Result<ExitCode> {
    let launched = launch::launch(store, settings).await?;
    if !args.json {
        print(&describe(&launched))?;
    }
    let outcome = if args.wait {
        let bar = super::Spinner::new();
        let outcome = launch::wait(store, &launched, &bar).await;
        bar.0.finish_and_clear();
        Some(outcome?)
    } else {
        None
    };
    let succeeded = match &outcome {
        None => true,
        Some(Outcome::Run { state, .. }) => *state == RunState::Finished,
        Some(_) => false,
    };
    if args.json {
        let mut value = serde_json::to_value(&launched)?;
        if let Some(outcome) = &outcome {
            value["outcome"] = outcome_json(outcome);
        }
        print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    } else if let Some(outcome) = &outcome {
        print(&format!("{}\n", outcome_text(outcome)))?;
    }
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_priority(text: &str) -> anyhow::Result<u8> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "0" | "critical" => 0,
        "1" | "high" => 1,
        "2" | "medium" => 2,
        "3" | "low" => 3,
        _ => bail!("--priority {text:?}: use 0-3 or critical, high, medium, low"),
    })
}

fn describe(launched: &Launched) -> String {
    let mut text = format!(
        "queued {} of {} at {:.10} as item {} in {}\n  job: {}\n",
        launched.branch,
        launched.remote,
        launched.commit,
        launched.item,
        launched.queue,
        launched.job
    );
    if launched.local_only {
        text += "  the code is this local repository: `mlwf agent` on this machine can run it; \
                 the official `wandb launch-agent` could not clone it (push to an https:// or \
                 git@ remote for that)\n";
    }
    text += &format!(
        "  follow it: mlwf queue items {}   (or launch with --wait)\n",
        launched.queue
    );
    text
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Run { run, state } => format!("run {run} {}", state.as_str()),
        Outcome::Failed { details } => match details.as_ref().and_then(|d| d.error.as_ref()) {
            Some(error) => format!(
                "the agent failed the item ({}): {}",
                error.stage, error.message
            ),
            None => "the agent failed the item (the server does not say why; see the agent's log)"
                .to_owned(),
        },
        Outcome::Gone => "the item left the queue without a run (cancelled)".to_owned(),
    }
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Run { run, state } => json!({"run": run, "state": state.as_str()}),
        Outcome::Failed { details } => json!({
            "state": "item-failed",
            "error": details.as_ref().and_then(|d| d.error.clone()),
        }),
        Outcome::Gone => json!({"state": "cancelled"}),
    }
}
