//! `mlwf runs tag|untag|note|stop|delete`: change runs, each one named by its id. Every run is
//! read first, so an unknown id changes nothing; `--dry-run` says what would change.

use std::process::ExitCode;

use anyhow::Context;

use super::{env, print, store_settings};
use crate::cli::{RunsArgs, RunsCommand, StoreArgs};
use crate::connect::{self, Purpose, Store};
use crate::wandb::RunInfo;

pub async fn run(store: &StoreArgs, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let (args, change) = match command {
        RunsCommand::List(args) => return super::results::list(store, args).await,
        RunsCommand::Tag(a) => (a.runs, Change::Tag(a.tags)),
        RunsCommand::Untag(a) => (a.runs, Change::Untag(a.tags)),
        RunsCommand::Note(a) => (a.runs, Change::Note(a.text)),
        RunsCommand::Stop(a) => (a, Change::Stop),
        RunsCommand::Delete(a) => (
            a.runs,
            Change::Delete {
                artifacts: a.with_artifacts,
            },
        ),
    };
    let store = connect::open(&store_settings(store, None, env), Purpose::Read).await?;
    let result = change_all(&store, &args, &change).await;
    store.close().await;
    print(&result?)?;
    Ok(ExitCode::SUCCESS)
}

/// What one run gets.
enum Change {
    Tag(Vec<String>),
    Untag(Vec<String>),
    Note(String),
    Stop,
    Delete { artifacts: bool },
}

async fn change_all(store: &Store, args: &RunsArgs, change: &Change) -> anyhow::Result<String> {
    let runs = read_all(store, args).await?;
    let mut out = String::new();
    for run in &runs {
        let said = apply(store, run, change, args.dry_run)
            .await
            .with_context(|| format!("run {}", run.id))?;
        let prefix = if args.dry_run {
            "dry run, not done: "
        } else {
            ""
        };
        out.push_str(&format!("{prefix}{said}\n"));
    }
    Ok(out)
}

/// Every named run, or the error for the first that does not exist: nothing is half done.
async fn read_all(store: &Store, args: &RunsArgs) -> anyhow::Result<Vec<RunInfo>> {
    let place = format!("{}/{}", store.entity, store.project);
    let mut runs = Vec::new();
    for id in &args.runs {
        let run = store
            .client
            .run(&store.entity, &store.project, id)
            .await
            .with_context(|| format!("reading run {id} of {place}"))?
            .with_context(|| {
                format!("no run {id:?} in {place}: nothing was changed (`mlwf runs list` shows the runs)")
            })?;
        runs.push(run);
    }
    Ok(runs)
}

/// Applies `change` to `run` (unless `dry_run`) and says what it is.
async fn apply(
    store: &Store,
    run: &RunInfo,
    change: &Change,
    dry_run: bool,
) -> anyhow::Result<String> {
    let client = &store.client;
    let id = &run.id;
    let said = match change {
        Change::Tag(tags) | Change::Untag(tags) => {
            let mut now = run.tags.clone();
            if matches!(change, Change::Tag(_)) {
                now.extend(tags.iter().filter(|t| !run.tags.contains(t)).cloned());
            } else {
                now.retain(|t| !tags.contains(t));
            }
            if !dry_run && now != run.tags {
                client.set_run_tags(run, &now).await?;
            }
            format!(
                "run {id}: tags [{}] -> [{}]",
                run.tags.join(", "),
                now.join(", ")
            )
        }
        Change::Note(text) => {
            if !dry_run {
                client.set_run_notes(run, text).await?;
            }
            format!("run {id}: notes replaced")
        }
        Change::Stop => {
            if !dry_run {
                client.stop_run(&run.storage_id).await?;
            }
            format!("run {id}: stop requested (it is {})", run.state)
        }
        Change::Delete { artifacts } => {
            if !dry_run {
                client.delete_run(&run.storage_id, *artifacts).await?;
            }
            let with = if *artifacts {
                ", with its artifacts"
            } else {
                ""
            };
            format!("run {id}: deleted{with}")
        }
    };
    Ok(said)
}
