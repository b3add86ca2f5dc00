//! The file_stream streams of a run: history and events (append-only JSON lines), output.log
//! (line-addressed, overwritable) and the summary. Line numbers come from the client's offsets,
//! which is what makes a re-sent chunk harmless.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::runs::{record_activity, set_summary, Activity, RunRow};
use super::StoreResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    History = 0,
    Events = 1,
    Output = 2,
}

impl Stream {
    fn id(self) -> i64 {
        self as i64
    }
}

pub const HISTORY_FILE: &str = "wandb-history.jsonl";
pub const EVENTS_FILE: &str = "wandb-events.jsonl";
pub const OUTPUT_FILE: &str = "output.log";
pub const SUMMARY_FILE: &str = "wandb-summary.json";

/// A file_stream request body (§5 of the protocol notes). Unknown fields are ignored: the
/// legacy `dropped` and `failed`, and `uploaded`, which names files whose signed PUT this server
/// has already recorded.
#[derive(Debug, Default, Deserialize)]
pub struct FileStreamRequest {
    #[serde(default)]
    pub files: BTreeMap<String, FileChunk>,
    #[serde(default)]
    pub preempting: Option<bool>,
    #[serde(default)]
    pub complete: Option<bool>,
    #[serde(default)]
    pub exitcode: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct FileChunk {
    #[serde(default)]
    pub offset: i64,
    #[serde(default)]
    pub content: Vec<String>,
}

/// Applies one file_stream request to a run. Returns whether the run was asked to stop.
pub fn apply_file_stream(
    conn: &Connection,
    run: &RunRow,
    request: &FileStreamRequest,
) -> StoreResult<bool> {
    for (name, chunk) in &request.files {
        if chunk.offset < 0 {
            return Err(super::invalid(format!("negative offset for {name}")));
        }
        match name.as_str() {
            HISTORY_FILE => append_history(conn, run.id, chunk)?,
            EVENTS_FILE => append_events(conn, run.id, chunk)?,
            OUTPUT_FILE => write_output(conn, run.id, chunk)?,
            SUMMARY_FILE => {
                if let Some(summary) = chunk.content.last().and_then(|s| parse_object(s)) {
                    set_summary(conn, run.id, &Value::Object(summary))?;
                }
            }
            other => tracing::debug!(file = other, "ignoring unknown file_stream file"),
        }
    }
    let activity = if request.complete == Some(true) {
        Activity::Complete {
            exit_code: request.exitcode.unwrap_or(0),
        }
    } else if request.preempting == Some(true) {
        Activity::Preempting
    } else {
        Activity::Data
    };
    record_activity(conn, run, activity)?;
    Ok(run.stopped)
}

fn parse_object(line: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(line) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// `_step` as the SDK writes it (an integer, sometimes as a float); the line number otherwise.
fn step_of(row: &Map<String, Value>, line: i64) -> i64 {
    match row.get("_step") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(line),
        _ => line,
    }
}

fn append_history(conn: &Connection, run_id: i64, chunk: &FileChunk) -> StoreResult<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO run_lines (run_id, stream, line, step, content) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut count_key = conn.prepare_cached(
        "INSERT INTO history_keys (run_id, key, type, count) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (run_id, key, type) DO UPDATE SET count = count + 1",
    )?;
    let mut last_step: Option<i64> = None;
    for (i, line) in chunk.content.iter().enumerate() {
        let line_no = chunk.offset + i as i64;
        let Some(row) = parse_object(line) else {
            tracing::warn!(
                run_id,
                line = line_no,
                "dropping a history line that is not a JSON object"
            );
            continue;
        };
        let step = step_of(&row, line_no);
        // A line already stored was re-sent by a retrying client: nothing to count again.
        if insert.execute((run_id, Stream::History.id(), line_no, step, line))? == 0 {
            continue;
        }
        for (key, value) in &row {
            count_key.execute((run_id, key, value_type(value)))?;
        }
        last_step = Some(last_step.map_or(step, |s| s.max(step)));
    }
    if let Some(step) = last_step {
        conn.execute(
            "UPDATE runs SET history_last_step = MAX(COALESCE(history_last_step, ?2), ?2) WHERE id = ?1",
            (run_id, step),
        )?;
    }
    Ok(())
}

/// The type names W&B reports in `historyKeys`; media values carry their own `_type`.
fn value_type(value: &Value) -> &str {
    match value {
        Value::Null => "nil",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(map) => map.get("_type").and_then(Value::as_str).unwrap_or("map"),
    }
}

fn append_events(conn: &Connection, run_id: i64, chunk: &FileChunk) -> StoreResult<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO run_lines (run_id, stream, line, step, content) VALUES (?1, ?2, ?3, NULL, ?4)",
    )?;
    for (i, line) in chunk.content.iter().enumerate() {
        insert.execute((run_id, Stream::Events.id(), chunk.offset + i as i64, line))?;
    }
    // systemMetrics is the newest sample, i.e. the highest stored line.
    conn.execute(
        "UPDATE runs SET system_metrics = COALESCE(
            (SELECT content FROM run_lines WHERE run_id = ?1 AND stream = ?2 ORDER BY line DESC LIMIT 1),
            system_metrics)
         WHERE id = ?1",
        (run_id, Stream::Events.id()),
    )?;
    Ok(())
}

fn write_output(conn: &Connection, run_id: i64, chunk: &FileChunk) -> StoreResult<()> {
    // Re-sent offsets overwrite: the client rewrites lines for `\r` progress bars.
    let mut upsert = conn.prepare_cached(
        "INSERT OR REPLACE INTO run_lines (run_id, stream, line, step, content) VALUES (?1, ?2, ?3, NULL, ?4)",
    )?;
    for (i, line) in chunk.content.iter().enumerate() {
        upsert.execute((run_id, Stream::Output.id(), chunk.offset + i as i64, line))?;
    }
    Ok(())
}

/// Number of lines of a stream as the client counts them: one past the highest line number.
pub fn line_count(conn: &Connection, run_id: i64, stream: Stream) -> StoreResult<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(line) + 1, 0) FROM run_lines WHERE run_id = ?1 AND stream = ?2",
        (run_id, stream.id()),
        |row| row.get(0),
    )?)
}

/// History lines with `min_step <= step < max_step`, in step order.
pub fn history_lines(
    conn: &Connection,
    run_id: i64,
    min_step: Option<i64>,
    max_step: Option<i64>,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT content FROM run_lines
         WHERE run_id = ?1 AND stream = ?2 AND step >= ?3 AND step < ?4
         ORDER BY step, line",
    )?;
    let rows = stmt.query_map(
        (
            run_id,
            Stream::History.id(),
            min_step.unwrap_or(i64::MIN),
            max_step.unwrap_or(i64::MAX),
        ),
        |row| row.get(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The `_step` of every history line, in step order.
pub fn history_steps(conn: &Connection, run_id: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT step FROM run_lines WHERE run_id = ?1 AND stream = ?2 ORDER BY step, line",
    )?;
    let rows = stmt.query_map((run_id, Stream::History.id()), |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// All lines of a stream in line order.
pub fn stream_lines(conn: &Connection, run_id: i64, stream: Stream) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT content FROM run_lines WHERE run_id = ?1 AND stream = ?2 ORDER BY line",
    )?;
    let rows = stmt.query_map((run_id, stream.id()), |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last `n` lines of a stream, oldest first.
pub fn tail(conn: &Connection, run_id: i64, stream: Stream, n: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT content FROM (SELECT line, content FROM run_lines WHERE run_id = ?1 AND stream = ?2
                              ORDER BY line DESC LIMIT ?3)
         ORDER BY line",
    )?;
    let rows = stmt.query_map((run_id, stream.id(), n), |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Output lines with their numbers, `first` lines after line `after` (or from the start).
pub fn output_page(
    conn: &Connection,
    run_id: i64,
    after: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT line, content FROM run_lines WHERE run_id = ?1 AND stream = ?2 AND line > ?3
         ORDER BY line LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        (run_id, Stream::Output.id(), after.unwrap_or(-1), limit),
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last `n` output lines with their numbers, oldest first.
pub fn output_tail(conn: &Connection, run_id: i64, n: i64) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT line, content FROM (SELECT line, content FROM run_lines WHERE run_id = ?1 AND stream = ?2
                                    ORDER BY line DESC LIMIT ?3)
         ORDER BY line",
    )?;
    let rows = stmt.query_map((run_id, Stream::Output.id(), n), |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `historyKeys`: the last step and per-key type counts. `lastStep` is absent without history,
/// which the SDK reads as "no history".
pub fn history_keys(conn: &Connection, run: &RunRow) -> StoreResult<Value> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, type, count FROM history_keys WHERE run_id = ?1 ORDER BY key, type",
    )?;
    let mut keys = Map::new();
    let rows = stmt.query_map([run.id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (key, ty, count) = row?;
        let entry = keys
            .entry(key)
            .or_insert_with(|| serde_json::json!({"typeCounts": []}));
        if let Some(Value::Array(counts)) = entry.get_mut("typeCounts") {
            counts.push(serde_json::json!({"type": ty, "count": count}));
        }
    }
    let mut out = Map::new();
    if let Some(step) = run.history_last_step {
        out.insert("lastStep".into(), step.into());
    }
    out.insert("keys".into(), Value::Object(keys));
    Ok(Value::Object(out))
}

/// Picks at most `samples` items spread evenly over `items`, always keeping the first and the
/// last, like W&B's sampled history does.
pub fn downsample<T>(items: Vec<T>, samples: usize) -> Vec<T> {
    let len = items.len();
    if len <= samples {
        return items;
    }
    if samples == 0 {
        return Vec::new();
    }
    if samples == 1 {
        return items.into_iter().take(1).collect();
    }
    // With len > samples the stride is at least 1, so the rounded indices strictly increase.
    let mut wanted = (0..samples)
        .map(|i| (i * (len - 1) + (samples - 1) / 2) / (samples - 1))
        .peekable();
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| (wanted.next_if_eq(&i).is_some()).then_some(item))
        .collect()
}

/// One output.log line split into W&B's log-line fields: an optional `ERROR ` prefix (stderr),
/// a `YYYY-MM-DDTHH:MM:SS.ffffff` timestamp, an optional `[label]`, then the text.
pub struct LogLine<'a> {
    pub timestamp: Option<&'a str>,
    pub level: &'static str,
    pub label: &'a str,
    pub text: &'a str,
}

pub fn parse_log_line(line: &str) -> LogLine<'_> {
    let (level, rest) = match line.strip_prefix("ERROR ") {
        Some(rest) => ("error", rest),
        // The SDK documents `level` as "error" for stderr and empty otherwise.
        None => ("", line),
    };
    let (timestamp, rest) = match rest.split_once(' ') {
        Some((ts, text)) if looks_like_timestamp(ts) => (Some(ts), text),
        _ if looks_like_timestamp(rest) => (Some(rest), ""),
        _ => (None, rest),
    };
    let (label, text) = match rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((label, text)) if timestamp.is_some() => (label, text),
        _ => ("", rest),
    };
    LogLine {
        timestamp,
        level,
        label,
        text,
    }
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[..4].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_ends_and_spreads_evenly() {
        let items: Vec<i32> = (0..10).collect();
        assert_eq!(downsample(items.clone(), 20), items);
        assert_eq!(downsample(items.clone(), 2), vec![0, 9]);
        assert_eq!(downsample(items.clone(), 4), vec![0, 3, 6, 9]);
        assert_eq!(downsample(items.clone(), 1), vec![0]);
        assert_eq!(downsample(items.clone(), 0), Vec::<i32>::new());
        assert_eq!(downsample(items, 9).len(), 9);
    }

    #[test]
    fn log_lines_are_split_into_fields() {
        let l = parse_log_line("ERROR 2026-11-23T11:12:55.329583 stderr line 0");
        assert_eq!(
            (l.level, l.timestamp, l.label, l.text),
            (
                "error",
                Some("2026-11-23T11:12:55.329583"),
                "",
                "stderr line 0"
            )
        );
        let l = parse_log_line("2026-11-23T11:12:55.329583 [rank1] hello");
        assert_eq!((l.level, l.label, l.text), ("", "rank1", "hello"));
        let l = parse_log_line("plain text");
        assert_eq!((l.timestamp, l.text), (None, "plain text"));
    }

    #[test]
    fn value_types_follow_wandb_names() {
        assert_eq!(value_type(&serde_json::json!(1.5)), "number");
        assert_eq!(
            value_type(&serde_json::json!({"_type": "image-file"})),
            "image-file"
        );
        assert_eq!(value_type(&serde_json::json!({"a": 1})), "map");
    }
}
