//! What a report needs, read from W&B: the run, its history, log, exit code and prediction
//! table; the baseline run and its seeds.

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::report::RunVersion;
use crate::experiment::baseline;
use crate::experiment::keys::{config, metric};
use crate::git::valid_branch;
use crate::secrets::Redactor;
use crate::wandb::{Client, Row, RunInfo, RunState};

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
    pub fn version(&self) -> RunVersion {
        RunVersion {
            state: self.run.state.to_string(),
            heartbeat: self.run.heartbeat_at.map_or(0, |t| t.unix_timestamp()),
            history_lines: self.run.history_line_count,
        }
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
/// and exit code. Everything a report could show comes back with secrets redacted, so no
/// renderer has to remember to.
pub async fn gather(
    project: &Project,
    mut run: RunInfo,
    redactor: &Redactor,
) -> anyhow::Result<Facts> {
    let Project {
        client,
        entity,
        project: name,
        ..
    } = project;
    let id = run.id.clone();
    run.config
        .values_mut()
        .for_each(|v| redactor.redact_value(v));
    let branch = run
        .config
        .get(config::BRANCH)
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
        let log = client
            .output_log(entity, name, &id)
            .await
            .with_context(|| format!("reading the log of run {id}"))?;
        facts.log = redactor.redact(&log);
    } else {
        let (history, predictions) = tokio::join!(
            client.history(entity, name, &id),
            predictions(project, &facts.run)
        );
        facts.history = history.with_context(|| format!("reading the history of run {id}"))?;
        facts.predictions = predictions.map(|mut table| {
            table
                .data
                .iter_mut()
                .flatten()
                .for_each(|cell| redactor.redact_value(cell));
            table
        });
    }
    Ok(facts)
}

/// The prediction table the summary points at; a missing or unreadable one is left out of the
/// report rather than failing it.
async fn predictions(project: &Project, run: &RunInfo) -> Option<Predictions> {
    let path = run
        .summary
        .get(metric::VAL_PREDICTIONS)?
        .get("path")?
        .as_str()?;
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

/// The baseline for `run` by the run contract's rule ([`baseline::find`]), with its facts;
/// `None` when there is none.
pub async fn baseline(
    project: &Project,
    branch: &str,
    metric: &str,
    exclude: &str,
    redactor: &Redactor,
) -> anyhow::Result<Option<Baseline>> {
    let found = baseline::find(
        &project.client,
        &project.entity,
        &project.project,
        branch,
        metric,
        exclude,
    )
    .await?;
    let Some(baseline::Baseline { run, seeds }) = found else {
        return Ok(None);
    };
    let facts = gather(project, run, redactor).await?;
    // A run tagged baseline may come from another branch; say which.
    let branch = facts.branch.clone().unwrap_or_else(|| branch.to_owned());
    Ok(Some(Baseline {
        facts,
        branch,
        seeds,
    }))
}
