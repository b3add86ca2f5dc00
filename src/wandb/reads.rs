//! Reading runs back: listing with filters, one run, its full history and its console log.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::client::Client;
use super::connection::{Connection, Pager};
use super::error::{Error, Result};
use super::filestream::OUTPUT_FILE;
use super::graphql::{
    HISTORY_PAGE, RUN, RUNS, RUN_CONSOLE_LOG_TAIL, RUN_HISTORY_KEYS, UPSERT_BUCKET,
};
use super::json::{json_object, json_value, unwrap_config, Row};

/// Steps per `history` page: the server returns every row of a page because `samples` equals
/// the step range.
const HISTORY_PAGE_STEPS: u64 = 1000;
/// Runs per `runs` page, the official client's default.
const RUNS_PER_PAGE: usize = 50;
/// Console lines asked for at first; a longer log is fetched again in full.
const LOG_TAIL_LINES: u64 = 10_000;

/// Which runs of a project to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    /// MongoDB-style filter, e.g.
    /// `{"$and": [{"config.branch.value": "feat-x"}, {"state": "finished"}, {"tags": {"$in": ["probe"]}}]}`.
    pub filters: Option<Value>,
    /// Sort order such as `-created_at` (newest first), `+heartbeat_at`, `-summary_metrics.acc`.
    pub order: Option<String>,
    /// At most this many runs; all when unset.
    pub limit: Option<usize>,
}

impl RunQuery {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn filters(mut self, filters: Value) -> Self {
        self.filters = Some(filters);
        self
    }

    pub fn order(mut self, order: impl Into<String>) -> Self {
        self.order = Some(order.into());
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// A run's lifecycle state as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Pending,
    Running,
    Finished,
    Failed,
    Crashed,
    Killed,
    Preempting,
    Preempted,
    /// A state this client does not know, kept verbatim.
    Other(String),
}

impl RunState {
    pub fn parse(state: &str) -> Self {
        match state {
            "pending" => RunState::Pending,
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "failed" => RunState::Failed,
            "crashed" => RunState::Crashed,
            "killed" => RunState::Killed,
            "preempting" => RunState::Preempting,
            "preempted" => RunState::Preempted,
            other => RunState::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Crashed => "crashed",
            RunState::Killed => "killed",
            RunState::Preempting => "preempting",
            RunState::Preempted => "preempted",
            RunState::Other(other) => other,
        }
    }

    /// The states after which a run does not change any more in this attempt.
    pub const TERMINAL: [RunState; 5] = [
        RunState::Finished,
        RunState::Failed,
        RunState::Crashed,
        RunState::Killed,
        RunState::Preempted,
    ];

    /// Whether the run has stopped for good in this attempt.
    pub fn is_terminal(&self) -> bool {
        Self::TERMINAL.contains(self)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A run as read back from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// The server's opaque storage id.
    pub storage_id: String,
    /// The run id (W&B's run "name"), e.g. `hb8zh4xt`.
    pub id: String,
    pub display_name: Option<String>,
    pub state: RunState,
    /// User config, unwrapped from `{"value": ..}`, without SDK-internal keys.
    pub config: Row,
    pub summary: Row,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub notes: Option<String>,
    pub commit: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub created_at: Option<OffsetDateTime>,
    /// When the server last heard from the run; a stale value on a running run means it died.
    #[serde(serialize_with = "serialize_time")]
    pub heartbeat_at: Option<OffsetDateTime>,
    pub history_line_count: u64,
    /// The last history step, if any history was logged.
    pub last_step: Option<u64>,
    /// The process exit code, once the run has finished.
    pub exit_code: Option<i64>,
}

/// The `RunFields` fragment as the server sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRun {
    id: String,
    name: String,
    display_name: Option<String>,
    state: Option<String>,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    summary_metrics: Value,
    tags: Option<Vec<String>>,
    group: Option<String>,
    job_type: Option<String>,
    notes: Option<String>,
    commit: Option<String>,
    created_at: Option<String>,
    heartbeat_at: Option<String>,
    history_line_count: Option<u64>,
    #[serde(default)]
    history_keys: Value,
    exitcode: Option<i64>,
}

impl From<RawRun> for RunInfo {
    fn from(raw: RawRun) -> Self {
        let summary = json_object(raw.summary_metrics);
        let last_step =
            last_step(raw.history_keys).or_else(|| summary.get("_step").and_then(Value::as_u64));
        RunInfo {
            storage_id: raw.id,
            id: raw.name,
            display_name: raw.display_name,
            state: RunState::parse(raw.state.as_deref().unwrap_or("")),
            config: unwrap_config(raw.config),
            summary,
            tags: raw.tags.unwrap_or_default(),
            group: raw.group,
            job_type: raw.job_type,
            notes: raw.notes,
            commit: raw.commit,
            created_at: raw.created_at.as_deref().and_then(parse_time),
            heartbeat_at: raw.heartbeat_at.as_deref().and_then(parse_time),
            history_line_count: raw.history_line_count.unwrap_or(0),
            last_step,
            exit_code: raw.exitcode,
        }
    }
}

/// `historyKeys.lastStep`; absent or negative when nothing was logged.
fn last_step(history_keys: Value) -> Option<u64> {
    json_value(history_keys)
        .get("lastStep")
        .and_then(Value::as_u64)
}

/// Server timestamps: RFC 3339, or ISO 8601 without a zone, meaning UTC.
pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let naive = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| PrimitiveDateTime::parse(text, naive).map(PrimitiveDateTime::assume_utc))
        .map_err(|e| tracing::debug!(text, error = %e, "unparseable server timestamp"))
        .ok()
}

fn serialize_time<S: Serializer>(
    time: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time.and_then(|t| t.format(&Rfc3339).ok()) {
        Some(text) => serializer.serialize_str(&text),
        None => serializer.serialize_none(),
    }
}

#[derive(Deserialize)]
struct ProjectData<T> {
    project: Option<T>,
}

#[derive(Deserialize)]
struct RunData<T> {
    run: Option<T>,
}

impl Client {
    /// Runs of a project, filtered and ordered by the server, following pages until the
    /// query's limit or the last page.
    pub async fn runs(
        &self,
        entity: &str,
        project: &str,
        query: &RunQuery,
    ) -> Result<Vec<RunInfo>> {
        #[derive(Deserialize)]
        struct Project {
            runs: Option<Connection<RawRun>>,
        }

        let filters = query.filters.as_ref().map(Value::to_string);
        let mut runs = Vec::new();
        let mut pager = Pager::default();
        while !pager.is_done() {
            let wanted = query.limit.map_or(RUNS_PER_PAGE, |limit| {
                limit.saturating_sub(runs.len()).min(RUNS_PER_PAGE)
            });
            if wanted == 0 {
                break;
            }
            let variables = json!({
                "project": project, "entity": entity, "cursor": pager.cursor(), "perPage": wanted,
                "order": query.order, "filters": filters,
            });
            let data: ProjectData<Project> = self.transport().graphql(&RUNS, variables).await?;
            let page = data.project.and_then(|p| p.runs);
            runs.extend(pager.advance(page).map(RunInfo::from));
        }
        if let Some(limit) = query.limit {
            runs.truncate(limit);
        }
        Ok(runs)
    }

    /// One run, or `None` when the project or run does not exist.
    pub async fn run(&self, entity: &str, project: &str, run_id: &str) -> Result<Option<RunInfo>> {
        let variables = json!({"project": project, "entity": entity, "name": run_id});
        let data: ProjectData<RunData<RawRun>> = self.transport().graphql(&RUN, variables).await?;
        Ok(data.project.and_then(|p| p.run).map(RunInfo::from))
    }

    /// Replaces the tags of an existing run, as the public API's `Run.update()` does: an
    /// `upsertBucket` naming the run by its storage id and leaving every other field alone.
    pub async fn set_run_tags(&self, run: &RunInfo, tags: &[String]) -> Result<()> {
        let variables = json!({"id": run.storage_id, "tags": tags});
        let _: Value = self.transport().graphql(&UPSERT_BUCKET, variables).await?;
        Ok(())
    }

    /// Replaces the notes of an existing run, leaving every other field alone.
    pub async fn set_run_notes(&self, run: &RunInfo, notes: &str) -> Result<()> {
        let variables = json!({"id": run.storage_id, "notes": notes});
        let _: Value = self.transport().graphql(&UPSERT_BUCKET, variables).await?;
        Ok(())
    }

    /// Every history row of a run in step order, paged by step range.
    pub async fn history(&self, entity: &str, project: &str, run_id: &str) -> Result<Vec<Row>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Keys {
            #[serde(default)]
            history_keys: Value,
        }
        #[derive(Deserialize)]
        struct Page {
            history: Option<Vec<Value>>,
        }

        let variables = json!({"project": project, "entity": entity, "name": run_id});
        let data: ProjectData<RunData<Keys>> = self
            .transport()
            .graphql(&RUN_HISTORY_KEYS, variables)
            .await?;
        let keys = data
            .project
            .and_then(|p| p.run)
            .ok_or_else(|| Error::NotFound(format!("run {entity}/{project}/{run_id}")))?;
        let Some(last_step) = last_step(keys.history_keys) else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        let mut min_step = 0;
        while min_step <= last_step {
            let max_step = min_step + HISTORY_PAGE_STEPS;
            let variables = json!({
                "entity": entity, "project": project, "run": run_id,
                "minStep": min_step, "maxStep": max_step, "pageSize": HISTORY_PAGE_STEPS,
            });
            let data: ProjectData<RunData<Page>> =
                self.transport().graphql(&HISTORY_PAGE, variables).await?;
            let page = data
                .project
                .and_then(|p| p.run)
                .and_then(|r| r.history)
                .unwrap_or_default();
            for line in page {
                match json_value(line) {
                    Value::Object(row) => rows.push(row),
                    other => {
                        tracing::warn!(run = run_id, line = %other, "skipping a history line that is not an object")
                    }
                }
            }
            min_step = max_step;
        }
        Ok(rows)
    }

    /// The run's console output: the uploaded `output.log` when there is one (finished runs),
    /// else the lines the server collected from the file stream.
    pub async fn output_log(&self, entity: &str, project: &str, run_id: &str) -> Result<String> {
        if let Some(bytes) = self.run_file(entity, project, run_id, OUTPUT_FILE).await? {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        let (count, lines) = self
            .log_tail(entity, project, run_id, LOG_TAIL_LINES)
            .await?;
        let lines = if count > LOG_TAIL_LINES {
            self.log_tail(entity, project, run_id, count).await?.1
        } else {
            lines
        };
        Ok(lines.into_iter().map(|line| line + "\n").collect())
    }

    /// The last `last` console lines and the total line count.
    async fn log_tail(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
        last: u64,
    ) -> Result<(u64, Vec<String>)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Logs {
            log_line_count: Option<u64>,
            log_lines: Option<Connection<Line>>,
        }
        #[derive(Deserialize)]
        struct Line {
            line: Option<String>,
        }

        let variables =
            json!({"entity": entity, "project": project, "runName": run_id, "last": last});
        let data: ProjectData<RunData<Logs>> = self
            .transport()
            .graphql(&RUN_CONSOLE_LOG_TAIL, variables)
            .await?;
        let logs = data
            .project
            .and_then(|p| p.run)
            .ok_or_else(|| Error::NotFound(format!("run {entity}/{project}/{run_id}")))?;
        let lines: Vec<String> = logs
            .log_lines
            .into_iter()
            .flat_map(Connection::nodes)
            .filter_map(|n| n.line)
            .collect();
        Ok((logs.log_line_count.unwrap_or(lines.len() as u64), lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_runs_become_typed_run_info() {
        let raw: RawRun = serde_json::from_value(json!({
            "id": "UnVuOjE=", "name": "hb8zh4xt", "displayName": "probe", "state": "finished",
            "config": "{\"lr\": {\"value\": 0.001, \"desc\": null}, \"_wandb\": {\"value\": {}}}",
            "summaryMetrics": "{\"loss\": 0.33, \"_step\": 2}",
            "tags": ["probe"], "group": "g", "jobType": "train", "notes": null, "commit": "abc",
            "createdAt": "2026-11-23T11:12:20", "heartbeatAt": "2026-11-23T11:13:31.5Z",
            "historyLineCount": 3, "historyKeys": {"lastStep": 2, "keys": {}}
        }))
        .unwrap();
        let run = RunInfo::from(raw);
        assert_eq!(run.id, "hb8zh4xt");
        assert_eq!(run.storage_id, "UnVuOjE=");
        assert_eq!(run.state, RunState::Finished);
        assert!(run.state.is_terminal());
        assert_eq!(Value::Object(run.config.clone()), json!({"lr": 0.001}));
        assert_eq!(run.summary["loss"], json!(0.33));
        assert_eq!(run.last_step, Some(2));
        assert_eq!(run.history_line_count, 3);
        assert_eq!(run.created_at.unwrap().unix_timestamp(), 1_795_432_340);
        assert_eq!(run.heartbeat_at.unwrap().unix_timestamp(), 1_795_432_411);
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["state"], "finished");
        assert_eq!(json["created_at"], "2026-11-23T11:12:20Z");
    }

    #[test]
    fn sparse_runs_still_parse() {
        let raw: RawRun = serde_json::from_value(json!({"id": "x", "name": "r", "state": "zombie",
            "historyKeys": "{\"lastStep\": -1}", "createdAt": "yesterday"}))
        .unwrap();
        let run = RunInfo::from(raw);
        assert_eq!(run.state, RunState::Other("zombie".into()));
        assert_eq!(run.state.to_string(), "zombie");
        assert!(!run.state.is_terminal());
        assert_eq!(run.last_step, None);
        assert_eq!(run.created_at, None);
        assert!(run.config.is_empty() && run.summary.is_empty() && run.tags.is_empty());
    }
}
