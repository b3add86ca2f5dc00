//! Which run a finished run is judged against, and how the `baseline` tag moves.
//!
//! A finished run tagged `baseline` wins, whatever its branch; else the latest finished run of
//! the baseline branch. Its seeds are the finished candidates of the same code (the same
//! commit): their spread is the noise band of the verdict.
//!
//! `mlwf baseline run` launches a set of seeds tagged `baseline-candidate` and `seeds:N`; once
//! all N have ended, the newest such set's finished runs take the `baseline` tag ([`promote`]).
//! A rollback retires the sets it undoes, so they are never promoted again ([`move_to`]).

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use super::keys::config;
use super::verdict::number;
use super::BASELINE_TAG;
use crate::wandb::{Client, RunInfo, RunQuery};

/// The branch whose runs are the baseline unless a run is tagged `baseline`.
pub const DEFAULT_BRANCH: &str = "main";
/// Candidates read per query, for the seeds.
const CANDIDATES: usize = 10;
/// Runs of `mlwf baseline run`.
pub const CANDIDATE_TAG: &str = "baseline-candidate";
/// The size of a candidate set, as `seeds:N`.
pub const SEEDS_TAG_PREFIX: &str = "seeds:";
/// A candidate set a rollback undid.
pub const RETIRED_TAG: &str = "baseline-retired";
/// Candidate runs read to find the newest complete set.
const CANDIDATE_RUNS: usize = 100;

/// The runs that now carry the `baseline` tag, and their commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promoted {
    pub commit: String,
    pub runs: Vec<String>,
}

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

/// The commit a run trained.
pub fn code_of(run: &RunInfo) -> Option<String> {
    run.config
        .get(config::COMMIT)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| run.commit.clone())
}

/// Moves the `baseline` tag to the newest complete candidate set (every one of its `seeds:N`
/// runs ended, one at least finished); `None` when there is none or it has the tag already.
pub async fn promote(
    client: &Client,
    entity: &str,
    project: &str,
) -> anyhow::Result<Option<Promoted>> {
    let candidates = candidate_runs(client, entity, project).await?;
    let Some((commit, runs)) = newest_complete_set(&candidates) else {
        return Ok(None);
    };
    tag_baseline(client, entity, project, &commit, &runs).await
}

/// Gives the `baseline` tag to the finished runs of `commit` (its candidates, else any finished
/// run of it), and retires the candidate sets of `retire`; `None` when `commit` has no
/// finished run, and then nothing changes.
pub async fn move_to(
    client: &Client,
    entity: &str,
    project: &str,
    commit: &str,
    retire: &[String],
) -> anyhow::Result<Option<Promoted>> {
    let query = RunQuery::new()
        .filters(json!({"$and": [
            { config::filter_path(config::COMMIT): commit },
            {"state": "finished"},
        ]}))
        .order("-created_at")
        .limit(CANDIDATE_RUNS);
    let finished = client
        .runs(entity, project, &query)
        .await
        .with_context(|| format!("listing the finished runs of {commit:.10}"))?;
    let candidates: Vec<RunInfo> = finished
        .iter()
        .filter(|r| r.tags.iter().any(|t| t == CANDIDATE_TAG))
        .cloned()
        .collect();
    let runs = if candidates.is_empty() {
        finished
    } else {
        candidates
    };
    if runs.is_empty() {
        return Ok(None);
    }
    for run in candidate_runs(client, entity, project).await? {
        if code_of(&run).is_some_and(|c| retire.contains(&c)) {
            let tags = retag(&run.tags, &[CANDIDATE_TAG], &[RETIRED_TAG]);
            client.set_run_tags(&run, &tags).await?;
        }
    }
    tag_baseline(client, entity, project, commit, &runs)
        .await
        .map(|moved| {
            moved.or_else(|| {
                Some(Promoted {
                    commit: commit.to_owned(),
                    runs: runs.iter().map(|r| r.id.clone()).collect(),
                })
            })
        })
}

async fn candidate_runs(
    client: &Client,
    entity: &str,
    project: &str,
) -> anyhow::Result<Vec<RunInfo>> {
    let query = RunQuery::new()
        .filters(json!({"tags": {"$in": [CANDIDATE_TAG]}}))
        .order("-created_at")
        .limit(CANDIDATE_RUNS);
    client
        .runs(entity, project, &query)
        .await
        .context("listing the baseline candidates")
}

/// The newest set of candidates (runs of one commit) whose `seeds:N` runs all ended, with its
/// finished runs.
fn newest_complete_set(candidates: &[RunInfo]) -> Option<(String, Vec<RunInfo>)> {
    let mut commits: Vec<String> = Vec::new();
    for commit in candidates.iter().filter_map(code_of) {
        if !commits.contains(&commit) {
            commits.push(commit);
        }
    }
    commits.into_iter().find_map(|commit| {
        let set: Vec<&RunInfo> = candidates
            .iter()
            .filter(|r| code_of(r).as_deref() == Some(commit.as_str()))
            .collect();
        let wanted = set.iter().filter_map(|r| seeds_of(r)).max().unwrap_or(1);
        let ended = set.iter().filter(|r| r.state.is_terminal()).count();
        let finished: Vec<RunInfo> = set
            .iter()
            .filter(|r| r.state == crate::wandb::RunState::Finished)
            .map(|r| (*r).clone())
            .collect();
        (ended == set.len() && ended >= wanted && !finished.is_empty())
            .then_some((commit, finished))
    })
}

fn seeds_of(run: &RunInfo) -> Option<usize> {
    run.tags
        .iter()
        .find_map(|t| t.strip_prefix(SEEDS_TAG_PREFIX)?.parse().ok())
}

/// `tags` without `remove`, with `add`, in order and without duplicates.
fn retag(tags: &[String], remove: &[&str], add: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .filter(|t| !remove.contains(&t.as_str()))
        .cloned()
        .collect();
    for tag in add {
        if !out.iter().any(|t| t == tag) {
            out.push((*tag).to_owned());
        }
    }
    out
}

/// Makes `runs` exactly the runs tagged `baseline`; `None` when they were already.
async fn tag_baseline(
    client: &Client,
    entity: &str,
    project: &str,
    commit: &str,
    runs: &[RunInfo],
) -> anyhow::Result<Option<Promoted>> {
    let query = RunQuery::new()
        .filters(json!({"tags": {"$in": [BASELINE_TAG]}}))
        .limit(CANDIDATE_RUNS);
    let current = client
        .runs(entity, project, &query)
        .await
        .context("listing the runs tagged baseline")?;
    let wanted = |id: &str| runs.iter().any(|r| r.id == id);
    let mut changed = false;
    for run in current.iter().filter(|r| !wanted(&r.id)) {
        client
            .set_run_tags(run, &retag(&run.tags, &[BASELINE_TAG], &[]))
            .await?;
        changed = true;
    }
    for run in runs
        .iter()
        .filter(|r| !r.tags.iter().any(|t| t == BASELINE_TAG))
    {
        client
            .set_run_tags(run, &retag(&run.tags, &[], &[BASELINE_TAG]))
            .await?;
        changed = true;
    }
    Ok(changed.then(|| Promoted {
        commit: commit.to_owned(),
        runs: runs.iter().map(|r| r.id.clone()).collect(),
    }))
}

/// The first candidate, with the seeds among the candidates that ran the same code.
fn choose(candidates: Vec<RunInfo>, metric: &str) -> Option<Baseline> {
    let chosen = candidates.first()?.clone();
    let chosen_code = code_of(&chosen);
    let mut seeds: Vec<(String, f64)> = Vec::new();
    for run in &candidates {
        let same_code =
            run.id == chosen.id || (chosen_code.is_some() && code_of(run) == chosen_code);
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

    fn candidate(id: &str, commit: &str, state: RunState, seeds: usize) -> RunInfo {
        let mut run =
            crate::experiment::test_run(id, state, json!({ config::COMMIT: commit }), json!({}));
        run.tags = vec![CANDIDATE_TAG.into(), format!("{SEEDS_TAG_PREFIX}{seeds}")];
        run
    }

    #[test]
    fn the_newest_set_whose_seeds_all_ended_is_promoted() {
        let ids = |set: Option<(String, Vec<RunInfo>)>| {
            set.map(|(commit, runs)| (commit, runs.into_iter().map(|r| r.id).collect::<Vec<_>>()))
        };
        // Newest first: c2 has one of its three seeds still running, c1 is complete.
        let candidates = vec![
            candidate("c2a", "c2", RunState::Running, 3),
            candidate("c2b", "c2", RunState::Finished, 3),
            candidate("c2c", "c2", RunState::Finished, 3),
            candidate("c1a", "c1", RunState::Finished, 2),
            candidate("c1b", "c1", RunState::Crashed, 2),
        ];
        assert_eq!(
            ids(newest_complete_set(&candidates)),
            Some(("c1".into(), vec!["c1a".into()]))
        );
        // Two of three seeds launched so far: not complete, even though both ended.
        let partial = &candidates[1..3];
        assert_eq!(ids(newest_complete_set(partial)), None);
        // A set where every seed failed never becomes the baseline.
        let failed = vec![candidate("f", "c3", RunState::Failed, 1)];
        assert_eq!(ids(newest_complete_set(&failed)), None);
    }

    #[test]
    fn retagging_keeps_order_and_other_tags() {
        let tags = vec!["a".to_owned(), CANDIDATE_TAG.to_owned(), "b".to_owned()];
        assert_eq!(
            retag(&tags, &[CANDIDATE_TAG], &[RETIRED_TAG, "a"]),
            vec!["a".to_owned(), "b".to_owned(), RETIRED_TAG.to_owned()]
        );
    }
}
