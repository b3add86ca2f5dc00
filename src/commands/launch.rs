//! `mlwf launch`: the branch, queue, config overrides and entrypoint, checked before anything
//! is logged or pushed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use super::{env, print, store_settings};
use crate::cli::{LaunchArgs, StoreArgs};
use crate::connect::{self, Purpose};
use crate::launch::{self, LaunchSettings, Launched, Outcome, Progress};
use crate::train::config::{self, TrainConfig};
use crate::wandb::RunState;

/// The trainer's own config file, read by the default entrypoint when the repository has one.
const PROJECT_CONFIG: &str = "mlwf.toml";

pub async fn run(store_args: &StoreArgs, args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let queue =
        args.queue.clone().or_else(|| env("WANDB_QUEUE")).context(
            "no queue: pass --queue NAME or set WANDB_QUEUE (`mlwf queue list` shows them)",
        )?;
    let dir = std::env::current_dir().context("reading the current directory")?;
    let root = crate::git::root(&dir).unwrap_or_else(|| dir.clone());
    let entrypoint = match &args.entrypoint {
        Some(text) => shlex::split(text)
            .filter(|words| !words.is_empty())
            .with_context(|| format!("--entrypoint {text:?} is not a command line"))?,
        None => default_entrypoint(&root),
    };
    let run_config = run_config(&args.set, &entrypoint, &root)?;
    let settings = LaunchSettings {
        dir,
        branch: args.branch.clone(),
        queue,
        run_config,
        entrypoint,
        priority: args.priority.as_deref().map(parse_priority).transpose()?,
        name: args.name.clone(),
    };

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
        let bar = Spinner::new();
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

/// `mlwf train`, reading the repository's `mlwf.toml` when it has one.
fn default_entrypoint(root: &Path) -> Vec<String> {
    let mut words = vec!["mlwf".to_owned(), "train".to_owned()];
    if root.join(PROJECT_CONFIG).is_file() {
        words.extend(["--config".to_owned(), PROJECT_CONFIG.to_owned()]);
    }
    words
}

/// The `--set` values as the run's config. For the trainer, keys are checked (a typo is an
/// error now, not a failed run later) and values typed as the trainer reads them; any other
/// entrypoint gets them as given, JSON where they parse.
fn run_config(
    sets: &[String],
    entrypoint: &[String],
    root: &Path,
) -> anyhow::Result<Map<String, Value>> {
    let trainer = entrypoint.len() >= 2 && entrypoint[0] == "mlwf" && entrypoint[1] == "train";
    let resolved = if trainer {
        let file = root.join(PROJECT_CONFIG);
        let file = file.is_file().then_some(file);
        let checked = TrainConfig::load(None, file.as_deref(), sets, |_| None)?;
        Some(checked.to_wandb_config())
    } else {
        None
    };
    let mut values = Map::new();
    for assignment in sets {
        let (key, raw) = assignment
            .split_once('=')
            .with_context(|| format!("--set {assignment:?} is not of the form key=value"))?;
        let (key, raw) = (key.trim(), raw.trim());
        let (key, value) = match &resolved {
            Some(flat) => {
                let key = config::resolve_key(key)?;
                let value = flat.get(&key).cloned().unwrap_or(Value::Null);
                (key, value)
            }
            None => (
                key.to_owned(),
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
            ),
        };
        values.insert(key, value);
    }
    Ok(values)
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

/// A spinner on stderr that stays quiet when stderr is not a terminal.
struct Spinner(ProgressBar);

impl Spinner {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self(bar)
    }
}

impl Progress for Spinner {
    fn update(&self, message: &str) {
        self.0.set_message(message.to_owned());
    }
}
