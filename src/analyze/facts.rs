//! What a report needs, read from W&B: the run, its history, log, exit code and prediction
//! table; the baseline run and its seeds.

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::branch::valid_branch;
use super::compare::number;
use crate::wandb::{Client, Row, RunInfo, RunQuery, RunState};

/// The summary key holding the trainer's prediction table.
const PREDICTIONS_KEY: &str = "val/predictions";
/// Baseline runs considered for seeds.
const SEED_CANDIDATES: usize = 10;
/// A run tagged this way is the baseline, whatever its branch.
pub const BASELINE_TAG: &str = "baseline";

/// Where runs live and how their pages are addressed.
#[derive(Debug, Clone)]
pub struct Project {
    pub client: Client,
    pub entity: String,
    pub project: String,
    /// The W&B UI's base URL, for links.
    pub ui_url: String,
}

impl Project {
    pub fn run_url(&self, run_id: &str) -> String {
        format!(
            "{}/{}/{}/runs/{run_id}",
            self.ui_url.trim_end_matches('/'),
            self.entity,
            self.project
        )
    }
}

/// The UI that goes with an API URL: W&B's cloud API lives at `api.wandb.ai`, its UI at
/// `wandb.ai`; dedicated and local servers serve both from one address.
pub fn ui_url_for(api_url: &str) -> String {
    let url = api_url.trim_end_matches('/');
    url.replace("://api.wandb.ai", "://wandb.ai")
}

/// A `val/predictions` table file: `{"columns": [...], "data": [[...], ...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Predictions {
    pub columns: Vec<String>,
    pub data: Vec<Vec<Value>>,
}

/// One run with what its report needs.
#[derive(Debug, Clone)]
pub struct Facts {
    pub run: RunInfo,
    pub url: String,
    /// `config.branch`, when it is a valid branch name.
    pub branch: Option<String>,
    pub history: Vec<Row>,
    pub log: String,
    pub predictions: Option<Predictions>,
}

impl Facts {
    /// Changes whenever what the report shows could: state, last heartbeat, history length.
    pub fn version(&self) -> String {
        format!(
            "{}:{}:{}",
            self.run.state,
            self.run.heartbeat_at.map_or(0, |t| t.unix_timestamp()),
            self.run.history_line_count
        )
    }

    pub fn failed(&self) -> bool {
        self.run.state != RunState::Finished
    }
}

/// The baseline: one run, and the primary metric of every seed of the same code.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub facts: Facts,
    pub branch: String,
    /// `(run id, value)` of the baseline run and its sibling seeds.
    pub seeds: Vec<(String, f64)>,
}

/// Reads one run's facts. A finished run gets history and predictions, a failed one its log
/// and exit code.
pub async fn gather(project: &Project, run: RunInfo) -> anyhow::Result<Facts> {
    let Project {
        client,
        entity,
        project: name,
        ..
    } = project;
    let id = run.id.clone();
    let branch = run
        .config
        .get("branch")
        .and_then(Value::as_str)
        .filter(|b| valid_branch(b).is_ok())
        .map(str::to_owned);
    let mut facts = Facts {
        url: project.run_url(&id),
        branch,
        history: Vec::new(),
        log: String::new(),
        predictions: None,
        run,
    };
    if facts.failed() {
        facts.log = client
            .output_log(entity, name, &id)
            .await
            .with_context(|| format!("reading the log of run {id}"))?;
    } else {
        let (history, predictions) = tokio::join!(
            client.history(entity, name, &id),
            predictions(project, &facts.run)
        );
        facts.history = history.with_context(|| format!("reading the history of run {id}"))?;
        facts.predictions = predictions;
    }
    Ok(facts)
}

/// The prediction table the summary points at; a missing or unreadable one is left out of the
/// report rather than failing it.
async fn predictions(project: &Project, run: &RunInfo) -> Option<Predictions> {
    let path = run.summary.get(PREDICTIONS_KEY)?.get("path")?.as_str()?;
    let bytes = project
        .client
        .run_file(&project.entity, &project.project, &run.id, path)
        .await
        .map_err(|e| tracing::warn!(run = %run.id, error = %e, "cannot read the prediction table"))
        .ok()??;
    serde_json::from_slice(&bytes)
        .map_err(
            |e| tracing::warn!(run = %run.id, error = %e, "the prediction table is not a table"),
        )
        .ok()
}

/// The baseline for `run`: a finished run tagged `baseline`, else the latest finished run of
/// `branch`; its seeds are the finished runs of the same commit (or, without commits, the
/// baseline alone). `None` when there is none.
pub async fn baseline(
    project: &Project,
    branch: &str,
    metric: &str,
    exclude: &str,
) -> anyhow::Result<Option<Baseline>> {
    let Project {
        client,
        entity,
        project: name,
        ..
    } = project;
    let finished = |filter: Value| {
        RunQuery::new()
            .filters(json!({"$and": [filter, {"state": "finished"}]}))
            .order("-created_at")
            .limit(SEED_CANDIDATES)
    };
    let tagged = client
        .runs(
            entity,
            name,
            &finished(json!({"tags": {"$in": [BASELINE_TAG]}})),
        )
        .await
        .context("looking for a run tagged baseline")?;
    let of_branch = client
        .runs(
            entity,
            name,
            &finished(json!({"config.branch.value": branch})),
        )
        .await
        .with_context(|| format!("listing the finished runs of branch {branch:?}"))?;
    let candidates: Vec<RunInfo> = tagged
        .into_iter()
        .chain(of_branch)
        .filter(|r| r.id != exclude)
        .collect();
    let Some(chosen) = candidates.first().cloned() else {
        return Ok(None);
    };
    let code = |r: &RunInfo| {
        r.config
            .get("commit")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| r.commit.clone())
    };
    let chosen_code = code(&chosen);
    let mut seeds = Vec::new();
    for run in &candidates {
        let same_code = run.id == chosen.id || (chosen_code.is_some() && code(run) == chosen_code);
        if same_code && !seeds.iter().any(|(id, _)| id == &run.id) {
            if let Some(value) = number(run.summary.get(metric)).filter(|v| v.is_finite()) {
                seeds.push((run.id.clone(), value));
            }
        }
    }
    let facts = gather(project, chosen).await?;
    // A run tagged baseline may come from another branch; say which.
    let branch = facts.branch.clone().unwrap_or_else(|| branch.to_owned());
    Ok(Some(Baseline {
        facts,
        branch,
        seeds,
    }))
}
