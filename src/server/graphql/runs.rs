//! Runs: `upsertBucket`, run control (stop, state), alerts, listing with filters, and the run's
//! fields, including its history, events and console output.

use apollo_compiler::resolvers::{FieldError, ObjectValue, ResolveInfo};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::engine::{
    arg, field_error, json_string, leaf, leaves, nullable, object, unsupported, Page, Record, Res,
};
use super::files::{run_file_count, run_files_page};
use super::project::ProjectObj;
use super::{viewer, Ctx};
use crate::server::filter::{Filter, Order};
use crate::server::ids;
use crate::server::store::alerts::{record_alert, NewAlert};
use crate::server::store::lines::{self, Stream};
use crate::server::store::runs::{self, RunRow, UpsertRun};
use crate::server::store::wandb_time;

#[derive(Clone)]
pub struct RunObj<'a> {
    pub ctx: &'a Ctx<'a>,
    pub row: RunRow,
}

const RUN_KIND: &str = "Run";

fn run_id_arg(id: &str) -> Result<i64, FieldError> {
    ids::decode(RUN_KIND, id).ok_or_else(|| field_error(format!("{id:?} is not a run id")))
}

pub fn upsert_bucket<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpsertRun = arg(info, "input")?;
    let existing = input.id.as_deref().map(run_id_arg).transpose()?;
    let (row, inserted) = runs::upsert_run(ctx.conn, &input, existing, viewer::DEFAULT_ENTITY)?;
    let bucket = RunObj { ctx, row };
    object(
        Record::new("UpsertBucketPayload")
            .leaf("inserted", inserted)
            .with("bucket", move |_| object(bucket.clone())),
    )
}

#[derive(Deserialize)]
struct IdInput {
    id: String,
}

pub fn stop_run<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: IdInput = arg(info, "input")?;
    runs::set_stopped(ctx.conn, run_id_arg(&input.id)?)?;
    object(Record::new("StopRunPayload").leaf("success", true))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRunInput {
    id: String,
    delete_artifacts: Option<bool>,
}

pub fn delete_run<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: DeleteRunInput = arg(info, "input")?;
    runs::delete_run(
        ctx.conn,
        run_id_arg(&input.id)?,
        input.delete_artifacts.unwrap_or(false),
    )?;
    object(Record::new("DeleteRunPayload").leaf("clientMutationId", None::<String>))
}

#[derive(Deserialize)]
struct UpdateStateInput {
    id: String,
    state: String,
}

pub fn update_run_state<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpdateStateInput = arg(info, "input")?;
    runs::set_state(
        ctx.conn,
        run_id_arg(&input.id)?,
        &input.state.to_lowercase(),
    )?;
    object(Record::new("UpdateRunStatePayload").leaf("success", true))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertInput {
    entity_name: String,
    project_name: String,
    run_name: String,
    title: String,
    text: String,
    severity: Option<String>,
    wait_duration: Option<i64>,
}

pub fn notify_alert<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: AlertInput = arg(info, "input")?;
    let run = runs::require_run(
        ctx.conn,
        &input.entity_name,
        &input.project_name,
        &input.run_name,
    )?;
    record_alert(
        ctx.conn,
        run.id,
        &NewAlert {
            title: &input.title,
            text: &input.text,
            severity: input.severity.as_deref().unwrap_or("INFO"),
            wait_duration_ms: input.wait_duration,
        },
    )?;
    object(Record::new("NotifyScriptableRunAlertPayload").leaf("success", true))
}

fn matching_runs(
    ctx: &Ctx<'_>,
    project_id: i64,
    filters: Option<&str>,
) -> Result<Vec<RunRow>, FieldError> {
    let filter = Filter::parse_json(filters).map_err(|e| field_error(e.to_string()))?;
    Ok(runs::project_runs(ctx.conn, project_id)?
        .into_iter()
        .filter(|run| filter.matches(run, ctx.tuning.run_timeout))
        .collect())
}

pub fn run_count<'a>(ctx: &'a Ctx<'a>, project_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let filters: Option<String> = arg(info, "filters")?;
    leaf(matching_runs(ctx, project_id, filters.as_deref())?.len())
}

/// `runs(filters, order, first, after)`. The cursor names the last run of the previous page;
/// the next page starts after where that run sorts now, even if it no longer matches.
pub fn runs<'a>(ctx: &'a Ctx<'a>, project_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let filters: Option<String> = arg(info, "filters")?;
    let order: Option<String> = arg(info, "order")?;
    let first: Option<i64> = arg(info, "first")?;
    let after: Option<String> = arg(info, "after")?;
    let order = Order::parse(order.as_deref()).map_err(|e| field_error(e.to_string()))?;
    let first = first.unwrap_or(50).clamp(0, 10_000) as usize;
    let mut rows = matching_runs(ctx, project_id, filters.as_deref())?;

    let start = match after {
        None => {
            order.sort(&mut rows, ctx.tuning.run_timeout);
            0
        }
        Some(cursor) => {
            let cursor_id = ids::decode("RunCursor", &cursor)
                .ok_or_else(|| field_error(format!("invalid cursor {cursor:?}")))?;
            let cursor_matches = rows.iter().any(|r| r.id == cursor_id);
            if !cursor_matches {
                let cursor_run = runs::run_by_id(ctx.conn, cursor_id)?
                    .ok_or_else(|| field_error("the cursor's run no longer exists"))?;
                rows.push(cursor_run);
            }
            order.sort(&mut rows, ctx.tuning.run_timeout);
            let pos = rows.iter().position(|r| r.id == cursor_id).unwrap_or(0);
            if cursor_matches {
                pos + 1
            } else {
                rows.remove(pos);
                pos
            }
        }
    };
    let has_next_page = rows.len() > start + first;
    let items = rows
        .into_iter()
        .skip(start)
        .take(first)
        .map(|row| (ids::encode("RunCursor", row.id), RunObj { ctx, row }))
        .collect();
    object(Page {
        connection_type: "RunConnection",
        edge_type: "RunEdge",
        items,
        has_next_page,
    })
}

pub fn run<'a>(ctx: &'a Ctx<'a>, project_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let name: String = arg(info, "name")?;
    nullable(runs::find_run(ctx.conn, project_id, &name)?.map(|row| RunObj { ctx, row }))
}

/// A `sampledHistory` spec: which keys, how many rows, and an inclusive step range.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SampleSpec {
    #[serde(default)]
    keys: Vec<String>,
    samples: Option<i64>,
    min_step: Option<i64>,
    max_step: Option<i64>,
}

/// Rows that have every one of `keys`, reduced to those keys.
fn project_rows(lines: Vec<String>, keys: &[String]) -> Vec<Value> {
    lines
        .into_iter()
        .filter_map(|line| {
            let Ok(Value::Object(row)) = serde_json::from_str::<Value>(&line) else {
                return None;
            };
            if keys.is_empty() {
                return Some(Value::Object(row));
            }
            let picked: Map<String, Value> = keys
                .iter()
                .filter_map(|k| row.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            let has_all = keys.iter().all(|k| picked.contains_key(k));
            has_all.then_some(Value::Object(picked))
        })
        .collect()
}

fn samples_limit(samples: Option<i64>) -> usize {
    samples.map_or(usize::MAX, |s| s.max(0) as usize)
}

impl<'a> RunObj<'a> {
    fn history(&self, info: &ResolveInfo<'_>) -> Res<'a> {
        let samples: Option<i64> = arg(info, "samples")?;
        let min_step: Option<i64> = arg(info, "minStep")?;
        let max_step: Option<i64> = arg(info, "maxStep")?;
        let lines = lines::history_lines(self.ctx.conn, self.row.id, min_step, max_step)?;
        leaves(lines::downsample(lines, samples_limit(samples)))
    }

    fn sampled_history(&self, info: &ResolveInfo<'_>) -> Res<'a> {
        let specs: Vec<String> = arg(info, "specs")?;
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            let spec: SampleSpec = serde_json::from_str(&spec)
                .map_err(|e| field_error(format!("invalid sampledHistory spec: {e}")))?;
            let max_exclusive = spec.max_step.map(|s| s.saturating_add(1));
            let lines =
                lines::history_lines(self.ctx.conn, self.row.id, spec.min_step, max_exclusive)?;
            // The SDK repeats `_step` when it is also the x axis.
            let mut keys = spec.keys;
            let mut seen = std::collections::HashSet::new();
            keys.retain(|k| seen.insert(k.clone()));
            let rows = project_rows(lines, &keys);
            results.push(Value::Array(lines::downsample(
                rows,
                samples_limit(spec.samples),
            )));
        }
        leaves(results)
    }

    /// Nothing is ever exported to parquet here, so every row is live data; the SDK then reads
    /// the rows themselves through `history`/`sampledHistory`.
    fn parquet_history(&self, info: &ResolveInfo<'_>) -> Res<'a> {
        let live_keys: Vec<String> = arg(info, "liveKeys")?;
        let conn = self.ctx.conn;
        // The SDK only asks for `_step`, which is indexed; other keys need the rows themselves.
        let live = if live_keys.iter().all(|k| k == "_step") {
            let steps = lines::history_steps(conn, self.row.id)?;
            steps
                .into_iter()
                .map(|step| serde_json::json!({"_step": step}))
                .collect()
        } else {
            project_rows(
                lines::history_lines(conn, self.row.id, None, None)?,
                &live_keys,
            )
        };
        object(
            Record::new("ParquetHistory")
                .leaves("parquetUrls", Vec::<String>::new())
                .leaves("liveData", live),
        )
    }

    fn log_lines(&self, info: &ResolveInfo<'_>) -> Res<'a> {
        let first: Option<i64> = arg(info, "first")?;
        let last: Option<i64> = arg(info, "last")?;
        let after: Option<String> = arg(info, "after")?;
        let conn = self.ctx.conn;
        let (lines, has_next_page) = match last {
            Some(n) => (
                lines::output_tail(conn, self.row.id, n.clamp(0, 10_000))?,
                false,
            ),
            None => {
                let after = after
                    .map(|c| {
                        ids::decode("LogLine", &c)
                            .ok_or_else(|| field_error(format!("invalid cursor {c:?}")))
                    })
                    .transpose()?;
                let limit = first.unwrap_or(1000).clamp(0, 10_000);
                let mut page = lines::output_page(conn, self.row.id, after, limit + 1)?;
                let more = page.len() as i64 > limit;
                page.truncate(limit as usize);
                (page, more)
            }
        };
        let items = lines
            .into_iter()
            .map(|(number, content)| {
                (
                    ids::encode("LogLine", number),
                    LogLineObj { number, content },
                )
            })
            .collect();
        object(Page {
            connection_type: "LogLineConnection",
            edge_type: "LogLineEdge",
            items,
            has_next_page,
        })
    }

    fn wandb_config(&self, info: &ResolveInfo<'_>) -> Res<'a> {
        let keys: Option<Vec<String>> = arg(info, "keys")?;
        let config = self.row.config_json();
        let Some(Value::Object(wandb)) = config.get("_wandb").and_then(|w| w.get("value")) else {
            return leaf(None::<String>);
        };
        let picked: Map<String, Value> = wandb
            .iter()
            .filter(|(k, _)| keys.as_ref().is_none_or(|keys| keys.contains(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        json_string(&Value::Object(picked))
    }

    fn tail(&self, stream: Stream) -> Res<'a> {
        let lines = lines::tail(self.ctx.conn, self.row.id, stream, 10)?;
        json_string(&Value::from(lines))
    }
}

impl ObjectValue for RunObj<'_> {
    fn type_name(&self) -> &str {
        "Run"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        let row = &self.row;
        let conn = ctx.conn;
        match info.field_name() {
            "id" => leaf(ids::encode(RUN_KIND, row.id)),
            "name" => leaf(&row.name),
            "displayName" => leaf(&row.display_name),
            "description" => leaf(&row.description),
            "notes" => leaf(&row.notes),
            "state" => leaf(row.state(ctx.tuning.run_timeout)),
            "config" => leaf(&row.config),
            "wandbConfig" => self.wandb_config(info),
            "summaryMetrics" => leaf(&row.summary),
            "systemMetrics" => leaf(&row.system_metrics),
            "group" => leaf(&row.group),
            "jobType" => leaf(&row.job_type),
            "commit" => leaf(&row.commit),
            "host" => leaf(&row.host),
            "sweepName" => leaf(&row.sweep_name),
            "tags" => leaves(&row.tags),
            "readOnly" => leaf(false),
            "stopped" | "shouldStop" => leaf(row.stopped),
            "exitcode" => leaf(row.exit_code),
            "failed" => leaf(row.state(ctx.tuning.run_timeout) == "failed"),
            "running" => leaf(row.state(ctx.tuning.run_timeout) == "running"),
            "createdAt" => leaf(wandb_time(&row.created_at)),
            "heartbeatAt" => leaf(wandb_time(&row.heartbeat_at)),
            "updatedAt" => leaf(wandb_time(&row.updated_at)),
            "projectId" => leaf(row.project_id.to_string()),
            "project" => object(ProjectObj::by_id(ctx, row.project_id)?),
            "user" => object(viewer::user()),
            "historyLineCount" => leaf(lines::line_count(conn, row.id, Stream::History)?),
            "eventsLineCount" => leaf(lines::line_count(conn, row.id, Stream::Events)?),
            "logLineCount" => leaf(lines::line_count(conn, row.id, Stream::Output)?),
            "historyTail" => self.tail(Stream::History),
            "eventsTail" => self.tail(Stream::Events),
            "historyKeys" => leaf(lines::history_keys(conn, row)?),
            "history" => self.history(info),
            "events" => {
                let samples: Option<i64> = arg(info, "samples")?;
                let lines = lines::stream_lines(conn, row.id, Stream::Events)?;
                leaves(lines::downsample(lines, samples_limit(samples)))
            }
            "sampledHistory" => self.sampled_history(info),
            "parquetHistory" => self.parquet_history(info),
            "fileCount" => run_file_count(ctx, row.id),
            "files" => run_files_page(ctx, row, info),
            "logLines" => self.log_lines(info),
            _ => Err(unsupported(info, "Run")),
        }
    }
}

#[derive(Clone)]
struct LogLineObj {
    number: i64,
    content: String,
}

impl ObjectValue for LogLineObj {
    fn type_name(&self) -> &str {
        "LogLine"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let parsed = lines::parse_log_line(&self.content);
        match info.field_name() {
            "number" => leaf(self.number),
            "timestamp" => leaf(parsed.timestamp),
            "level" => leaf(parsed.level),
            "label" => leaf(parsed.label),
            "line" => leaf(parsed.text),
            _ => Err(unsupported(info, "LogLine")),
        }
    }
}
