//! `mlwf experiment relaunch`: a branch whose latest run failed is shown the diagnosis its PR
//! got, and launched again once it has a new commit — an unchanged commit would fail the same
//! way, so it is refused.

use anyhow::bail;
use serde::Serialize;

use super::jobs::{self, JobTemplate};
use super::{Workspace, REMOTE};
use crate::analyze::diagnose::diagnose;
use crate::experiment::baseline::code_of;
use crate::launch::{self, Launched};
use crate::wandb::RunState;

#[derive(Debug, Clone, Serialize)]
pub struct Relaunched {
    pub branch: String,
    pub failed_run: String,
    pub failed_commit: Option<String>,
    pub cause: String,
    pub suggestion: String,
    /// `None` in a dry run.
    pub launched: Option<Launched>,
    pub dry_run: bool,
}

pub async fn relaunch(
    ws: &Workspace<'_>,
    branch: Option<&str>,
    template: &JobTemplate,
    dry_run: bool,
) -> anyhow::Result<Relaunched> {
    let repo = &ws.repo;
    let branch = match branch {
        Some(branch) => branch.to_owned(),
        None => match repo.current_branch() {
            Some(branch) => branch,
            None => bail!("HEAD is detached: pass --branch"),
        },
    };
    let store = ws.store;
    let latest =
        crate::experiment::latest_run(&store.client, &store.entity, &store.project, &branch)
            .await?;
    let Some(run) = latest.as_ref() else {
        bail!("branch {branch:?} has no run: launch it first (`mlwf launch --branch {branch}`)");
    };
    if !run.state.is_terminal() {
        bail!(
            "the latest run of {branch:?}, {}, is still {}: wait for it to end",
            run.id,
            run.state
        );
    }
    if run.state == RunState::Finished {
        bail!(
            "the latest run of {branch:?}, {}, finished: relaunch is for failed runs (`mlwf launch \
             --branch {branch}` runs it again anyway)",
            run.id
        );
    }
    let log = store
        .client
        .output_log(&store.entity, &store.project, &run.id)
        .await
        .unwrap_or_default();
    let diagnosis = diagnose(run.state.as_str(), run.exit_code, &log);
    let failed_commit = code_of(run);
    let pushed = repo.remote_branch_commit(REMOTE, &branch)?;
    if pushed.is_some() && pushed == failed_commit {
        bail!(
            "{branch} is still at {:.10}, the commit whose run {} failed ({}: {}): commit a fix, \
             push it, and relaunch",
            pushed.unwrap_or_default(),
            run.id,
            diagnosis.cause.title(),
            diagnosis.cause.suggestion()
        );
    }
    let mut relaunched = Relaunched {
        branch: branch.clone(),
        failed_run: run.id.clone(),
        failed_commit,
        cause: diagnosis.cause.title().to_owned(),
        suggestion: diagnosis.cause.suggestion().to_owned(),
        launched: None,
        dry_run,
    };
    if !dry_run {
        let settings = jobs::settings(repo.dir(), Some(&branch), template, &[], None)?;
        relaunched.launched = Some(launch::launch(store, &settings).await?);
    }
    Ok(relaunched)
}
