//! Alerts raised by runs (`wandb.alert`). There is no delivery channel on a local server; they
//! are kept so that tools (and tests) can list them.

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;
use time::OffsetDateTime;

use super::{now, parse_time, StoreResult};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRow {
    pub title: String,
    pub text: String,
    pub severity: String,
    pub wait_duration_ms: Option<i64>,
    /// True when the alert repeated a title inside the previous alert's wait window, which W&B
    /// would not deliver.
    pub suppressed: bool,
    pub created_at: String,
}

pub struct NewAlert<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub severity: &'a str,
    pub wait_duration_ms: Option<i64>,
}

pub fn record_alert(conn: &Connection, run_id: i64, alert: &NewAlert<'_>) -> StoreResult<()> {
    let previous: Option<(String, Option<i64>)> = conn
        .query_row(
            "SELECT created_at, wait_duration_ms FROM alerts
             WHERE run_id = ?1 AND title = ?2 AND suppressed = 0 ORDER BY id DESC LIMIT 1",
            (run_id, alert.title),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let suppressed = previous.is_some_and(|(at, wait)| {
        let wait = time::Duration::milliseconds(wait.unwrap_or(0));
        parse_time(&at).is_some_and(|at| OffsetDateTime::now_utc() - at < wait)
    });
    conn.execute(
        "INSERT INTO alerts (run_id, title, text, severity, wait_duration_ms, suppressed, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            run_id,
            alert.title,
            alert.text,
            alert.severity,
            alert.wait_duration_ms,
            suppressed,
            now(),
        ),
    )?;
    Ok(())
}

pub fn list_alerts(conn: &Connection, run_id: i64) -> StoreResult<Vec<AlertRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT title, text, severity, wait_duration_ms, suppressed, created_at
         FROM alerts WHERE run_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([run_id], |row| {
        Ok(AlertRow {
            title: row.get(0)?,
            text: row.get(1)?,
            severity: row.get(2)?,
            wait_duration_ms: row.get(3)?,
            suppressed: row.get(4)?,
            created_at: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
