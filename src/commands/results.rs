//! `mlwf results`: read runs back.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use super::{env, print, store_settings};
use crate::cli::{StoreArgs, SummaryArgs};
use crate::connect::{self, Purpose, Store};
use crate::experiment;
use crate::wandb::RunInfo;

/// Prints one run's state, config and summary metrics.
pub async fn summary(store: &StoreArgs, args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let store = connect::open(&store_settings(store, None, env), Purpose::Read).await?;
    let found = find_run(&store, &args).await;
    let (entity, project) = (store.entity.clone(), store.project.clone());
    store.close().await;
    let run = found?;
    if args.json {
        let mut value = serde_json::to_value(&run).context("encoding the run as JSON")?;
        value["entity"] = json!(entity);
        value["project"] = json!(project);
        print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    } else {
        print(&render_summary(&run, &entity, &project))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_run(store: &Store, args: &SummaryArgs) -> anyhow::Result<RunInfo> {
    let Store {
        client,
        entity,
        project,
        ..
    } = store;
    let place = format!("{entity}/{project}");
    if let Some(id) = &args.run {
        return client
            .run(entity, project, id)
            .await
            .with_context(|| format!("reading run {id} of {place}"))?
            .ok_or_else(|| anyhow!("no run {id:?} in {place}"));
    }
    let branch = args.branch.as_deref().unwrap_or_default();
    let query = experiment::latest_of_branch(branch);
    client
        .runs(entity, project, &query)
        .await
        .with_context(|| format!("listing runs of branch {branch:?} in {place}"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!(
                "no run of branch {branch:?} in {place} (looked for config.branch = {branch:?})"
            )
        })
}

/// Human-readable summary; internal keys (`_wandb`, `_timestamp`) are left out.
fn render_summary(run: &RunInfo, entity: &str, project: &str) -> String {
    let mut out = String::new();
    let name = run
        .display_name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(out, "run       {entity}/{project}/{}{name}", run.id);
    let _ = writeln!(out, "state     {}", run.state);
    if let Some(code) = run.exit_code {
        let _ = writeln!(out, "exit code {code}");
    }
    if let Some(created) = run.created_at {
        let _ = writeln!(out, "created   {created}");
    }
    if let Some(commit) = &run.commit {
        let _ = writeln!(out, "commit    {commit}");
    }
    if !run.tags.is_empty() {
        let _ = writeln!(out, "tags      {}", run.tags.join(", "));
    }
    write_section(&mut out, "config", run.config.iter());
    write_section(
        &mut out,
        "summary",
        run.summary
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "_wandb" | "_timestamp")),
    );
    out
}

fn write_section<'a>(
    out: &mut String,
    title: &str,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "{title}");
    if entries.is_empty() {
        let _ = writeln!(out, "  (empty)");
    }
    let width = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in entries {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {key:width$}  {shown}");
    }
}
