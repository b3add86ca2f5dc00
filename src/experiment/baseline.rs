//! Which run a finished run is judged against.
//!
//! A finished run tagged `baseline` wins, whatever its branch; else the latest finished run of
//! the baseline branch. Its seeds are the finished candidates of the same code (the same
//! commit): their spread is the noise band of the verdict.

use anyhow::Context;
use serde_json::{json, Value};

use super::keys::config;
use super::verdict::number;
use super::BASELINE_TAG;
use crate::wandb::{Client, RunInfo, RunQuery};

/// The branch whose runs are the baseline unless a run is tagged `baseline`.
pub const DEFAULT_BRANCH: &str = "main";
/// Candidates read per query, for the seeds.
const CANDIDATES: usize = 10;

/// The baseline run and the primary metric of each of its seeds (itself included).
#[derive(Debug, Clone)]
pub struct Baseline {
    pub run: RunInfo,
    /// `(run id, value)`, newest first.
    pub seeds: Vec<(String, f64)>,
}

/// The baseline for a run of `project` judged on `metric`, never the run `exclude` itself;
/// `None` when there is no finished candidate.
pub async fn find(
    client: &Client,
    entity: &str,
    project: &str,
    branch: &str,
    metric: &str,
    exclude: &str,
) -> anyhow::Result<Option<Baseline>> {
    let tagged = RunQuery::new()
        .filters(json!({"$and": [{"tags": {"$in": [BASELINE_TAG]}}, {"state": "finished"}]}))
        .order("-created_at")
        .limit(CANDIDATES);
    let tagged = client
        .runs(entity, project, &tagged)
        .await
        .context("looking for a run tagged baseline")?;
    let of_branch = finished_of_branch(client, entity, project, branch).await?;
    let candidates: Vec<RunInfo> = tagged
        .into_iter()
        .chain(of_branch)
        .filter(|r| r.id != exclude)
        .collect();
    Ok(choose(candidates, metric))
}

/// The latest finished run of `branch` and its seeds, whatever is tagged `baseline`: the other
/// side of a head-to-head comparison.
pub async fn of_branch(
    client: &Client,
    entity: &str,
    project: &str,
    branch: &str,
    metric: &str,
    exclude: &str,
) -> anyhow::Result<Option<Baseline>> {
    let mut candidates = finished_of_branch(client, entity, project, branch).await?;
    candidates.retain(|r| r.id != exclude);
    Ok(choose(candidates, metric))
}

async fn finished_of_branch(
    client: &Client,
    entity: &str,
    project: &str,
    branch: &str,
) -> anyhow::Result<Vec<RunInfo>> {
    let query = RunQuery::new()
        .filters(json!({"$and": [
            { config::filter_path(config::BRANCH): branch },
            {"state": "finished"},
        ]}))
        .order("-created_at")
        .limit(CANDIDATES);
    client
        .runs(entity, project, &query)
        .await
        .with_context(|| format!("listing the finished runs of branch {branch:?}"))
}

/// The first candidate, with the seeds among the candidates that ran the same code.
fn choose(candidates: Vec<RunInfo>, metric: &str) -> Option<Baseline> {
    let chosen = candidates.first()?.clone();
    let code = |r: &RunInfo| {
        r.config
            .get(config::COMMIT)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| r.commit.clone())
    };
    let chosen_code = code(&chosen);
    let mut seeds: Vec<(String, f64)> = Vec::new();
    for run in &candidates {
        let same_code = run.id == chosen.id || (chosen_code.is_some() && code(run) == chosen_code);
        if same_code && !seeds.iter().any(|(id, _)| id == &run.id) {
            if let Some(value) = number(run.summary.get(metric)).filter(|v| v.is_finite()) {
                seeds.push((run.id.clone(), value));
            }
        }
    }
    Some(Baseline { run: chosen, seeds })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wandb::RunState;

    fn run(id: &str, commit: &str, loss: f64) -> RunInfo {
        crate::experiment::test_run(
            id,
            RunState::Finished,
            json!({ config::COMMIT: commit }),
            json!({"val/loss": loss}),
        )
    }

    #[test]
    fn the_first_candidate_wins_and_its_seeds_are_the_runs_of_its_commit() {
        let tagged = run("tagged", "c1", 1.0);
        let candidates = vec![
            tagged.clone(),
            run("other", "c2", 0.5),
            run("seed", "c1", 1.1),
            // The tagged run again, as the branch query also finds it.
            tagged,
        ];
        let chosen = choose(candidates, "val/loss").unwrap();
        assert_eq!(chosen.run.id, "tagged");
        assert_eq!(
            chosen.seeds,
            vec![("tagged".to_owned(), 1.0), ("seed".to_owned(), 1.1)]
        );
        assert!(choose(Vec::new(), "val/loss").is_none());
    }
}
