//! The run contract shared by the trainer, the reporter and the loop commands: the names a run
//! is recorded under (`keys`), how runs are tagged, when a run has ended, which run is the
//! baseline (`baseline`), and the verdict of a run against it (`verdict`).

pub mod baseline;
pub mod compare;
pub mod keys;
pub mod verdict;

use serde_json::json;

use crate::wandb::{RunQuery, RunState};

/// The tag a run gets once its report is posted.
pub const REPORTED_TAG: &str = "mlwf:reported";
/// A run tagged this way is the baseline, whatever its branch.
pub const BASELINE_TAG: &str = "baseline";

/// The runs that ended and were not reported yet, newest first, at most `limit`.
pub fn unreported(limit: usize) -> RunQuery {
    let ended: Vec<&str> = RunState::TERMINAL.iter().map(RunState::as_str).collect();
    RunQuery::new()
        .filters(json!({"$and": [
            {"state": {"$in": ended}},
            {"tags": {"$nin": [REPORTED_TAG]}},
        ]}))
        .order("-created_at")
        .limit(limit)
}

/// The latest run of `branch`, in any state.
pub fn latest_of_branch(branch: &str) -> RunQuery {
    runs(Some(branch), None, 1)
}

/// The latest run of `branch` in `entity/project`, in any state; `None` when it has none.
pub async fn latest_run(
    client: &crate::wandb::Client,
    entity: &str,
    project: &str,
    branch: &str,
) -> anyhow::Result<Option<crate::wandb::RunInfo>> {
    use anyhow::Context as _;
    let runs = client
        .runs(entity, project, &latest_of_branch(branch))
        .await
        .with_context(|| format!("listing the runs of branch {branch:?}"))?;
    Ok(runs.into_iter().next())
}

/// The filter of runs of `branch` and in `state`, where given.
fn filters(branch: Option<&str>, state: Option<&str>) -> serde_json::Value {
    let mut all = Vec::new();
    if let Some(branch) = branch {
        all.push(json!({ keys::config::filter_path(keys::config::BRANCH): branch }));
    }
    if let Some(state) = state {
        all.push(json!({ "state": state }));
    }
    match all.len() {
        0 => json!({}),
        1 => all.remove(0),
        _ => json!({ "$and": all }),
    }
}

/// The newest `limit` runs, of `branch` and in `state` where given.
pub fn runs(branch: Option<&str>, state: Option<&str>, limit: usize) -> RunQuery {
    RunQuery::new()
        .filters(filters(branch, state))
        .order("-created_at")
        .limit(limit)
}

/// A run with `config` and `summary` (JSON objects) for the contract's unit tests.
#[cfg(test)]
pub(crate) fn test_run(
    id: &str,
    state: RunState,
    config: serde_json::Value,
    summary: serde_json::Value,
) -> crate::wandb::RunInfo {
    let row = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    crate::wandb::RunInfo {
        storage_id: id.to_owned(),
        id: id.to_owned(),
        display_name: None,
        state,
        config: row(config),
        summary: row(summary),
        tags: Vec::new(),
        group: None,
        job_type: None,
        notes: None,
        commit: None,
        created_at: None,
        heartbeat_at: None,
        history_line_count: 0,
        last_step: None,
        exit_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_filters_combine() {
        assert_eq!(filters(None, None), json!({}));
        assert_eq!(filters(None, Some("failed")), json!({"state": "failed"}));
        assert_eq!(
            filters(Some("main"), Some("finished")),
            json!({"$and": [{"config.branch.value": "main"}, {"state": "finished"}]})
        );
    }
}
