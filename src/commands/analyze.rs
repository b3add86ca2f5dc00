//! `mlwf analyze`: the GitHub Action's entry point, also run by hand. Reads the dispatch event,
//! the W&B, GitHub and Claude settings, and reports every run that needs it.

use std::process::ExitCode;

use anyhow::anyhow;

use super::{env, judging, print, store_settings};
use crate::analyze::event::{self, Dispatch};
use crate::analyze::facts::{self, Project};
use crate::analyze::llm::Claude;
use crate::analyze::{self, Options};
use crate::cli::{AnalyzeArgs, StoreArgs};
use crate::connect::{self, Purpose};
use crate::github::actions::Actions;
use crate::secrets::{self, Redactor, Secret};

pub async fn run(store: &StoreArgs, args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let dispatch = match &args.event {
        Some(path) if path.as_os_str().is_empty() => Dispatch::default(),
        Some(path) => event::read_event(path)?,
        None => Dispatch::default(),
    };
    for warning in &dispatch.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(run) = &args.run {
        event::check_run_id(run)?;
    }
    let github = if args.dry_run {
        None
    } else {
        Some(super::github(&args.github, None)?.ok_or_else(|| {
            anyhow!("no GitHub token: set GITHUB_TOKEN (or --github-token), or use --dry-run")
        })?)
    };
    let claude = claude(&args)?;
    let store = connect::open(&store_settings(store, None, env), Purpose::Read).await?;
    let settings = store.client.settings();
    let secrets: Vec<String> = settings
        .api_key
        .as_ref()
        .map(|k| k.expose_secret().to_owned())
        .into_iter()
        .chain(args.github.github_token.clone())
        .chain(args.anthropic_api_key.clone())
        .collect();
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        secrets.iter().for_each(|s| secrets::add_mask(s));
    }
    let project = Project {
        client: store.client.clone(),
        entity: store.entity.clone(),
        project: store.project.clone(),
        ui_url: args
            .wandb_ui_url
            .clone()
            .unwrap_or_else(|| facts::ui_url_for(settings.base_url.as_str())),
    };
    for (what, said, used) in [
        ("entity", &dispatch.entity, &project.entity),
        ("project", &dispatch.project, &project.project),
    ] {
        if said.as_ref().is_some_and(|s| s != used) {
            tracing::warn!(
                "the dispatch names {what} {said:?} but mlwf is configured for {used:?}; using {used:?}"
            );
        }
    }
    let options = Options {
        judging: judging(&args.judging),
        baseline_branch: args.judging.baseline_branch.clone(),
        run: args.run.clone(),
        dispatch,
        max_runs: args.max_runs,
        github,
        claude,
        actions: Actions {
            step_summary: args.step_summary.clone(),
            output: args.output.clone(),
        },
        redactor: Redactor::new(secrets),
    };
    let outcome = analyze::run(&project, &options).await;
    store.close().await;
    let outcome = outcome?;
    if args.dry_run {
        let mut printed: Vec<&str> = Vec::new();
        for report in &outcome.reports {
            if !printed.contains(&report.markdown.as_str()) {
                print(&format!("{}\n", report.markdown))?;
                printed.push(&report.markdown);
            }
        }
    }
    if outcome.reports.is_empty() {
        eprintln!("mlwf: no finished run left to report");
    }
    Ok(ExitCode::SUCCESS)
}

/// Claude for failure narratives, when asked for and a key is set.
fn claude(args: &AnalyzeArgs) -> anyhow::Result<Option<Claude>> {
    match (args.llm, args.anthropic_api_key.as_deref()) {
        (true, Some(key)) if !key.is_empty() => Ok(Some(Claude::new(
            &args.anthropic_api_url,
            Secret::new(key),
            &args.llm_model,
        )?)),
        (true, _) => {
            tracing::info!("ANTHROPIC_API_KEY is not set; failure reports go without a narrative");
            Ok(None)
        }
        (false, _) => Ok(None),
    }
}
