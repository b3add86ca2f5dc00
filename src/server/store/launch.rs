//! W&B Launch: run queues, their items, default resource configs and launch agents.
//!
//! Item states: PENDING (waiting), LEASED (popped, not acked yet), CLAIMED (acked, carries the
//! run id) and FAILED. A LEASED item whose lease ran out is PENDING again for the next pop, so a
//! job whose agent died before acking is not lost.

use rusqlite::{Connection, OptionalExtension as _};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{format_time, invalid, json_column, not_found, now, parse_time, StoreResult};

pub const PENDING: &str = "PENDING";
pub const LEASED: &str = "LEASED";
pub const CLAIMED: &str = "CLAIMED";
pub const FAILED: &str = "FAILED";

/// Priority of items pushed without one: `medium`, the middle of the CLI's 0 (critical) to
/// 3 (low) scale.
const DEFAULT_PRIORITY: i64 = 2;

#[derive(Clone, Debug)]
pub struct QueueRow {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub access: String,
    pub prioritization_mode: Option<String>,
    pub default_resource_config_id: Option<i64>,
    pub external_links: Option<String>,
    pub created_by: String,
}

const QUEUE_COLUMNS: &str = "id, project_id, name, access, prioritization_mode, \
    default_resource_config_id, external_links, created_by FROM run_queues";

fn queue_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: row.get(0)?,
        project_id: row.get(1)?,
        name: row.get(2)?,
        access: row.get(3)?,
        prioritization_mode: row.get(4)?,
        default_resource_config_id: row.get(5)?,
        external_links: row.get(6)?,
        created_by: row.get(7)?,
    })
}

pub fn queues(conn: &Connection, project_id: i64) -> StoreResult<Vec<QueueRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} WHERE project_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([project_id], queue_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn queue_by_name(
    conn: &Connection,
    project_id: i64,
    name: &str,
) -> StoreResult<Option<QueueRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {QUEUE_COLUMNS} WHERE project_id = ?1 AND name = ?2"),
            (project_id, name),
            queue_from_row,
        )
        .optional()?)
}

pub fn queue_by_id(conn: &Connection, id: i64) -> StoreResult<Option<QueueRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {QUEUE_COLUMNS} WHERE id = ?1"),
            [id],
            queue_from_row,
        )
        .optional()?)
}

fn validate_queue_name(name: &str) -> StoreResult<()> {
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(invalid("queue names must have 1 to 64 characters"));
    }
    Ok(())
}

fn parse_json_string(what: &str, text: Option<&str>) -> StoreResult<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|err| invalid(format!("{what} is not valid JSON: {err}")))
    })
    .transpose()
}

#[derive(Clone, Debug)]
pub struct ResourceConfigRow {
    pub resource: String,
    pub config: Value,
    pub template_variables: Option<Value>,
}

pub fn create_resource_config(
    conn: &Connection,
    entity_id: i64,
    resource: &str,
    config: &str,
    template_variables: Option<&str>,
) -> StoreResult<i64> {
    let config = parse_json_string("config", Some(config))?.unwrap_or(Value::Null);
    if !config.is_object() {
        return Err(invalid("config must be a JSON object"));
    }
    let template_variables = parse_json_string("templateVariables", template_variables)?;
    conn.execute(
        "INSERT INTO default_resource_configs (entity_id, resource, config, template_variables, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        (
            entity_id,
            resource,
            config.to_string(),
            template_variables.map(|v| v.to_string()),
            now(),
        ),
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn resource_config(
    conn: &Connection,
    entity_id: i64,
    id: i64,
) -> StoreResult<Option<ResourceConfigRow>> {
    Ok(conn
        .query_row(
            "SELECT resource, config, template_variables FROM default_resource_configs
             WHERE id = ?1 AND entity_id = ?2",
            (id, entity_id),
            |row| {
                let config: String = row.get(1)?;
                let vars: Option<String> = row.get(2)?;
                Ok(ResourceConfigRow {
                    resource: row.get(0)?,
                    config: json_column(&config, Value::Object(Map::new())),
                    template_variables: vars.map(|v| json_column(&v, Value::Null)),
                })
            },
        )
        .optional()?)
}

pub struct NewQueue<'a> {
    pub name: &'a str,
    pub access: &'a str,
    pub prioritization_mode: Option<&'a str>,
    pub default_resource_config_id: Option<i64>,
    pub external_links: Option<&'a str>,
    pub created_by: &'a str,
}

pub fn create_queue(conn: &Connection, project_id: i64, queue: &NewQueue<'_>) -> StoreResult<i64> {
    validate_queue_name(queue.name)?;
    if queue_by_name(conn, project_id, queue.name)?.is_some() {
        return Err(invalid(format!(
            "a queue named {:?} already exists",
            queue.name
        )));
    }
    conn.execute(
        "INSERT INTO run_queues (project_id, name, access, prioritization_mode, default_resource_config_id,
             external_links, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![
            project_id,
            queue.name,
            queue.access,
            queue.prioritization_mode,
            queue.default_resource_config_id,
            queue.external_links,
            queue.created_by,
            now(),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// `upsertRunQueue`: creates the queue, or points an existing one at a new resource config.
pub fn upsert_queue(conn: &Connection, project_id: i64, queue: &NewQueue<'_>) -> StoreResult<i64> {
    match queue_by_name(conn, project_id, queue.name)? {
        None => create_queue(conn, project_id, queue),
        Some(existing) => {
            conn.execute(
                "UPDATE run_queues SET default_resource_config_id = ?2,
                     prioritization_mode = COALESCE(?3, prioritization_mode),
                     external_links = COALESCE(?4, external_links)
                 WHERE id = ?1",
                (
                    existing.id,
                    queue.default_resource_config_id,
                    queue.prioritization_mode,
                    queue.external_links,
                ),
            )?;
            Ok(existing.id)
        }
    }
}

pub fn delete_queues(conn: &Connection, ids: &[i64]) -> StoreResult<bool> {
    let mut deleted = 0;
    for id in ids {
        deleted += conn.execute("DELETE FROM run_queues WHERE id = ?1", [id])?;
    }
    Ok(deleted == ids.len())
}

/// Builds the spec an agent receives: the pushed spec over the queue's default resource config,
/// with `{{name}}` template placeholders of that config filled from `template_values`.
fn merge_spec(
    spec: Value,
    defaults: Option<&ResourceConfigRow>,
    template_values: Option<&Value>,
) -> Value {
    let Value::Object(mut spec) = spec else {
        return spec;
    };
    let Some(defaults) = defaults else {
        return Value::Object(spec);
    };
    // `launch_add` sends `"resource": null` when the queue is to decide.
    if spec.get("resource").is_none_or(Value::is_null) {
        spec.insert("resource".into(), Value::String(defaults.resource.clone()));
    }
    if let Some(default_args) = defaults.config.get("resource_args") {
        let mut args = fill_templates(default_args.clone(), template_values);
        if let Some(own) = spec.remove("resource_args").filter(|v| !v.is_null()) {
            deep_merge(&mut args, own);
        }
        spec.insert("resource_args".into(), args);
    }
    Value::Object(spec)
}

/// Replaces `{{name}}` placeholders: a string that is exactly a placeholder takes the value
/// with its JSON type, one that contains placeholders gets their text.
fn fill_templates(value: Value, values: Option<&Value>) -> Value {
    let Some(Value::Object(values)) = values else {
        return value;
    };
    fn fill(value: Value, values: &Map<String, Value>) -> Value {
        match value {
            Value::String(s) => {
                let whole = s
                    .strip_prefix("{{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .map(str::trim)
                    .filter(|name| !name.contains("{{"));
                if let Some(v) = whole.and_then(|name| values.get(name)) {
                    return v.clone();
                }
                let mut out = s;
                for (name, v) in values {
                    let text = match v {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    out = out.replace(&format!("{{{{{name}}}}}"), &text);
                }
                Value::String(out)
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| fill(v, values)).collect())
            }
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, fill(v, values))).collect())
            }
            other => other,
        }
    }
    fill(value, values)
}

/// Merges `over` into `base`; objects merge key by key, anything else in `over` wins.
fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Pushes an item; returns its id and the merged spec.
pub fn push(
    conn: &Connection,
    queue: &QueueRow,
    entity_id: i64,
    run_spec: &str,
    priority: Option<i64>,
    template_values: Option<&str>,
) -> StoreResult<(i64, Value)> {
    let spec = parse_json_string("runSpec", Some(run_spec))?.unwrap_or(Value::Null);
    if !spec.is_object() {
        return Err(invalid("runSpec must be a JSON object"));
    }
    if let Some(p) = priority {
        if !(0..=3).contains(&p) {
            return Err(invalid("priority must be between 0 (critical) and 3 (low)"));
        }
    }
    let template_values = parse_json_string("templateVariableValues", template_values)?;
    let defaults = match queue.default_resource_config_id {
        Some(id) => resource_config(conn, entity_id, id)?,
        None => None,
    };
    let merged = merge_spec(spec, defaults.as_ref(), template_values.as_ref());
    let now = now();
    conn.execute(
        "INSERT INTO run_queue_items (queue_id, run_spec, priority, template_variable_values, state,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        rusqlite::params![
            queue.id,
            merged.to_string(),
            priority,
            template_values.map(|v| v.to_string()),
            PENDING,
            now,
        ],
    )?;
    Ok((conn.last_insert_rowid(), merged))
}

/// Claims the next item for `lease`: by priority when the queue is prioritized, else first in,
/// first out. Returns `None` when nothing is waiting.
pub fn pop(
    conn: &Connection,
    queue: &QueueRow,
    agent_id: Option<i64>,
    lease: std::time::Duration,
) -> StoreResult<Option<(i64, Value)>> {
    let now_t = OffsetDateTime::now_utc();
    let prioritized = queue.prioritization_mode.as_deref() == Some("V0");
    let next: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, run_spec FROM run_queue_items
             WHERE queue_id = ?1 AND (state = ?2 OR (state = ?3 AND leased_until < ?4))
             ORDER BY CASE WHEN ?5 THEN COALESCE(priority, ?6) ELSE 0 END, id
             LIMIT 1",
            rusqlite::params![
                queue.id,
                PENDING,
                LEASED,
                format_time(now_t),
                prioritized,
                DEFAULT_PRIORITY
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((id, spec)) = next else {
        return Ok(None);
    };
    let lease = time::Duration::try_from(lease).map_err(anyhow::Error::from)?;
    conn.execute(
        "UPDATE run_queue_items SET state = ?2, leased_until = ?3, launch_agent_id = ?4, updated_at = ?5
         WHERE id = ?1",
        rusqlite::params![id, LEASED, format_time(now_t + lease), agent_id, format_time(now_t)],
    )?;
    Ok(Some((id, json_column(&spec, Value::Object(Map::new())))))
}

/// Acks a popped item with the run id the agent will use. False when it was already acked or
/// failed (another agent won, or it was given up).
pub fn ack(conn: &Connection, item_id: i64, run_name: &str) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE run_queue_items SET state = ?2, associated_run_id = ?3, leased_until = NULL, updated_at = ?4
         WHERE id = ?1 AND state IN (?5, ?6)",
        (item_id, CLAIMED, run_name, now(), PENDING, LEASED),
    )?;
    if changed == 0 {
        require_item(conn, item_id)?;
    }
    Ok(changed == 1)
}

fn require_item(conn: &Connection, item_id: i64) -> StoreResult<()> {
    conn.query_row(
        "SELECT 1 FROM run_queue_items WHERE id = ?1",
        [item_id],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| not_found(format!("run queue item {item_id} not found")))
}

pub struct ItemReport<'a> {
    pub message: &'a str,
    pub stage: &'a str,
    pub file_paths: &'a [String],
}

pub fn fail(conn: &Connection, item_id: i64, report: &ItemReport<'_>) -> StoreResult<bool> {
    require_item(conn, item_id)?;
    let paths = serde_json::to_string(report.file_paths).map_err(anyhow::Error::from)?;
    let changed = conn.execute(
        "UPDATE run_queue_items SET state = ?2, error_message = ?3, error_stage = ?4,
             error_file_paths = ?5, leased_until = NULL, updated_at = ?6
         WHERE id = ?1 AND state != ?2",
        (item_id, FAILED, report.message, report.stage, paths, now()),
    )?;
    Ok(changed == 1)
}

pub fn add_warning(conn: &Connection, item_id: i64, report: &ItemReport<'_>) -> StoreResult<bool> {
    require_item(conn, item_id)?;
    let warning = serde_json::json!({
        "message": report.message,
        "stage": report.stage,
        "filePaths": report.file_paths,
        "at": now(),
    });
    conn.execute(
        "UPDATE run_queue_items SET warnings = json_insert(warnings, '$[#]', json(?2)), updated_at = ?3
         WHERE id = ?1",
        (item_id, warning.to_string(), now()),
    )?;
    Ok(true)
}

pub fn delete_item(conn: &Connection, queue_id: i64, item_id: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "DELETE FROM run_queue_items WHERE id = ?1 AND queue_id = ?2",
        (item_id, queue_id),
    )? == 1)
}

#[derive(Clone, Debug)]
pub struct ItemRow {
    pub id: i64,
    pub state: String,
    pub associated_run_id: Option<String>,
}

fn item_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ItemRow> {
    let state: String = row.get(1)?;
    let leased_until: Option<String> = row.get(3)?;
    // An expired lease is the same as never having been popped.
    let expired = leased_until
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|until| until < OffsetDateTime::now_utc());
    Ok(ItemRow {
        id: row.get(0)?,
        state: if state == LEASED && expired {
            PENDING.to_owned()
        } else {
            state
        },
        associated_run_id: row.get(2)?,
    })
}

/// Items of a queue in queue order, at most `limit`.
pub fn items(conn: &Connection, queue_id: i64, limit: i64) -> StoreResult<Vec<ItemRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, state, associated_run_id, leased_until FROM run_queue_items
         WHERE queue_id = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map((queue_id, limit), item_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn item(conn: &Connection, queue_id: i64, item_id: i64) -> StoreResult<Option<ItemRow>> {
    Ok(conn
        .query_row(
            "SELECT id, state, associated_run_id, leased_until FROM run_queue_items
             WHERE queue_id = ?1 AND id = ?2",
            (queue_id, item_id),
            item_from_row,
        )
        .optional()?)
}

/// What W&B's GraphQL does not expose of an item: when it was pushed, why it failed, and its
/// warnings, as `{createdAt, error: {message, stage, filePaths} | null, warnings}`.
pub fn item_details(conn: &Connection, item_id: i64) -> StoreResult<Value> {
    conn.query_row(
        "SELECT created_at, error_message, error_stage, error_file_paths, warnings
         FROM run_queue_items WHERE id = ?1",
        [item_id],
        |row| {
            let message: Option<String> = row.get(1)?;
            let stage: Option<String> = row.get(2)?;
            let paths: Option<String> = row.get(3)?;
            let warnings: String = row.get(4)?;
            let error = message.map(|message| {
                serde_json::json!({
                    "message": message,
                    "stage": stage.unwrap_or_default(),
                    "filePaths": json_column(paths.as_deref().unwrap_or("[]"), Value::Array(vec![])),
                })
            });
            Ok(serde_json::json!({
                "createdAt": row.get::<_, String>(0)?,
                "error": error,
                "warnings": json_column(&warnings, Value::Array(vec![])),
            }))
        },
    )
    .optional()?
    .ok_or_else(|| not_found(format!("run queue item {item_id} not found")))
}

#[derive(Clone, Debug)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub hostname: String,
    pub run_queues: Vec<String>,
    pub status: String,
    pub heartbeat_at: String,
    pub version: Option<String>,
}

pub struct NewAgent<'a> {
    pub run_queues: &'a [String],
    pub hostname: &'a str,
    pub agent_config: Option<&'a str>,
    pub version: Option<&'a str>,
}

pub fn create_agent(conn: &Connection, project_id: i64, agent: &NewAgent<'_>) -> StoreResult<i64> {
    let now = now();
    // The Python agent uses its name as the id of a hidden run, so it must be a valid run id.
    let name = format!("agent-{}", super::runs::random_run_name());
    conn.execute(
        "INSERT INTO launch_agents (project_id, name, hostname, agent_config, version, run_queues, status,
             heartbeat_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'POLLING', ?7, ?7)",
        rusqlite::params![
            project_id,
            name,
            agent.hostname,
            agent.agent_config,
            agent.version,
            serde_json::to_string(agent.run_queues).map_err(anyhow::Error::from)?,
            now,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records an agent's status; any update is also its heartbeat.
pub fn update_agent(conn: &Connection, agent_id: i64, status: Option<&str>) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE launch_agents SET status = COALESCE(?2, status), heartbeat_at = ?3 WHERE id = ?1",
        (agent_id, status, now()),
    )? == 1)
}

const AGENT_COLUMNS: &str =
    "id, name, hostname, run_queues, status, heartbeat_at, version FROM launch_agents";

fn agent_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    let queues: String = row.get(3)?;
    Ok(AgentRow {
        id: row.get(0)?,
        name: row.get(1)?,
        hostname: row.get(2)?,
        run_queues: serde_json::from_str(&queues).unwrap_or_default(),
        status: row.get(4)?,
        heartbeat_at: row.get(5)?,
        version: row.get(6)?,
    })
}

pub fn agent(conn: &Connection, agent_id: i64) -> StoreResult<Option<AgentRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} WHERE id = ?1"),
            [agent_id],
            agent_from_row,
        )
        .optional()?)
}

/// The agents registered in a project, most recently heard from first.
pub fn agents(conn: &Connection, project_id: i64, limit: i64) -> StoreResult<Vec<AgentRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} WHERE project_id = ?1 ORDER BY heartbeat_at DESC, id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map((project_id, limit), agent_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_merge_over_queue_defaults_with_templates() {
        let defaults = ResourceConfigRow {
            resource: "local-container".into(),
            config: json!({"resource_args": {"local-container": {"gpus": "{{gpus}}", "env": ["A={{a}}"], "shm-size": "1g"}}}),
            template_variables: None,
        };
        let spec = json!({"job": "e/p/j:latest", "resource": null,
                          "resource_args": {"local-container": {"shm-size": "16g"}}});
        let merged = merge_spec(spec, Some(&defaults), Some(&json!({"gpus": 2, "a": "x"})));
        assert_eq!(merged["resource"], "local-container");
        assert_eq!(
            merged["resource_args"]["local-container"],
            json!({"gpus": 2, "env": ["A=x"], "shm-size": "16g"})
        );
    }

    #[test]
    fn specs_without_defaults_pass_through() {
        let spec = json!({"resource": "local-process"});
        assert_eq!(merge_spec(spec.clone(), None, None), spec);
    }
}
