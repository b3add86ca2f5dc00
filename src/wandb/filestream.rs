//! The file_stream writer: one background task per run that batches history, summary, console
//! and system-metric lines into `POST {base}/files/{entity}/{project}/{run}/file_stream`
//! requests, the way wandb-core does.
//!
//! The run handle only pushes [`Command`]s into an unbounded channel, so logging never waits
//! for the network. The task sends at most one request per transmit interval (the first at
//! once), one at a time and in order. Offsets advance only after the server acknowledged a
//! request; a failed request is re-sent unchanged, which the server stores idempotently
//! because it places lines by offset.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::Serialize;
use serde_json::{json, Value};
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::error::{Error, Result};
use super::json::Row;
use super::transport::Transport;

pub(crate) const HISTORY_FILE: &str = "wandb-history.jsonl";
pub(crate) const SUMMARY_FILE: &str = "wandb-summary.json";
pub(crate) const OUTPUT_FILE: &str = "output.log";
pub(crate) const EVENTS_FILE: &str = "wandb-events.jsonl";

/// Which console stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Work for the writer task.
pub(crate) enum Command {
    History {
        step: u64,
        row: Row,
        at: SystemTime,
    },
    Summary(Row),
    Console {
        stream: Stream,
        text: String,
        at: SystemTime,
    },
    System {
        row: Row,
        at: SystemTime,
    },
    Uploaded(Vec<String>),
    Preempting,
    Finish {
        exit_code: i32,
        done: oneshot::Sender<Result<()>>,
    },
}

/// Where a (possibly resumed) run's files continue.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamStart {
    pub history_offset: u64,
    pub events_offset: u64,
    pub output_offset: u64,
    /// The summary so far; later updates merge into it.
    pub summary: Row,
    /// Runtime (seconds) the run had before this process took it over.
    pub runtime_offset: f64,
}

/// State the run handle reads back from the task.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    /// The server answered `"stopped": true`: someone asked to stop the run.
    pub stopped: AtomicBool,
}

/// Starts the writer task for `url`.
pub(crate) fn spawn(
    transport: Arc<Transport>,
    url: Url,
    start: StreamStart,
    started_at: SystemTime,
) -> (mpsc::UnboundedSender<Command>, Arc<Feedback>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let feedback = Arc::new(Feedback::default());
    let writer = Writer::new(transport, url, start, started_at, feedback.clone());
    tokio::spawn(writer.run(rx));
    (tx, feedback)
}

/// Indices into `Writer::files`.
const HISTORY: usize = 0;
const EVENTS: usize = 1;
const OUTPUT: usize = 2;

/// Lines of one append-only file: `offset` is the line number of the first unacknowledged line.
struct LineFile {
    name: &'static str,
    offset: u64,
    lines: VecDeque<String>,
}

impl LineFile {
    fn new(name: &'static str, offset: u64) -> Self {
        Self {
            name,
            offset,
            lines: VecDeque::new(),
        }
    }

    fn ack(&mut self, count: usize) {
        self.lines.drain(..count);
        self.offset += count as u64;
    }
}

/// What one request carries, so that exactly that can be acknowledged afterwards.
#[derive(Debug, Default)]
struct Batch {
    /// Lines taken from history, events and output, in that order.
    lines: [usize; 3],
    summary: Option<(u64, String)>,
    uploaded: usize,
    preempting: bool,
    exit_code: Option<i32>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<&'static str, Chunk<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    uploaded: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    preempting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exitcode: Option<i32>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    offset: u64,
    content: Vec<&'a str>,
}

struct Writer {
    transport: Arc<Transport>,
    url: Url,
    /// Indexed by `HISTORY`, `EVENTS`, `OUTPUT`.
    files: [LineFile; 3],
    summary: Row,
    /// Bumped on every summary change; the summary is re-sent while `summary_acked` lags.
    summary_version: u64,
    summary_acked: u64,
    uploaded: Vec<String>,
    preempting: bool,
    /// Estimated request bytes of all buffered lines, to split large backlogs.
    pending_bytes: usize,
    started_at: SystemTime,
    runtime_offset: f64,
    created: Instant,
    last_request: Option<Instant>,
    /// Why the stream gave up; once set nothing more is sent.
    dead: Option<String>,
    feedback: Arc<Feedback>,
}

impl Writer {
    fn new(
        transport: Arc<Transport>,
        url: Url,
        start: StreamStart,
        started_at: SystemTime,
        feedback: Arc<Feedback>,
    ) -> Self {
        Self {
            transport,
            url,
            files: [
                LineFile::new(HISTORY_FILE, start.history_offset),
                LineFile::new(EVENTS_FILE, start.events_offset),
                LineFile::new(OUTPUT_FILE, start.output_offset),
            ],
            summary: start.summary,
            summary_version: 0,
            summary_acked: 0,
            uploaded: Vec::new(),
            preempting: false,
            pending_bytes: 0,
            started_at,
            runtime_offset: start.runtime_offset,
            created: Instant::now(),
            last_request: None,
            dead: None,
            feedback,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self.next_deadline(Instant::now());
            let next = tokio::select! {
                command = rx.recv() => Next::from(command),
                _ = tokio::time::sleep_until(deadline) => Next::Timer,
            };
            match next {
                Next::Command(command) => {
                    if self.apply(command).await.is_break() {
                        return;
                    }
                    // Take everything already queued so one request carries it all.
                    while let Ok(command) = rx.try_recv() {
                        if self.apply(command).await.is_break() {
                            return;
                        }
                    }
                }
                Next::Closed => {
                    // The run handle was dropped without `finish`: deliver what we have, but do
                    // not claim the run completed.
                    tracing::warn!(url = %self.url, "run dropped without finish(); flushing without marking it complete");
                    if let Err(error) = self.flush(None).await {
                        tracing::error!(%error, "could not flush the file stream");
                    }
                    return;
                }
                Next::Timer => {}
            }
            let now = Instant::now();
            if self.dead.is_none() && now >= self.next_deadline(now) {
                // Either buffered data is due, or nothing was sent for a heartbeat interval and
                // the empty request keeps the run alive.
                let _ = self.transmit(None).await;
            }
        }
    }

    /// Applies one command; `Break` ends the task.
    async fn apply(&mut self, command: Command) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        match command {
            Command::Finish { exit_code, done } => {
                let _ = done.send(self.flush(Some(exit_code)).await);
                return Break(());
            }
            // Buffering would only grow memory: nothing will be sent any more.
            _ if self.dead.is_some() => {}
            Command::History { step, mut row, at } => {
                let timestamp = unix_seconds(at);
                let runtime = self.runtime_at(at);
                row.insert("_step".into(), step.into());
                row.insert("_runtime".into(), json!(runtime));
                row.insert("_timestamp".into(), json!(timestamp));
                if let Some(line) = self.encode_line(&row) {
                    self.push(HISTORY, line);
                }
                self.summary.extend(row);
                self.summary
                    .insert("_wandb".into(), json!({ "runtime": runtime as u64 }));
                self.summary_version += 1;
            }
            Command::Summary(update) => {
                self.summary.extend(update);
                self.summary_version += 1;
            }
            Command::System { row, at } => {
                let mut line = Row::new();
                line.insert("_wandb".into(), true.into());
                line.insert("_timestamp".into(), json!(unix_seconds(at)));
                line.insert("_runtime".into(), json!(self.runtime_at(at)));
                for (key, value) in row {
                    let key = if key.starts_with("system.") {
                        key
                    } else {
                        format!("system.{key}")
                    };
                    line.insert(key, value);
                }
                if let Some(line) = self.encode_line(&line) {
                    self.push(EVENTS, line);
                }
            }
            Command::Console { stream, text, at } => {
                for line in console_lines(stream, at, &text) {
                    self.push(OUTPUT, line);
                }
            }
            Command::Uploaded(names) => self.uploaded.extend(names),
            Command::Preempting => self.preempting = true,
        }
        Continue(())
    }

    fn runtime_at(&self, at: SystemTime) -> f64 {
        let elapsed = at.duration_since(self.started_at).unwrap_or(Duration::ZERO);
        self.runtime_offset + elapsed.as_secs_f64()
    }

    /// Serializes a JSON line, dropping it (as wandb-core does) when no request could carry it.
    fn encode_line(&self, row: &Row) -> Option<String> {
        let line = serde_json::to_string(row).ok()?;
        if line_cost(&line) > self.max_request_bytes() {
            tracing::warn!(
                bytes = line.len(),
                "dropping a line too large for any file_stream request"
            );
            return None;
        }
        Some(line)
    }

    fn push(&mut self, file: usize, line: String) {
        self.pending_bytes += line_cost(&line);
        self.files[file].lines.push_back(line);
    }

    fn max_request_bytes(&self) -> usize {
        self.transport.tuning().max_request_bytes
    }

    fn has_data(&self) -> bool {
        self.files.iter().any(|f| !f.lines.is_empty())
            || self.summary_acked < self.summary_version
            || !self.uploaded.is_empty()
            || self.preempting
    }

    /// When the next request is due: at once for the first data, a preemption notice or a
    /// full request's worth of backlog; else one transmit interval after the last request;
    /// with nothing to send, one heartbeat interval after the last request.
    fn next_deadline(&self, now: Instant) -> Instant {
        let tuning = self.transport.tuning();
        if self.dead.is_some() {
            return far_future(now);
        }
        if !self.has_data() {
            return self.last_request.unwrap_or(self.created) + tuning.heartbeat_interval;
        }
        let urgent = self.preempting || self.pending_bytes >= tuning.max_request_bytes;
        match self.last_request {
            Some(last) if !urgent => last + tuning.transmit_interval,
            _ => now,
        }
    }

    /// Sends everything buffered, ignoring the transmit interval; with an exit code the last
    /// request carries `complete` and `exitcode`.
    async fn flush(&mut self, exit_code: Option<i32>) -> Result<()> {
        loop {
            if let Some(reason) = &self.dead {
                return Err(Error::FileStream(reason.clone()));
            }
            if !self.has_data() && exit_code.is_none() {
                return Ok(());
            }
            if self.transmit(exit_code).await? {
                return Ok(());
            }
        }
    }

    /// Sends one request built from the buffers (an empty `{}` heartbeat when they are empty).
    /// Returns whether it was the final one. Failures after all retries kill the stream.
    async fn transmit(&mut self, exit_code: Option<i32>) -> Result<bool> {
        let batch = self.plan(exit_code);
        let body = self.encode(&batch);
        self.last_request = Some(Instant::now());
        let policy = &self.transport.tuning().file_stream_retry;
        match self
            .transport
            .post_json("file_stream", &self.url, &body, policy)
            .await
        {
            Ok(response) => {
                self.acknowledge(&batch);
                self.read_feedback(&response);
                Ok(batch.exit_code.is_some())
            }
            Err(error) => {
                tracing::error!(%error, "file_stream gave up; later run data will not be sent");
                self.dead = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Picks what the next request carries, staying under the request size limit (but always
    /// taking at least one line, so progress is guaranteed).
    fn plan(&self, exit_code: Option<i32>) -> Batch {
        let mut budget = self.max_request_bytes();
        let mut batch = Batch::default();
        if self.summary_acked < self.summary_version {
            let summary = Value::Object(self.summary.clone()).to_string();
            budget = budget.saturating_sub(line_cost(&summary));
            batch.summary = Some((self.summary_version, summary));
        }
        let mut first = true;
        'files: for (taken, file) in batch.lines.iter_mut().zip(&self.files) {
            for line in &file.lines {
                let cost = line_cost(line);
                if cost > budget && !first {
                    break 'files;
                }
                budget = budget.saturating_sub(cost);
                *taken += 1;
                first = false;
            }
        }
        batch.uploaded = self.uploaded.len();
        batch.preempting = self.preempting;
        let everything = batch
            .lines
            .iter()
            .zip(&self.files)
            .all(|(n, f)| *n == f.lines.len());
        if everything {
            batch.exit_code = exit_code;
        }
        batch
    }

    fn encode(&self, batch: &Batch) -> Vec<u8> {
        let mut files = BTreeMap::new();
        for (&count, file) in batch.lines.iter().zip(&self.files) {
            if count > 0 {
                let content = file.lines.iter().take(count).map(String::as_str).collect();
                files.insert(
                    file.name,
                    Chunk {
                        offset: file.offset,
                        content,
                    },
                );
            }
        }
        if let Some((_, summary)) = &batch.summary {
            files.insert(
                SUMMARY_FILE,
                Chunk {
                    offset: 0,
                    content: vec![summary.as_str()],
                },
            );
        }
        let body = Body {
            files,
            uploaded: &self.uploaded[..batch.uploaded],
            preempting: batch.preempting,
            complete: batch.exit_code.map(|_| true),
            exitcode: batch.exit_code,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    fn acknowledge(&mut self, batch: &Batch) {
        for (&count, file) in batch.lines.iter().zip(self.files.iter_mut()) {
            self.pending_bytes -= file
                .lines
                .iter()
                .take(count)
                .map(|l| line_cost(l))
                .sum::<usize>();
            file.ack(count);
        }
        if let Some((version, _)) = batch.summary {
            self.summary_acked = self.summary_acked.max(version);
        }
        self.uploaded.drain(..batch.uploaded);
        if batch.preempting {
            self.preempting = false;
        }
    }

    /// Reads the server's answer. Only `"stopped": true` matters (a stop request from the UI).
    fn read_feedback(&self, response: &Value) {
        if response.get("stopped").and_then(Value::as_bool) == Some(true)
            && !self.feedback.stopped.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(url = %self.url, "the server asked this run to stop");
        }
    }
}

/// Result of waiting in the task loop.
enum Next {
    Command(Command),
    Closed,
    Timer,
}

impl From<Option<Command>> for Next {
    fn from(command: Option<Command>) -> Self {
        match command {
            Some(command) => Next::Command(command),
            None => Next::Closed,
        }
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365)
}

/// Bytes a line adds to a request body: the JSON string with quotes, escapes and a comma.
fn line_cost(line: &str) -> usize {
    let escapes = line
        .bytes()
        .filter(|b| matches!(b, b'"' | b'\\') || *b < 0x20)
        .count();
    line.len() + escapes + 3
}

pub(crate) fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Console text as `output.log` lines in the legacy format: `<UTC timestamp> <text>`, with
/// `ERROR ` in front for stderr. Each `\n` starts a new line; within a line, text before the
/// last `\r` was overwritten on the terminal (progress bars) and is dropped.
pub(crate) fn console_lines(stream: Stream, at: SystemTime, text: &str) -> Vec<String> {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");
    let stamp = OffsetDateTime::from(at).format(format).unwrap_or_default();
    let prefix = match stream {
        Stream::Stdout => "",
        Stream::Stderr => "ERROR ",
    };
    console_text_lines(text)
        .map(|line| format!("{prefix}{stamp} {line}"))
        .collect()
}

/// The visible lines of console text (see [`console_lines`]).
pub(crate) fn console_text_lines(text: &str) -> impl Iterator<Item = &str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n').map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        line.rsplit('\r').next().unwrap_or(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_use_the_legacy_format() {
        // 2026-11-23T11:13:19.331599Z
        let at = UNIX_EPOCH + Duration::from_micros(1_795_432_399_331_599);
        assert_eq!(
            console_lines(Stream::Stdout, at, "stdout line 2"),
            ["2026-11-23T11:13:19.331599 stdout line 2"]
        );
        assert_eq!(
            console_lines(Stream::Stderr, at, "a\nb\n"),
            [
                "ERROR 2026-11-23T11:13:19.331599 a",
                "ERROR 2026-11-23T11:13:19.331599 b"
            ]
        );
        assert_eq!(
            console_lines(Stream::Stdout, at, ""),
            ["2026-11-23T11:13:19.331599 "]
        );
        assert_eq!(
            console_lines(Stream::Stdout, at, "10%\r50%\r100%\r\n"),
            ["2026-11-23T11:13:19.331599 100%"]
        );
    }

    #[test]
    fn line_cost_counts_json_escaping() {
        assert_eq!(line_cost("ab"), 5);
        assert_eq!(line_cost(r#"{"a":1}"#), 7 + 2 + 3);
        assert_eq!(
            serde_json::to_string(r#"{"a":1}"#).unwrap().len() + 1,
            line_cost(r#"{"a":1}"#)
        );
    }
}
