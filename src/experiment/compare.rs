//! A branch's latest ended run against the baseline (or head to head against another branch's),
//! by the same rule ([`baseline`]) and verdict ([`verdict::compare`]) as the PR report:
//! `mlwf results compare` and the experiment list read their verdicts here.

use anyhow::{bail, Context};
use serde::Serialize;

use super::baseline::{self, Baseline};
use super::keys::config;
use super::verdict::{self, Comparison, Judging, MetricRow, Verdict};
use crate::wandb::{Client, RunInfo, RunQuery, RunState};

/// Rows of the metrics table in a comparison.
const METRIC_ROWS: usize = 12;
/// Runs read to find the branches that have any.
const RECENT_RUNS: usize = 200;

/// What a branch's run is judged against.
#[derive(Debug, Clone, Copy)]
pub enum Against<'a> {
    /// The baseline by the run contract's rule: a finished run tagged `baseline`, else the
    /// latest finished run of this branch.
    Baseline(&'a str),
    /// The latest finished run of another branch.
    Branch(&'a str),
}

/// A run as a comparison names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRef {
    pub id: String,
    pub state: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
}

impl RunRef {
    fn of(run: &RunInfo) -> Self {
        Self {
            id: run.id.clone(),
            state: run.state.as_str().to_owned(),
            branch: branch_of(run),
            commit: run.commit.clone(),
        }
    }
}

/// One branch against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BranchComparison {
    pub branch: String,
    pub run: RunRef,
    /// The run judged against, and the runs of its seeds (itself included).
    pub against: Option<RunRef>,
    pub seed_runs: Vec<String>,
    pub metric: String,
    #[serde(flatten)]
    pub comparison: Comparison,
    pub metrics: Vec<MetricRow>,
}

/// `branch`'s latest ended run against `against`. A branch with no run, or none ended yet, is
/// an error that says so; a failed run is the verdict `failed`.
pub async fn branch(
    client: &Client,
    entity: &str,
    project: &str,
    branch: &str,
    against: Against<'_>,
    judging: &Judging,
) -> anyhow::Result<BranchComparison> {
    let run = latest_ended(client, entity, project, branch).await?;
    let found = if run.state == RunState::Finished {
        let metric = &judging.metric;
        match against {
            Against::Baseline(base) => {
                baseline::find(client, entity, project, base, metric, &run.id).await?
            }
            Against::Branch(other) => {
                baseline::of_branch(client, entity, project, other, metric, &run.id).await?
            }
        }
    } else {
        None
    };
    Ok(judge(branch, &run, found.as_ref(), judging))
}

/// The verdict of `run` against `baseline` (none: no baseline, or the run did not finish).
pub fn judge(
    branch: &str,
    run: &RunInfo,
    baseline: Option<&Baseline>,
    judging: &Judging,
) -> BranchComparison {
    let seeds: Vec<f64> = baseline
        .map(|b| b.seeds.iter().map(|(_, v)| *v).collect())
        .unwrap_or_default();
    let mut comparison = verdict::compare(&run.summary, &seeds, judging);
    if run.state != RunState::Finished {
        // A failed run's last logged value is no result.
        comparison = Comparison {
            verdict: Verdict::Failed,
            value: None,
            delta: None,
            delta_pct: None,
            ..comparison
        };
    }
    let empty = Default::default();
    let metrics = match (run.state == RunState::Finished, baseline) {
        (true, Some(b)) => verdict::metric_rows(&run.summary, &b.run.summary, judging, METRIC_ROWS),
        (true, None) => verdict::metric_rows(&run.summary, &empty, judging, METRIC_ROWS),
        (false, _) => Vec::new(),
    };
    BranchComparison {
        branch: branch.to_owned(),
        run: RunRef::of(run),
        against: baseline.map(|b| RunRef::of(&b.run)),
        seed_runs: baseline
            .map(|b| b.seeds.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default(),
        metric: judging.metric.clone(),
        comparison,
        metrics,
    }
}

/// The latest run of `branch` that ended, in any way.
async fn latest_ended(
    client: &Client,
    entity: &str,
    project: &str,
    branch: &str,
) -> anyhow::Result<RunInfo> {
    let runs = client
        .runs(entity, project, &super::runs(Some(branch), None, 20))
        .await
        .with_context(|| format!("listing the runs of branch {branch:?}"))?;
    let Some(latest) = runs.first() else {
        bail!(
            "branch {branch:?} has no run in {entity}/{project}: launch it first (`mlwf launch \
             --branch {branch}`), or check --entity/--project"
        );
    };
    match runs.iter().find(|r| r.state.is_terminal()) {
        Some(ended) => Ok(ended.clone()),
        None => bail!(
            "branch {branch:?} has no ended run yet (its latest, {}, is {}): wait for it, e.g. \
             `mlwf launch --wait`",
            latest.id,
            latest.state
        ),
    }
}

/// The branches with runs among the project's recent ones, newest first, except `baseline`.
pub async fn branches(
    client: &Client,
    entity: &str,
    project: &str,
    baseline: &str,
) -> anyhow::Result<Vec<String>> {
    let query = RunQuery::new().order("-created_at").limit(RECENT_RUNS);
    let runs = client
        .runs(entity, project, &query)
        .await
        .context("listing the project's runs")?;
    let mut branches: Vec<String> = Vec::new();
    for branch in runs.iter().filter_map(branch_of) {
        if branch != baseline && !branches.contains(&branch) {
            branches.push(branch);
        }
    }
    Ok(branches)
}

/// The branch a run recorded in its config.
pub fn branch_of(run: &RunInfo) -> Option<String> {
    run.config
        .get(config::BRANCH)
        .and_then(|b| b.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Value;

    fn run(id: &str, state: RunState, loss: f64) -> RunInfo {
        crate::experiment::test_run(
            id,
            state,
            json!({ config::BRANCH: "exp/a" }),
            json!({"val/loss": loss, "val/accuracy": 0.5}),
        )
    }

    #[test]
    fn a_finished_run_is_judged_and_a_failed_one_is_failed() {
        let base = Baseline {
            run: run("base", RunState::Finished, 1.0),
            seeds: vec![("base".into(), 1.0)],
        };
        let judging = Judging::default();
        let better = judge(
            "exp/a",
            &run("r1", RunState::Finished, 0.8),
            Some(&base),
            &judging,
        );
        assert_eq!(better.comparison.verdict, Verdict::Better);
        assert_eq!(better.against.as_ref().unwrap().id, "base");
        assert_eq!(better.metrics[0].key, "val/loss");
        let failed = judge(
            "exp/a",
            &run("r2", RunState::Crashed, 0.1),
            Some(&base),
            &judging,
        );
        assert_eq!(failed.comparison.verdict, Verdict::Failed);
        assert_eq!(failed.comparison.value, None);
        assert!(failed.metrics.is_empty());
        let alone = judge("exp/a", &run("r3", RunState::Finished, 0.8), None, &judging);
        assert_eq!(alone.comparison.verdict, Verdict::NoBaseline);
        let json: Value = serde_json::to_value(&better).unwrap();
        assert_eq!(json["verdict"], "better");
        assert_eq!(json["run"]["branch"], "exp/a");
    }
}
