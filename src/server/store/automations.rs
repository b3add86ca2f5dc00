//! W&B Automations: webhook integrations, the team secrets they name, filter triggers, and the
//! deliveries a run's state change produces (an outbox the webhook sender works off).

use rusqlite::{Connection, OptionalExtension as _, Row};
use serde_json::Value;

use super::runs::{run_from_row, RunRow, RUN_COLUMNS};
use super::{
    ensure_entity, find_entity, format_time, invalid, not_found, now, project_by_id, StoreResult,
};
use crate::server::filter::Filter;

/// The run states a `RUN_STATE` trigger can watch, as W&B names them. `CRASHED` is accepted as
/// an alias of `FAILED`, as the SDK does.
const RUN_STATES: [&str; 4] = ["RUNNING", "FINISHED", "FAILED", "CRASHED"];
/// A trigger fires at most once per run in this window (W&B: once per run per 24 h).
const REFIRE_AFTER: &str = "-24 hours";

#[derive(Clone, Debug)]
pub struct IntegrationRow {
    pub id: i64,
    pub entity_id: i64,
    pub name: String,
    pub url: String,
    pub access_token_ref: Option<String>,
    pub secret_ref: Option<String>,
}

const INTEGRATION_COLUMNS: &str = "id, entity_id, name, url, access_token_ref, secret_ref";

fn integration_row(row: &Row<'_>) -> rusqlite::Result<IntegrationRow> {
    Ok(IntegrationRow {
        id: row.get(0)?,
        entity_id: row.get(1)?,
        name: row.get(2)?,
        url: row.get(3)?,
        access_token_ref: row.get(4)?,
        secret_ref: row.get(5)?,
    })
}

pub struct NewIntegration {
    pub entity: String,
    pub name: String,
    pub url: String,
    pub access_token_ref: Option<String>,
    pub secret_ref: Option<String>,
}

/// `createGenericWebhookIntegration`. The secrets it names need not exist yet (W&B's team
/// settings hold them); a delivery that needs a missing one fails with that reason.
pub fn create_integration(conn: &Connection, new: &NewIntegration) -> StoreResult<IntegrationRow> {
    let name_ok = !new.name.is_empty()
        && new.name.len() <= 64
        && new.name.split(' ').filter(|w| !w.is_empty()).all(|w| {
            w.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
        && !new.name.starts_with(' ')
        && !new.name.ends_with(' ');
    if !name_ok {
        return Err(invalid(format!(
            "integration name {:?} must be at most 64 characters: words of letters, digits, \
             '_' and '-' separated by spaces",
            new.name
        )));
    }
    let url = reqwest::Url::parse(&new.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if url.is_none() {
        return Err(invalid(format!(
            "urlEndpoint {:?} is not an http(s) URL",
            new.url
        )));
    }
    let entity_id = ensure_entity(conn, &new.entity)?;
    let exists = conn
        .query_row(
            "SELECT 1 FROM integrations WHERE entity_id = ?1 AND name = ?2",
            (entity_id, &new.name),
            |_| Ok(()),
        )
        .optional()?;
    if exists.is_some() {
        return Err(invalid(format!(
            "an integration named {:?} already exists in {}",
            new.name, new.entity
        )));
    }
    conn.execute(
        "INSERT INTO integrations (entity_id, name, url, access_token_ref, secret_ref, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            entity_id,
            &new.name,
            &new.url,
            &new.access_token_ref,
            &new.secret_ref,
            now(),
        ),
    )?;
    integration_by_id(conn, conn.last_insert_rowid())?
        .ok_or_else(|| not_found("integration vanished"))
}

pub fn integration_by_id(conn: &Connection, id: i64) -> StoreResult<Option<IntegrationRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE id = ?1"),
            [id],
            integration_row,
        )
        .optional()?)
}

pub fn integrations(conn: &Connection, entity: &str) -> StoreResult<Vec<IntegrationRow>> {
    let Some((entity_id, _)) = find_entity(conn, entity)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE entity_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([entity_id], integration_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a team secret; returns whether its value changed.
pub fn set_secret(conn: &Connection, entity: &str, name: &str, value: &str) -> StoreResult<bool> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(invalid(format!(
            "secret name {name:?} must be letters, digits and '_'"
        )));
    }
    let entity_id = ensure_entity(conn, entity)?;
    if secret_value(conn, entity_id, name)?.as_deref() == Some(value) {
        return Ok(false);
    }
    let now = now();
    conn.execute(
        "INSERT INTO secrets (entity_id, name, value, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (entity_id, name) DO UPDATE SET value = ?3, updated_at = ?4",
        (entity_id, name, value, &now),
    )?;
    Ok(true)
}

pub fn secret_names(conn: &Connection, entity: &str) -> StoreResult<Vec<String>> {
    let Some((entity_id, _)) = find_entity(conn, entity)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare("SELECT name FROM secrets WHERE entity_id = ?1 ORDER BY name")?;
    let rows = stmt.query_map([entity_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn secret_value(conn: &Connection, entity_id: i64, name: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM secrets WHERE entity_id = ?1 AND name = ?2",
            (entity_id, name),
            |row| row.get(0),
        )
        .optional()?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Project(i64),
    Entity(i64),
}

#[derive(Clone, Debug)]
pub struct TriggerRow {
    pub id: i64,
    pub entity_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub scope: Scope,
    pub event_type: String,
    pub event_filter: String,
    pub action_type: String,
    pub action_config: Value,
    pub created_at: String,
    pub updated_at: String,
}

const TRIGGER_COLUMNS: &str = "id, entity_id, name, description, enabled, scope_type, scope_id, \
     event_type, event_filter, action_type, action_config, created_at, updated_at";

fn trigger_row(row: &Row<'_>) -> rusqlite::Result<TriggerRow> {
    let scope_type: String = row.get(5)?;
    let scope_id: i64 = row.get(6)?;
    let config: String = row.get(10)?;
    Ok(TriggerRow {
        id: row.get(0)?,
        entity_id: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        enabled: row.get(4)?,
        scope: if scope_type == "ENTITY" {
            Scope::Entity(scope_id)
        } else {
            Scope::Project(scope_id)
        },
        event_type: row.get(7)?,
        event_filter: row.get(8)?,
        action_type: row.get(9)?,
        action_config: serde_json::from_str(&config).unwrap_or(Value::Null),
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
    })
}

/// A trigger's settable fields; `None` leaves a field as it is (updates) and is refused where
/// creation needs it.
#[derive(Clone, Debug, Default)]
pub struct TriggerFields {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub scope: Option<Scope>,
    pub event_type: Option<String>,
    pub event_filter: Option<String>,
    pub action_type: Option<String>,
    pub action_config: Option<Value>,
}

pub fn create_trigger(conn: &Connection, fields: &TriggerFields) -> StoreResult<TriggerRow> {
    let need = |what: &str| invalid(format!("{what} is required"));
    let scope = fields.scope.ok_or_else(|| need("scopeID"))?;
    let row = TriggerRow {
        id: 0,
        entity_id: scope_entity(conn, scope)?,
        name: fields.name.clone().ok_or_else(|| need("name"))?,
        description: fields.description.clone(),
        enabled: fields.enabled.unwrap_or(true),
        scope,
        event_type: fields
            .event_type
            .clone()
            .ok_or_else(|| need("triggeringEventType"))?,
        event_filter: fields
            .event_filter
            .clone()
            .ok_or_else(|| need("eventFilter"))?,
        action_type: fields
            .action_type
            .clone()
            .ok_or_else(|| need("triggeredActionType"))?,
        action_config: fields
            .action_config
            .clone()
            .ok_or_else(|| need("triggeredActionConfig"))?,
        created_at: now(),
        updated_at: now(),
    };
    save_trigger(conn, &row)
}

pub fn update_trigger(
    conn: &Connection,
    id: i64,
    fields: &TriggerFields,
) -> StoreResult<TriggerRow> {
    let mut row = trigger_by_id(conn, id)?;
    if let Some(scope) = fields.scope {
        row.entity_id = scope_entity(conn, scope)?;
        row.scope = scope;
    }
    let set = |slot: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            slot.clone_from(value);
        }
    };
    set(&mut row.name, &fields.name);
    set(&mut row.event_type, &fields.event_type);
    set(&mut row.event_filter, &fields.event_filter);
    set(&mut row.action_type, &fields.action_type);
    if fields.description.is_some() {
        row.description.clone_from(&fields.description);
    }
    if let Some(enabled) = fields.enabled {
        row.enabled = enabled;
    }
    if let Some(config) = &fields.action_config {
        row.action_config = config.clone();
    }
    save_trigger(conn, &row)
}

/// Validates and stores a trigger: a new one when `row.id` is 0.
fn save_trigger(conn: &Connection, row: &TriggerRow) -> StoreResult<TriggerRow> {
    validate_trigger(conn, row)?;
    let (scope_type, scope_id) = scope_columns(row.scope);
    let config = row.action_config.to_string();
    let now = now();
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![
        &row.entity_id,
        &row.name,
        &row.description,
        &row.enabled,
        &scope_type,
        &scope_id,
        &row.event_type,
        &row.event_filter,
        &row.action_type,
        &config,
        &now,
    ];
    if row.id == 0 {
        conn.execute(
            "INSERT INTO triggers (entity_id, name, description, enabled, scope_type, scope_id,
                event_type, event_filter, action_type, action_config, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            params.as_slice(),
        )?;
        return trigger_by_id(conn, conn.last_insert_rowid());
    }
    params.push(&row.id);
    conn.execute(
        "UPDATE triggers SET entity_id = ?1, name = ?2, description = ?3, enabled = ?4,
            scope_type = ?5, scope_id = ?6, event_type = ?7, event_filter = ?8, action_type = ?9,
            action_config = ?10, updated_at = ?11
         WHERE id = ?12",
        params.as_slice(),
    )?;
    trigger_by_id(conn, row.id)
}

pub fn delete_trigger(conn: &Connection, id: i64) -> StoreResult<()> {
    if conn.execute("DELETE FROM triggers WHERE id = ?1", [id])? == 0 {
        return Err(not_found("automation not found"));
    }
    Ok(())
}

pub fn trigger_by_id(conn: &Connection, id: i64) -> StoreResult<TriggerRow> {
    conn.query_row(
        &format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?1"),
        [id],
        trigger_row,
    )
    .optional()?
    .ok_or_else(|| not_found("automation not found"))
}

/// Every trigger of the entity, whatever its scope, oldest first.
pub fn entity_triggers(conn: &Connection, entity: &str) -> StoreResult<Vec<TriggerRow>> {
    let Some((entity_id, _)) = find_entity(conn, entity)? else {
        return Ok(Vec::new());
    };
    query_triggers(conn, "entity_id = ?1", entity_id)
}

/// The triggers scoped to one project.
pub fn project_triggers(conn: &Connection, project_id: i64) -> StoreResult<Vec<TriggerRow>> {
    query_triggers(conn, "scope_type = 'PROJECT' AND scope_id = ?1", project_id)
}

fn query_triggers(conn: &Connection, filter: &str, id: i64) -> StoreResult<Vec<TriggerRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt.query_map([id], trigger_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The projects of an entity, oldest first (the SDK's legacy automations listing walks them).
pub fn entity_project_ids(conn: &Connection, entity_id: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM projects WHERE entity_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([entity_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn entity_name(conn: &Connection, entity_id: i64) -> StoreResult<String> {
    conn.query_row(
        "SELECT name FROM entities WHERE id = ?1",
        [entity_id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| not_found("entity not found"))
}

fn scope_columns(scope: Scope) -> (&'static str, i64) {
    match scope {
        Scope::Project(id) => ("PROJECT", id),
        Scope::Entity(id) => ("ENTITY", id),
    }
}

fn scope_entity(conn: &Connection, scope: Scope) -> StoreResult<i64> {
    match scope {
        Scope::Project(id) => Ok(project_by_id(conn, id)?.entity_id),
        Scope::Entity(id) => {
            let found = conn
                .query_row("SELECT id FROM entities WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            found.ok_or_else(|| not_found("entity not found"))
        }
    }
}

/// What a `RUN_STATE` trigger's `eventFilter` says: which states, and which runs.
struct RunStateFilter {
    states: Vec<String>,
    runs: Filter,
}

impl RunStateFilter {
    fn parse(text: &str) -> StoreResult<RunStateFilter> {
        let bad = |why: String| invalid(format!("eventFilter of a RUN_STATE automation: {why}"));
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let states = value["run_state_filter"]["states"]
            .as_array()
            .ok_or_else(|| bad("run_state_filter.states must be a list".into()))?
            .iter()
            .map(|s| {
                s.as_str()
                    .filter(|s| RUN_STATES.contains(s))
                    .map(|s| if s == "CRASHED" { "FAILED" } else { s }.to_owned())
                    .ok_or_else(|| bad(format!("unknown run state {s}; use one of {RUN_STATES:?}")))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // W&B nests the run filter as a JSON string; accept an object too.
        let runs = match &value["run_filter"] {
            Value::Null => Filter::parse_json(None),
            Value::String(text) => Filter::parse_json(Some(text)),
            other => Filter::parse(other),
        }
        .map_err(|e| bad(format!("run_filter: {e}")))?;
        Ok(RunStateFilter { states, runs })
    }
}

fn validate_trigger(conn: &Connection, row: &TriggerRow) -> StoreResult<()> {
    if row.name.trim().is_empty() || row.name.len() > 255 {
        return Err(invalid("an automation's name must be 1 to 255 characters"));
    }
    let taken = conn
        .query_row(
            "SELECT 1 FROM triggers WHERE entity_id = ?1 AND name = ?2 AND id != ?3",
            (row.entity_id, &row.name, row.id),
            |_| Ok(()),
        )
        .optional()?;
    if taken.is_some() {
        return Err(invalid(format!(
            "an automation named {:?} already exists",
            row.name
        )));
    }
    if row.event_type != "RUN_STATE" {
        return Err(invalid(format!(
            "this server runs RUN_STATE automations only, not {}",
            row.event_type
        )));
    }
    RunStateFilter::parse(&row.event_filter)?;
    match row.action_type.as_str() {
        "GENERIC_WEBHOOK" => {
            let input = &row.action_config["genericWebhookActionInput"];
            let id = input["integrationID"]
                .as_i64()
                .ok_or_else(|| invalid("genericWebhookActionInput.integrationID is required"))?;
            let integration = integration_by_id(conn, id)?
                .filter(|i| i.entity_id == row.entity_id)
                .ok_or_else(|| invalid("the webhook integration is not in this entity"))?;
            if let Some(payload) = input["requestPayload"].as_str() {
                serde_json::from_str::<Value>(payload).map_err(|e| {
                    invalid(format!(
                        "requestPayload for {} is not JSON: {e}",
                        integration.name
                    ))
                })?;
            }
            Ok(())
        }
        "NO_OP" => Ok(()),
        other => Err(invalid(format!(
            "this server runs GENERIC_WEBHOOK and NO_OP actions only, not {other}"
        ))),
    }
}

/// The W&B state name of a stored run state, for the states a trigger can watch. Killed runs
/// trigger nothing (as on W&B).
fn event_state(state: &str) -> Option<&'static str> {
    match state {
        "running" => Some("RUNNING"),
        "finished" => Some("FINISHED"),
        "failed" | "crashed" => Some("FAILED"),
        _ => None,
    }
}

/// Queues a delivery for every enabled webhook trigger that watches the run's new state.
/// Called inside the transaction that changed the state.
pub fn run_state_changed(conn: &Connection, run: &RunRow, before: Option<&str>) -> StoreResult<()> {
    let after = run.stored_state.as_str();
    let Some(state) = event_state(after) else {
        return Ok(());
    };
    if before.and_then(event_state) == Some(state) {
        return Ok(());
    }
    let project = project_by_id(conn, run.project_id)?;
    let triggers = query_triggers(
        conn,
        "enabled AND event_type = 'RUN_STATE' AND ((scope_type = 'PROJECT' AND scope_id = ?1) \
         OR (scope_type = 'ENTITY' AND scope_id = (SELECT entity_id FROM projects WHERE id = ?1)))",
        run.project_id,
    )?;
    for trigger in triggers {
        // Filters were checked on save; one that no longer parses is skipped, not fatal.
        let Ok(filter) = RunStateFilter::parse(&trigger.event_filter) else {
            continue;
        };
        let timeout = crate::server::DEFAULT_RUN_TIMEOUT;
        if !filter.states.iter().any(|s| s == state) || !filter.runs.matches(run, timeout) {
            continue;
        }
        let recent = conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE trigger_id = ?1 AND run_id = ?2
                   AND event_state = ?3 AND created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4)",
                (trigger.id, run.id, state, REFIRE_AFTER),
                |_| Ok(()),
            )
            .optional()?;
        if recent.is_some() || trigger.action_type != "GENERIC_WEBHOOK" {
            continue;
        }
        let input = &trigger.action_config["genericWebhookActionInput"];
        let template = input["requestPayload"].as_str().unwrap_or("{}");
        let template: Value = serde_json::from_str(template).unwrap_or(Value::Null);
        let variables = |name: &str| -> Option<String> {
            Some(match name {
                "event_type" => "RUN_STATE".to_owned(),
                "event_author" => crate::server::DEFAULT_ENTITY.to_owned(),
                "entity_name" => project.entity_name.clone(),
                "project_name" => project.name.clone(),
                // mlwf extensions (W&B documents no run variables for run events).
                "run_id" => run.name.clone(),
                "run_name" => run.display_name.clone().unwrap_or_else(|| run.name.clone()),
                "run_state" => state.to_owned(),
                _ => return None,
            })
        };
        let body = fill(&template, &variables);
        let now = now();
        conn.execute(
            "INSERT INTO deliveries (entity_id, trigger_id, trigger_name, integration_id, run_id,
                event_type, event_state, body, status, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'RUN_STATE', ?6, ?7, 'pending', ?8, ?8, ?8)",
            rusqlite::params![
                trigger.entity_id,
                trigger.id,
                trigger.name,
                input["integrationID"].as_i64(),
                run.id,
                state,
                body.to_string(),
                now,
            ],
        )?;
    }
    Ok(())
}

/// Runs silent for longer than `timeout` while `running` have crashed: their process is gone
/// without a word (killed, out of memory, the machine lost), and nothing will change their
/// stored state. These are the ones automations watching FAILED have not heard of yet; only
/// runs of projects with run-state automations are looked at.
pub fn silent_runs(conn: &Connection, timeout: std::time::Duration) -> StoreResult<Vec<RunRow>> {
    let cutoff = format_time(time::OffsetDateTime::now_utc() - timeout);
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE state = 'running' AND heartbeat_at < ?1
           AND EXISTS (SELECT 1 FROM triggers t JOIN projects p ON p.id = r.project_id
                       WHERE t.enabled AND t.event_type = 'RUN_STATE'
                         AND ((t.scope_type = 'PROJECT' AND t.scope_id = r.project_id)
                           OR (t.scope_type = 'ENTITY' AND t.scope_id = p.entity_id)))
           AND NOT EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.run_id = r.id AND d.event_state = 'FAILED')"
    ))?;
    let rows = stmt.query_map([cutoff], run_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Tells the automations of the [`silent_runs`] that they crashed, once each (as W&B reports
/// such runs); their stored state stays `running`, so one that comes back carries on.
pub fn report_silent_runs(conn: &Connection, timeout: std::time::Duration) -> StoreResult<()> {
    for run in silent_runs(conn, timeout)? {
        let crashed = RunRow {
            stored_state: "crashed".to_owned(),
            ..run
        };
        run_state_changed(conn, &crashed, Some("running"))?;
    }
    Ok(())
}

/// Replaces `${name}` in every string of `template` (keys included) with `variables(name)`;
/// unknown names stay as written. Values land inside JSON strings, so no value can change the
/// payload's structure.
pub fn fill(template: &Value, variables: &dyn Fn(&str) -> Option<String>) -> Value {
    match template {
        Value::String(text) => Value::String(fill_text(text, variables)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, variables)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (fill_text(k, variables), fill(v, variables)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill_text(text: &str, variables: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}').map(|end| (&after[..end], end)) {
            Some((name, end)) => {
                match variables(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A delivery to attempt now, with what sending it needs.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub id: i64,
    pub attempts: u32,
    pub body: String,
    pub integration: Option<IntegrationRow>,
    pub access_token: Option<String>,
    pub signing_secret: Option<String>,
    /// A secret the integration names that is not set: the delivery fails with this reason.
    pub missing_secret: Option<String>,
}

pub fn due_deliveries(conn: &Connection, limit: usize) -> StoreResult<Vec<DueDelivery>> {
    let mut stmt = conn.prepare(
        "SELECT id, attempts, body, integration_id FROM deliveries
         WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map((now(), limit as i64), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut due = Vec::with_capacity(rows.len());
    for (id, attempts, body, integration_id) in rows {
        let integration = match integration_id {
            Some(id) => integration_by_id(conn, id)?,
            None => None,
        };
        let mut missing_secret = None;
        let mut secret = |name: &Option<String>| -> StoreResult<Option<String>> {
            let (Some(name), Some(integration)) = (name, &integration) else {
                return Ok(None);
            };
            let value = secret_value(conn, integration.entity_id, name)?;
            if value.is_none() {
                missing_secret = Some(name.clone());
            }
            Ok(value)
        };
        let access_token = secret(
            &integration
                .as_ref()
                .and_then(|i| i.access_token_ref.clone()),
        )?;
        let signing_secret = secret(&integration.as_ref().and_then(|i| i.secret_ref.clone()))?;
        due.push(DueDelivery {
            id,
            attempts,
            body,
            integration,
            access_token,
            signing_secret,
            missing_secret,
        });
    }
    Ok(due)
}

/// How one attempt ended.
pub enum Attempt<'a> {
    Delivered {
        http_status: u16,
    },
    /// Try again at `retry_at` (a stored time), or give up when `None`.
    Failed {
        http_status: Option<u16>,
        error: &'a str,
        retry_at: Option<String>,
    },
}

pub fn record_attempt(conn: &Connection, id: i64, attempt: Attempt<'_>) -> StoreResult<()> {
    let now = now();
    match attempt {
        Attempt::Delivered { http_status } => conn.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1,
                last_http_status = ?2, last_error = NULL, updated_at = ?3 WHERE id = ?1",
            (id, http_status, &now),
        )?,
        Attempt::Failed {
            http_status,
            error,
            retry_at,
        } => conn.execute(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1, last_http_status = ?3,
                last_error = ?4, next_attempt_at = COALESCE(?5, next_attempt_at), updated_at = ?6
             WHERE id = ?1",
            rusqlite::params![
                id,
                if retry_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                http_status,
                error,
                retry_at,
                &now,
            ],
        )?,
    };
    Ok(())
}

/// A delivery as `GET /mlwf/v1/deliveries/{entity}` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub automation: String,
    pub integration: Option<String>,
    pub url: Option<String>,
    pub run_id: Option<String>,
    pub event_type: String,
    pub event_state: Option<String>,
    pub status: String,
    pub attempts: u32,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The entity's deliveries, newest first.
pub fn deliveries(
    conn: &Connection,
    entity: &str,
    limit: usize,
) -> StoreResult<Vec<DeliveryRecord>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.trigger_name, i.name, i.url, r.name, d.event_type, d.event_state,
                d.status, d.attempts, d.last_http_status, d.last_error, d.created_at, d.updated_at
         FROM deliveries d
         JOIN entities e ON e.id = d.entity_id
         LEFT JOIN integrations i ON i.id = d.integration_id
         LEFT JOIN runs r ON r.id = d.run_id
         WHERE e.name = ?1
         ORDER BY d.id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map((entity, limit as i64), |row| {
        Ok(DeliveryRecord {
            id: row.get(0)?,
            automation: row.get(1)?,
            integration: row.get(2)?,
            url: row.get(3)?,
            run_id: row.get(4)?,
            event_type: row.get(5)?,
            event_state: row.get(6)?,
            status: row.get(7)?,
            attempts: row.get(8)?,
            last_http_status: row.get(9)?,
            last_error: row.get(10)?,
            created_at: row.get(11)?,
            updated_at: row.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_fill_strings_and_keys_and_unknown_ones_stay() {
        let template = serde_json::json!({
            "event_type": "wandb_run_finished",
            "client_payload": {"who": "${event_author}", "${entity_name}": ["${run_id}!", 3],
                               "other": "${nope} ${unterminated"}
        });
        let vars = |name: &str| match name {
            "event_author" => Some("al\"ice".to_owned()),
            "entity_name" => Some("team".to_owned()),
            "run_id" => Some("abc".to_owned()),
            _ => None,
        };
        let filled = fill(&template, &vars);
        assert_eq!(filled["client_payload"]["who"], "al\"ice");
        assert_eq!(filled["client_payload"]["team"][0], "abc!");
        assert_eq!(filled["client_payload"]["team"][1], 3);
        assert_eq!(filled["client_payload"]["other"], "${nope} ${unterminated");
    }

    #[test]
    fn run_state_filters_take_crashed_as_failed_and_refuse_unknown_states() {
        let f = RunStateFilter::parse(
            r#"{"run_filter": "{\"$and\": []}", "run_state_filter": {"states": ["FINISHED", "CRASHED"]}}"#,
        )
        .unwrap();
        assert_eq!(f.states, ["FINISHED", "FAILED"]);
        assert!(RunStateFilter::parse(r#"{"run_state_filter": {"states": ["DONE"]}}"#).is_err());
        assert!(RunStateFilter::parse(r#"{"run_filter": "{}"}"#).is_err());
    }
}
