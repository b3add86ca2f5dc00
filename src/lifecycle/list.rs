//! `mlwf experiment list`: every experiment branch on the remote with its PR, its latest run
//! and that run's verdict against the baseline — the dashboard of parallel experiments.

use serde::Serialize;

use super::{Workspace, BRANCH_PREFIX, REMOTE};
use crate::experiment::compare::{self, Against};

#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub branch: String,
    pub commit: String,
    /// Seconds since the branch's last commit.
    pub age_s: Option<i64>,
    pub pr: Option<u64>,
    pub draft: Option<bool>,
    /// The latest run, in any state.
    pub run: Option<String>,
    pub state: Option<String>,
    /// The latest ended run's verdict, or why there is none.
    pub verdict: Option<String>,
    pub delta_pct: Option<f64>,
    pub note: Option<String>,
}

/// The experiment branches, newest commit first. Without a GitHub token the PR columns stay
/// empty.
pub async fn list(ws: &Workspace<'_>) -> anyhow::Result<Vec<Experiment>> {
    let repo = &ws.repo;
    repo.fetch(REMOTE, &[])?;
    let branches = repo.remote_branches(REMOTE, BRANCH_PREFIX)?;
    let pulls = match &ws.github {
        Some(github) => github.open_pulls().await?,
        None => Vec::new(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let store = ws.store;
    let mut experiments = Vec::new();
    for (branch, commit) in branches {
        let pull = pulls.iter().find(|p| p.head.branch == branch);
        let latest =
            crate::experiment::latest_run(&store.client, &store.entity, &store.project, &branch)
                .await?;
        let latest = latest.as_ref();
        let (verdict, delta_pct, note) = match latest {
            None => (
                None,
                None,
                Some("no run yet: `mlwf launch --branch …`".to_owned()),
            ),
            Some(_) => match compare::branch(
                &store.client,
                &store.entity,
                &store.project,
                &branch,
                Against::Baseline(&ws.base),
                &ws.judging,
            )
            .await
            {
                Ok(c) => (
                    Some(c.comparison.verdict.as_str().to_owned()),
                    c.comparison.delta_pct,
                    None,
                ),
                Err(error) => (None, None, Some(format!("{error:#}"))),
            },
        };
        experiments.push(Experiment {
            age_s: repo.commit_time(&commit).ok().map(|t| now - t),
            branch,
            commit,
            pr: pull.map(|p| p.number),
            draft: pull.map(|p| p.draft),
            run: latest.map(|r| r.id.clone()),
            state: latest.map(|r| r.state.as_str().to_owned()),
            verdict,
            delta_pct,
            note,
        });
    }
    experiments.sort_by_key(|e| e.age_s.unwrap_or(i64::MAX));
    Ok(experiments)
}
