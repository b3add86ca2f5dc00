//! Runs: creation and update (`upsertBucket`), lookups, listing, state changes.

use rusqlite::{Connection, OptionalExtension as _};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::automations;
use super::{
    ensure_project, invalid, json_column, not_found, now, parse_time, validate_name, StoreResult,
};

/// States of a run whose process is not (yet, or any more) sending: new file_stream data from it
/// means it runs (again: a resumed run, or a `pending` run that a launch agent started).
const NOT_LIVE_STATES: [&str; 6] = [
    "finished",
    "failed",
    "crashed",
    "killed",
    "preempted",
    "pending",
];

#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub notes: Option<String>,
    pub stored_state: String,
    pub config: String,
    pub summary: String,
    pub system_metrics: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub commit: Option<String>,
    pub host: Option<String>,
    pub sweep_name: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub heartbeat_at: String,
    pub stopped: bool,
    pub exit_code: Option<i64>,
    pub history_last_step: Option<i64>,
}

impl RunRow {
    /// The state clients see: the stored one, except that a run silent for longer than
    /// `timeout` while `running` has crashed (`preempting` becomes `preempted`). The stored state
    /// is left alone: a run that comes back is running.
    pub fn state(&self, timeout: std::time::Duration) -> &str {
        let silent = parse_time(&self.heartbeat_at)
            .is_some_and(|at| OffsetDateTime::now_utc() - at > timeout);
        match self.stored_state.as_str() {
            "running" if silent => "crashed",
            "preempting" if silent => "preempted",
            other => other,
        }
    }

    pub fn config_json(&self) -> Value {
        json_column(&self.config, Value::Object(Default::default()))
    }

    pub fn summary_json(&self) -> Value {
        json_column(&self.summary, Value::Object(Default::default()))
    }
}

pub const RUN_COLUMNS: &str = "id, project_id, name, display_name, description, notes, state, \
    config, summary, system_metrics, tags, group_name, job_type, commit_hash, host, sweep_name, \
    created_at, updated_at, heartbeat_at, stopped, exit_code, history_last_step";

pub fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let tags: String = row.get(10)?;
    Ok(RunRow {
        id: row.get(0)?,
        project_id: row.get(1)?,
        name: row.get(2)?,
        display_name: row.get(3)?,
        description: row.get(4)?,
        notes: row.get(5)?,
        stored_state: row.get(6)?,
        config: row.get(7)?,
        summary: row.get(8)?,
        system_metrics: row.get(9)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        group: row.get(11)?,
        job_type: row.get(12)?,
        commit: row.get(13)?,
        host: row.get(14)?,
        sweep_name: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        heartbeat_at: row.get(18)?,
        stopped: row.get(19)?,
        exit_code: row.get(20)?,
        history_last_step: row.get(21)?,
    })
}

pub fn find_run(conn: &Connection, project_id: i64, name: &str) -> StoreResult<Option<RunRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE project_id = ?1 AND name = ?2"),
            (project_id, name),
            run_from_row,
        )
        .optional()?)
}

pub fn run_by_id(conn: &Connection, id: i64) -> StoreResult<Option<RunRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [id],
            run_from_row,
        )
        .optional()?)
}

/// Looks a run up by entity, project and run id.
pub fn find_run_by_path(
    conn: &Connection,
    entity: &str,
    project: &str,
    run: &str,
) -> StoreResult<Option<RunRow>> {
    match super::find_project(conn, entity, project)? {
        Some(p) => find_run(conn, p.id, run),
        None => Ok(None),
    }
}

pub fn require_run(
    conn: &Connection,
    entity: &str,
    project: &str,
    run: &str,
) -> StoreResult<RunRow> {
    find_run_by_path(conn, entity, project, run)?
        .ok_or_else(|| not_found(format!("run {entity}/{project}/{run} not found")))
}

/// Every run of a project, oldest first (filtering and ordering happen in `filter`).
pub fn project_runs(conn: &Connection, project_id: i64) -> StoreResult<Vec<RunRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE project_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([project_id], run_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `UpsertBucketInput`; a null field leaves the stored value alone.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpsertRun {
    pub id: Option<String>,
    pub name: Option<String>,
    pub group_name: Option<String>,
    pub model_name: Option<String>,
    pub entity_name: Option<String>,
    pub description: Option<String>,
    pub display_name: Option<String>,
    pub notes: Option<String>,
    pub config: Option<String>,
    pub commit: Option<String>,
    pub host: Option<String>,
    pub job_program: Option<String>,
    pub job_repo: Option<String>,
    pub job_type: Option<String>,
    pub state: Option<String>,
    pub sweep: Option<String>,
    pub tags: Option<Vec<String>>,
    pub summary_metrics: Option<String>,
}

pub const VALID_STATES: [&str; 8] = [
    "running",
    "finished",
    "failed",
    "crashed",
    "killed",
    "preempting",
    "preempted",
    "pending",
];

/// Creates or updates a run. `existing_id` is the decoded storage id when the client sent one.
/// Returns the run and whether it was created.
pub fn upsert_run(
    conn: &Connection,
    input: &UpsertRun,
    existing_id: Option<i64>,
    default_entity: &str,
) -> StoreResult<(RunRow, bool)> {
    let config = input
        .config
        .as_deref()
        .map(|c| normalize_json_object("config", c))
        .transpose()?;
    let summary = input
        .summary_metrics
        .as_deref()
        .map(|s| normalize_json_object("summaryMetrics", s))
        .transpose()?;
    if let Some(state) = &input.state {
        if !VALID_STATES.contains(&state.as_str()) {
            return Err(invalid(format!("unknown run state {state:?}")));
        }
    }
    let tags = input
        .tags
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(anyhow::Error::from)?;

    let existing = match existing_id {
        Some(id) => Some(run_by_id(conn, id)?.ok_or_else(|| not_found("run not found"))?),
        None => None,
    };
    let (project_id, name) = match &existing {
        Some(run) => (run.project_id, run.name.clone()),
        None => {
            let entity = input.entity_name.as_deref().unwrap_or(default_entity);
            let project = input.model_name.as_deref().unwrap_or("uncategorized");
            let project_id = ensure_project(conn, entity, project)?;
            let name = match &input.name {
                Some(name) => {
                    validate_name("run id", name)?;
                    name.clone()
                }
                None => random_run_name(),
            };
            (project_id, name)
        }
    };

    let now = now();
    let before = find_run(conn, project_id, &name)?.map(|run| run.stored_state);
    let inserted = match before {
        Some(_) => false,
        None => {
            let display_name = match &input.display_name {
                Some(d) => d.clone(),
                None => generated_display_name(conn, project_id)?,
            };
            conn.execute(
                "INSERT INTO runs (project_id, name, display_name, state, created_at, updated_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)",
                (
                    project_id,
                    &name,
                    &display_name,
                    input.state.as_deref().unwrap_or("running"),
                    &now,
                ),
            )?;
            true
        }
    };
    conn.execute(
        "UPDATE runs SET
            display_name = COALESCE(?3, display_name),
            description = COALESCE(?4, description),
            notes = COALESCE(?5, notes),
            state = COALESCE(?6, state),
            config = COALESCE(?7, config),
            summary = COALESCE(?8, summary),
            tags = COALESCE(?9, tags),
            group_name = COALESCE(?10, group_name),
            job_type = COALESCE(?11, job_type),
            commit_hash = COALESCE(?12, commit_hash),
            repo = COALESCE(?13, repo),
            host = COALESCE(?14, host),
            program = COALESCE(?15, program),
            sweep_name = COALESCE(?16, sweep_name),
            updated_at = ?17
         WHERE project_id = ?1 AND name = ?2",
        rusqlite::params![
            project_id,
            &name,
            input.display_name,
            input.description,
            input.notes,
            input.state,
            config,
            summary,
            tags,
            input.group_name,
            input.job_type,
            input.commit,
            input.job_repo,
            input.host,
            input.job_program,
            input.sweep,
            &now,
        ],
    )?;
    let run = find_run(conn, project_id, &name)?
        .ok_or_else(|| not_found(format!("run {name} vanished during upsert")))?;
    automations::run_state_changed(conn, &run, before.as_deref())?;
    Ok((run, inserted))
}

/// Config and summary arrive as JSON strings; store them re-serialized so reads never fail.
fn normalize_json_object(what: &str, text: &str) -> StoreResult<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Value::Object(map).to_string()),
        Ok(Value::Null) => Ok("{}".to_owned()),
        Ok(_) => Err(invalid(format!("{what} must be a JSON object"))),
        Err(err) => Err(invalid(format!("{what} is not valid JSON: {err}"))),
    }
}

/// The SDK's own format for run ids: 8 characters of `[a-z0-9]`.
pub fn random_run_name() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// W&B-style "adjective-noun-N" names, N counting the project's runs.
fn generated_display_name(conn: &Connection, project_id: i64) -> StoreResult<String> {
    use rand::seq::IndexedRandom as _;
    const ADJECTIVES: &[&str] = &[
        "amber", "bold", "calm", "dainty", "eager", "fancy", "gentle", "hardy", "icy", "jolly",
        "keen", "lively", "misty", "noble", "olive", "proud", "quiet", "rosy", "sunny", "swift",
        "tidy", "upbeat", "vivid", "warm", "young", "zesty",
    ];
    const NOUNS: &[&str] = &[
        "brook", "cloud", "dawn", "ember", "field", "grove", "harbor", "island", "jungle", "lake",
        "meadow", "night", "ocean", "pine", "river", "sky", "snow", "star", "sun", "thunder",
        "valley", "wave", "wind", "wood",
    ];
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM runs WHERE project_id = ?1",
        [project_id],
        |row| row.get(0),
    )?;
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("calm");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("sky");
    Ok(format!("{adjective}-{noun}-{}", count + 1))
}

pub fn set_stopped(conn: &Connection, run_id: i64) -> StoreResult<()> {
    let changed = conn.execute(
        "UPDATE runs SET stopped = 1, updated_at = ?2 WHERE id = ?1",
        (run_id, now()),
    )?;
    if changed == 0 {
        return Err(not_found("run not found"));
    }
    Ok(())
}

/// Deletes a run with its history, files and alerts. The artifacts it logged stay (a job
/// artifact outlives the hidden run `wandb job create` makes it in) unless `with_artifacts`.
pub fn delete_run(conn: &Connection, run_id: i64, with_artifacts: bool) -> StoreResult<()> {
    if with_artifacts {
        conn.execute(
            "DELETE FROM artifacts WHERE created_by_run_id = ?1",
            [run_id],
        )?;
    }
    let changed = conn.execute("DELETE FROM runs WHERE id = ?1", [run_id])?;
    if changed == 0 {
        return Err(not_found("run not found"));
    }
    Ok(())
}

pub fn set_state(conn: &Connection, run_id: i64, state: &str) -> StoreResult<()> {
    if !VALID_STATES.contains(&state) {
        return Err(invalid(format!("unknown run state {state:?}")));
    }
    let before = run_by_id(conn, run_id)?.ok_or_else(|| not_found("run not found"))?;
    conn.execute(
        "UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1",
        (run_id, state, now()),
    )?;
    state_changed(conn, run_id, &before.stored_state)
}

/// Hands a state change to the automations watching the run.
fn state_changed(conn: &Connection, run_id: i64, before: &str) -> StoreResult<()> {
    let run = run_by_id(conn, run_id)?.ok_or_else(|| not_found("run not found"))?;
    automations::run_state_changed(conn, &run, Some(before))
}

/// Records that the run's process was heard from, and what that says about its state.
pub fn record_activity(conn: &Connection, run: &RunRow, change: Activity) -> StoreResult<()> {
    let state = match change {
        Activity::Complete { exit_code } => {
            let state = if run.stopped {
                "killed"
            } else if exit_code == 0 {
                "finished"
            } else {
                "failed"
            };
            conn.execute(
                "UPDATE runs SET exit_code = ?2 WHERE id = ?1",
                (run.id, exit_code),
            )?;
            Some(state)
        }
        Activity::Preempting => Some("preempting"),
        Activity::Data if NOT_LIVE_STATES.contains(&run.stored_state.as_str()) => Some("running"),
        Activity::Data => None,
    };
    let now = now();
    conn.execute(
        "UPDATE runs SET heartbeat_at = ?2, updated_at = ?2, state = COALESCE(?3, state) WHERE id = ?1",
        (run.id, &now, state),
    )?;
    match state {
        Some(_) => state_changed(conn, run.id, &run.stored_state),
        None => Ok(()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Data or a heartbeat.
    Data,
    Preempting,
    Complete {
        exit_code: i64,
    },
}

pub fn set_summary(conn: &Connection, run_id: i64, summary: &Value) -> StoreResult<()> {
    conn.execute(
        "UPDATE runs SET summary = ?2 WHERE id = ?1",
        (run_id, summary.to_string()),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_run_names_look_like_the_sdk_ones() {
        let name = random_run_name();
        assert_eq!(name.len(), 8);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn json_objects_are_normalized() {
        assert_eq!(
            normalize_json_object("x", r#"{"a": 1}"#).unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(normalize_json_object("x", "null").unwrap(), "{}");
        assert!(normalize_json_object("x", "[1]").is_err());
        assert!(normalize_json_object("x", "{").is_err());
    }
}
