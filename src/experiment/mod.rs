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

/// The newest `limit` runs, of `branch` and in `state` where given.
pub fn runs(branch: Option<&str>, state: Option<&str>, limit: usize) -> RunQuery {
    RunQuery::new()
        .filters(compare::filters(branch, state))
        .order("-created_at")
        .limit(limit)
}
