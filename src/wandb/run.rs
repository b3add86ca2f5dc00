//! Starting, logging to and finishing a run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::error::{Error, Result};
use super::filestream::{self, Command, Feedback, Stream, StreamStart, OUTPUT_FILE};
use super::graphql::{RUN_RESUME_STATUS, UPSERT_BUCKET};
use super::ids::random_id;
use super::json::{json_object, json_value, unwrap_config, wrap_config, Row};
use super::settings::Resume;

/// What to start. Unset fields fall back to the client's [`Settings`](super::Settings)
/// (the `WANDB_*` environment), and the run id to a fresh random one.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub entity: Option<String>,
    pub project: Option<String>,
    /// The run id (W&B's run "name"): 8 random `[a-z0-9]` characters unless given.
    pub id: Option<String>,
    /// Display name; the server makes one up when unset.
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub config: Row,
    pub resume: Option<Resume>,
    /// Git commit SHA of the code.
    pub commit: Option<String>,
    /// Git remote URL.
    pub repo: Option<String>,
    pub host: Option<String>,
    pub program: Option<String>,
}

/// A live run. Logging calls only queue work for a background task and never wait for the
/// network; [`Run::finish`] flushes everything and marks the run finished or failed.
pub struct Run {
    client: Client,
    entity: String,
    project: String,
    id: String,
    storage_id: String,
    display_name: Option<String>,
    resumed: bool,
    tx: mpsc::UnboundedSender<Command>,
    feedback: Arc<Feedback>,
    /// The step the next history row gets. Held while queueing so that rows from several
    /// threads reach the stream in step order.
    next_step: Mutex<u64>,
    config: Mutex<Row>,
    /// Console text as printed, uploaded as `output.log` at the end like the official client.
    console: Mutex<String>,
    finished: AtomicBool,
}

/// A run as `RunResumeStatus` reports it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExistingRun {
    #[serde(default)]
    summary_metrics: Value,
    log_line_count: Option<u64>,
    history_line_count: Option<u64>,
    events_line_count: Option<u64>,
    #[serde(default)]
    history_tail: Value,
    #[serde(default)]
    config: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertedRun {
    id: String,
    name: String,
    display_name: Option<String>,
    project: Option<UpsertedProject>,
    history_line_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct UpsertedProject {
    name: String,
    entity: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

impl Client {
    /// Creates (or resumes) a run with `upsertBucket` and starts its file stream.
    pub async fn start_run(&self, spec: RunSpec) -> Result<Run> {
        let settings = self.settings();
        let entity = self.resolve_entity(spec.entity.as_deref()).await?;
        let project = self.resolve_project(spec.project.as_deref())?;
        let id = spec
            .id
            .or_else(|| settings.run_id.clone())
            .unwrap_or_else(|| random_id(8));
        let resume = spec.resume.or(settings.resume);

        let existing = match resume {
            Some(mode) => self.resume_status(&entity, &project, &id, mode).await?,
            None => None,
        };
        let resumed = existing.is_some();
        let (mut start, next_step, mut config) = match existing {
            Some(run) => resume_point(run),
            None => (StreamStart::default(), 0, Row::new()),
        };
        config.extend(spec.config);

        let tags = if spec.tags.is_empty() {
            settings.tags.clone()
        } else {
            spec.tags
        };
        let or =
            |given: Option<String>, default: &Option<String>| given.or_else(|| default.clone());
        let variables = json!({
            "id": null,
            "name": id,
            "project": project,
            "entity": entity,
            "groupName": or(spec.group, &settings.group),
            "description": null,
            "displayName": or(spec.name, &settings.run_name),
            "notes": or(spec.notes, &settings.notes),
            "commit": or(spec.commit, &settings.commit),
            "config": wrap_config(&config),
            "host": or(spec.host, &settings.host).or_else(hostname),
            "debug": null,
            "program": or(spec.program, &settings.program).or_else(program),
            "repo": or(spec.repo, &settings.repo),
            "jobType": or(spec.job_type, &settings.job_type),
            "state": null,
            "sweep": null,
            // Null leaves the tags of a resumed run alone; a list replaces them.
            "tags": if tags.is_empty() { Value::Null } else { json!(tags) },
            "summaryMetrics": null,
        });
        let run = self.upsert(variables).await?;
        let stored_lines = run.history_line_count.unwrap_or(0);
        if !resumed && stored_lines > 0 {
            // Never overwrite stored history: append after it, as the official client does.
            tracing::warn!(
                run = %run.name,
                stored_lines,
                "run already has history; appending after it (set WANDB_RESUME=allow to continue its steps)"
            );
            start.history_offset = stored_lines;
        }
        // The server's canonical names address the file stream.
        let (entity, project) = match run.project {
            Some(p) => (p.entity.map(|e| e.name).unwrap_or(entity), p.name),
            None => (entity, project),
        };
        let url =
            self.transport()
                .endpoint(&["files", &entity, &project, &run.name, "file_stream"]);
        let (tx, feedback) =
            filestream::spawn(self.transport().clone(), url, start, SystemTime::now());
        tracing::info!(%entity, %project, run = %run.name, resumed, "run started");
        Ok(Run {
            client: self.clone(),
            entity,
            project,
            id: run.name,
            storage_id: run.id,
            display_name: run.display_name,
            resumed,
            tx,
            feedback,
            next_step: Mutex::new(next_step),
            config: Mutex::new(config),
            console: Mutex::new(String::new()),
            finished: AtomicBool::new(false),
        })
    }

    async fn upsert(&self, variables: Value) -> Result<UpsertedRun> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            upsert_bucket: Option<Payload>,
        }
        #[derive(Deserialize)]
        struct Payload {
            bucket: Option<UpsertedRun>,
        }
        let data: Data = self.transport().graphql(&UPSERT_BUCKET, variables).await?;
        data.upsert_bucket.and_then(|p| p.bucket).ok_or_else(|| {
            self.transport()
                .unexpected(&UPSERT_BUCKET, "no run (bucket) in the answer")
        })
    }

    /// The existing run to continue, or `None` to start fresh; errors when `mode` forbids either.
    async fn resume_status(
        &self,
        entity: &str,
        project: &str,
        id: &str,
        mode: Resume,
    ) -> Result<Option<ExistingRun>> {
        #[derive(Deserialize)]
        struct Data {
            model: Option<Project>,
        }
        #[derive(Deserialize)]
        struct Project {
            bucket: Option<ExistingRun>,
        }
        let variables = json!({"project": project, "entity": entity, "name": id});
        let data: Data = self
            .transport()
            .graphql(&RUN_RESUME_STATUS, variables)
            .await?;
        let existing = data.model.and_then(|p| p.bucket);
        match (mode, existing) {
            (Resume::Never, Some(_)) => Err(Error::InvalidInput(format!(
                "run {entity}/{project}/{id} already exists and resume is \"never\""
            ))),
            (Resume::Must, None) => Err(Error::NotFound(format!(
                "run {entity}/{project}/{id} (resume is \"must\")"
            ))),
            (Resume::Never, None) => Ok(None),
            (_, existing) => Ok(existing),
        }
    }
}

/// Where a resumed run continues: file offsets, summary, runtime, next step and config.
fn resume_point(run: ExistingRun) -> (StreamStart, u64, Row) {
    let summary = json_object(run.summary_metrics);
    let history_lines = run.history_line_count.unwrap_or(0);
    let last_logged_step = json_value(run.history_tail)
        .as_array()
        .and_then(|tail| tail.last().cloned())
        .map(json_object)
        .and_then(|row| row.get("_step").and_then(Value::as_u64));
    let last_step = last_logged_step.or_else(|| summary.get("_step").and_then(Value::as_u64));
    let next_step = match last_step {
        Some(step) => step + 1,
        None => history_lines,
    };
    let runtime_offset = summary
        .get("_runtime")
        .and_then(Value::as_f64)
        .or_else(|| {
            summary
                .get("_wandb")
                .and_then(|w| w.get("runtime"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(0.0);
    let start = StreamStart {
        history_offset: history_lines,
        events_offset: run.events_line_count.unwrap_or(0),
        output_offset: run.log_line_count.unwrap_or(0),
        summary,
        runtime_offset,
    };
    (start, next_step, unwrap_config(run.config))
}

/// This machine's name, as runs record it.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn program() -> Option<String> {
    std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
}

impl Run {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn entity(&self) -> &str {
        &self.entity
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// The run id (W&B's run "name"), e.g. `hb8zh4xt`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's opaque storage id of the run.
    pub fn storage_id(&self) -> &str {
        &self.storage_id
    }

    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// Whether this run continues an existing one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The step the next [`Run::log`] row gets.
    pub fn step(&self) -> u64 {
        *lock(&self.next_step)
    }

    /// Logs one history row at the next step and returns that step. `_step`, `_runtime` and
    /// `_timestamp` are added; every key also becomes the summary's latest value.
    pub fn log(&self, row: Row) -> u64 {
        let at = SystemTime::now();
        let mut next = lock(&self.next_step);
        let step = *next;
        *next += 1;
        self.send(Command::History { step, row, at });
        step
    }

    /// Logs one history row at `step`, which must not be behind [`Run::step`]; later rows
    /// continue from `step + 1`.
    pub fn log_at(&self, step: u64, row: Row) -> Result<u64> {
        let at = SystemTime::now();
        let mut next = lock(&self.next_step);
        if step < *next {
            return Err(Error::InvalidInput(format!(
                "cannot log step {step}: the run is already at step {}",
                *next
            )));
        }
        *next = step + 1;
        self.send(Command::History { step, row, at });
        Ok(step)
    }

    /// Sets summary values explicitly (e.g. `best_acc`), on top of the last logged values.
    pub fn summary_update(&self, values: Row) {
        self.send(Command::Summary(values));
    }

    /// Records console output; each line goes to the run's `output.log`.
    pub fn console(&self, text: &str, stream: Stream) {
        let at = SystemTime::now();
        {
            let mut console = lock(&self.console);
            for line in filestream::console_text_lines(text) {
                console.push_str(line);
                console.push('\n');
            }
        }
        self.send(Command::Console {
            stream,
            text: text.to_owned(),
            at,
        });
    }

    /// Records one system-metrics sample; keys get the `system.` prefix if they lack it.
    pub fn system_metrics(&self, metrics: Row) {
        let at = SystemTime::now();
        self.send(Command::System { row: metrics, at });
    }

    /// Tells the server now that the process is about to be preempted, so it waits before
    /// declaring the run dead.
    pub fn mark_preempting(&self) {
        self.send(Command::Preempting);
    }

    /// Whether the server asked this run to stop (the UI's Stop button).
    pub fn stopped(&self) -> bool {
        self.feedback.stopped.load(Ordering::Relaxed)
    }

    /// The run's config as sent so far (without the `{"value": ..}` wrapping).
    pub fn config(&self) -> Row {
        lock(&self.config).clone()
    }

    /// Merges `values` into the config and sends the whole config again (W&B takes no patches).
    pub async fn config_update(&self, values: Row) -> Result<()> {
        let config = {
            let mut config = lock(&self.config);
            config.extend(values);
            wrap_config(&config)
        };
        let variables = json!({
            "name": self.id, "project": self.project, "entity": self.entity, "config": config,
        });
        self.client.upsert(variables).await.map(drop)
    }

    /// Flushes everything, uploads `output.log`, and sends the final `complete` request with
    /// the exit code: 0 marks the run finished, anything else failed.
    pub async fn finish(&self, exit_code: i32) -> Result<()> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Err(Error::InvalidInput(format!(
                "run {} is already finished",
                self.id
            )));
        }
        let console = std::mem::take(&mut *lock(&self.console));
        if !console.is_empty() {
            // The console lines were streamed already; the file is the official client's
            // end-of-run copy, so failing to store it must not fail the run.
            if let Err(error) = self.save_bytes(OUTPUT_FILE, console.into_bytes()).await {
                tracing::warn!(%error, "could not upload output.log");
            }
        }
        let (done, result) = oneshot::channel();
        self.send(Command::Finish { exit_code, done });
        let outcome = result.await.unwrap_or_else(|_| {
            Err(Error::FileStream(
                "the file stream task ended before the final request".into(),
            ))
        });
        if outcome.is_ok() {
            tracing::info!(run = %self.id, exit_code, "run finished");
        }
        outcome
    }

    pub(crate) fn send(&self, command: Command) {
        if self.tx.send(command).is_err() {
            tracing::debug!(run = %self.id, "run data after finish() is dropped");
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("entity", &self.entity)
            .field("project", &self.project)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering from poisoning: the guarded values stay consistent even if a
/// holder panicked, since every critical section is a single update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(value: Value) -> ExistingRun {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn resume_continues_offsets_step_runtime_and_config() {
        let run = existing(json!({
            "summaryMetrics": "{\"loss\": 0.3, \"_step\": 41, \"_runtime\": 12.5}",
            "logLineCount": 7,
            "historyLineCount": 42,
            "eventsLineCount": 3,
            "historyTail": "[\"{\\\"_step\\\": 41, \\\"loss\\\": 0.3}\"]",
            "config": "{\"lr\": {\"value\": 0.1}, \"_wandb\": {\"value\": {}}}",
        }));
        let (start, next_step, config) = resume_point(run);
        assert_eq!(
            (
                start.history_offset,
                start.events_offset,
                start.output_offset
            ),
            (42, 3, 7)
        );
        assert_eq!(next_step, 42);
        assert_eq!(start.runtime_offset, 12.5);
        assert_eq!(start.summary["loss"], json!(0.3));
        assert_eq!(Value::Object(config), json!({"lr": 0.1}));
    }

    #[test]
    fn resume_step_follows_explicit_steps_and_tolerates_missing_fields() {
        let run =
            existing(json!({"historyLineCount": 3, "historyTail": "[\"{\\\"_step\\\": 99}\"]"}));
        assert_eq!(resume_point(run).1, 100);
        let run = existing(json!({"historyLineCount": 5, "summaryMetrics": null}));
        let (start, step, config) = resume_point(run);
        assert_eq!(
            (step, start.history_offset, start.runtime_offset),
            (5, 5, 0.0)
        );
        assert!(config.is_empty() && start.summary.is_empty());
    }
}
