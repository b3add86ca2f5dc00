//! W&B Launch: run queues and their items, default resource configs, launch agents.

use apollo_compiler::resolvers::{FieldError, ObjectValue, ResolveInfo};
use serde::Deserialize;
use serde_json::Value;

use super::engine::{arg, field_error, leaf, nullable, object, objects, unsupported, Record, Res};
use super::{viewer, Ctx};
use crate::server::ids;
use crate::server::store::launch::{
    self as store, ItemReport, ItemRow, NewAgent, NewQueue, QueueRow,
};
use crate::server::store::{
    ensure_entity, ensure_project, find_entity, find_project, project_by_id, wandb_time,
};

const QUEUE_KIND: &str = "RunQueue";
pub(crate) const ITEM_KIND: &str = "RunQueueItem";
pub(crate) const AGENT_KIND: &str = "LaunchAgent";
const CONFIG_KIND: &str = "DefaultResourceConfig";

fn decode(kind: &str, id: &str) -> Result<i64, FieldError> {
    ids::decode(kind, id).ok_or_else(|| field_error(format!("{id:?} is not a {kind} id")))
}

fn entity_id(ctx: &Ctx<'_>, name: &str) -> Result<i64, FieldError> {
    Ok(find_entity(ctx.conn, name)?
        .ok_or_else(|| field_error(format!("entity {name} not found")))?
        .0)
}

/// The queue named in a pop/push; an unknown queue is an error rather than "empty".
fn require_queue(
    ctx: &Ctx<'_>,
    entity: &str,
    project: &str,
    queue: &str,
) -> Result<QueueRow, FieldError> {
    let project = find_project(ctx.conn, entity, project)?
        .ok_or_else(|| field_error(format!("project {entity}/{project} not found")))?;
    store::queue_by_name(ctx.conn, project.id, queue)?.ok_or_else(|| {
        field_error(format!(
            "run queue {queue:?} not found in {entity}/{}",
            project.name
        ))
    })
}

fn success<'a>(type_name: &'static str, ok: bool) -> Res<'a> {
    object(Record::new(type_name).leaf("success", ok))
}

#[derive(Clone)]
struct QueueObj<'a> {
    ctx: &'a Ctx<'a>,
    row: QueueRow,
}

pub fn run_queues<'a>(ctx: &'a Ctx<'a>, project_id: i64) -> Res<'a> {
    let rows = store::queues(ctx.conn, project_id)?;
    objects(rows.into_iter().map(|row| QueueObj { ctx, row }))
}

pub fn run_queue<'a>(ctx: &'a Ctx<'a>, project_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let name: String = arg(info, "name")?;
    nullable(store::queue_by_name(ctx.conn, project_id, &name)?.map(|row| QueueObj { ctx, row }))
}

fn item_record<'a>(item: ItemRow) -> Record<'a> {
    Record::new("RunQueueItem")
        .leaf("id", ids::encode(ITEM_KIND, item.id))
        .leaf("state", item.state)
        .leaf("associatedRunId", item.associated_run_id)
}

impl ObjectValue for QueueObj<'_> {
    fn type_name(&self) -> &str {
        "RunQueue"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let row = &self.row;
        let conn = self.ctx.conn;
        match info.field_name() {
            "id" => leaf(ids::encode(QUEUE_KIND, row.id)),
            "name" => leaf(&row.name),
            "createdBy" => leaf(&row.created_by),
            "access" => leaf(&row.access),
            "defaultResourceConfigID" => leaf(
                row.default_resource_config_id
                    .map(|id| ids::encode(CONFIG_KIND, id)),
            ),
            "prioritizationMode" => leaf(&row.prioritization_mode),
            "externalLinks" => leaf(&row.external_links),
            "runQueueItems" => {
                let first: Option<i64> = arg(info, "first")?;
                let items = store::items(conn, row.id, first.unwrap_or(100).clamp(0, 10_000))?;
                object(
                    Record::new("RunQueueItemConnection").with("edges", move |_| {
                        let edges: Vec<Record<'b>> = items
                            .iter()
                            .map(|item| {
                                let item = item.clone();
                                Record::new("RunQueueItemEdge")
                                    .with("node", move |_| object(item_record(item.clone())))
                            })
                            .collect();
                        objects(edges)
                    }),
                )
            }
            "runQueueItem" => {
                let id: String = arg(info, "id")?;
                let item = match ids::decode(ITEM_KIND, &id) {
                    Some(id) => store::item(conn, row.id, id)?,
                    None => None,
                };
                nullable(item.map(item_record))
            }
            _ => Err(unsupported(info, "RunQueue")),
        }
    }
}

/// `entity.defaultResourceConfig(id)`.
pub fn default_resource_config<'a>(
    ctx: &'a Ctx<'a>,
    entity_id: i64,
    info: &ResolveInfo<'_>,
) -> Res<'a> {
    let id: String = arg(info, "id")?;
    let config = match ids::decode(CONFIG_KIND, &id) {
        Some(id) => store::resource_config(ctx.conn, entity_id, id)?,
        None => None,
    };
    nullable(config.map(|c| {
        // Template variables are stored as {"name": <JSON schema>, ...}.
        let variables: Vec<(String, Value)> = match c.template_variables {
            Some(Value::Object(map)) => map.into_iter().collect(),
            _ => Vec::new(),
        };
        Record::new("DefaultResourceConfig")
            .leaf("config", c.config)
            .leaf("resource", c.resource)
            .with("templateVariables", move |_| {
                let list: Vec<Record<'a>> = variables
                    .iter()
                    .map(|(name, schema)| {
                        Record::new("TemplateVariable")
                            .leaf("name", name)
                            .leaf("schema", schema.to_string())
                    })
                    .collect();
                objects(list)
            })
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateConfigInput {
    entity_name: String,
    resource: String,
    config: String,
    template_variables: Option<String>,
}

pub fn create_default_resource_config<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateConfigInput = arg(info, "input")?;
    let entity_id = ensure_entity(ctx.conn, &input.entity_name)?;
    let id = store::create_resource_config(
        ctx.conn,
        entity_id,
        &input.resource,
        &input.config,
        input.template_variables.as_deref(),
    )?;
    object(
        Record::new("CreateDefaultResourceConfigPayload")
            .leaf("defaultResourceConfigID", ids::encode(CONFIG_KIND, id))
            .leaf("success", true),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateQueueInput {
    entity_name: String,
    project_name: String,
    queue_name: String,
    access: String,
    prioritization_mode: Option<String>,
    #[serde(rename = "defaultResourceConfigID")]
    default_resource_config_id: Option<String>,
}

pub fn create_run_queue<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateQueueInput = arg(info, "input")?;
    let project_id = ensure_project(ctx.conn, &input.entity_name, &input.project_name)?;
    let config_id = input
        .default_resource_config_id
        .as_deref()
        .map(|id| decode(CONFIG_KIND, id))
        .transpose()?;
    if let Some(config_id) = config_id {
        let entity_id = entity_id(ctx, &input.entity_name)?;
        if store::resource_config(ctx.conn, entity_id, config_id)?.is_none() {
            return Err(field_error("default resource config not found"));
        }
    }
    let id = store::create_queue(
        ctx.conn,
        project_id,
        &NewQueue {
            name: &input.queue_name,
            access: &input.access,
            prioritization_mode: input.prioritization_mode.as_deref(),
            default_resource_config_id: config_id,
            external_links: None,
            created_by: viewer::DEFAULT_ENTITY,
        },
    )?;
    object(
        Record::new("CreateRunQueuePayload")
            .leaf("success", true)
            .leaf("queueID", ids::encode(QUEUE_KIND, id)),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertQueueInput {
    entity_name: String,
    project_name: String,
    queue_name: String,
    resource_type: String,
    resource_config: String,
    template_variables: Option<String>,
    prioritization_mode: Option<String>,
    external_links: Option<String>,
}

pub fn upsert_run_queue<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpsertQueueInput = arg(info, "input")?;
    let project_id = ensure_project(ctx.conn, &input.entity_name, &input.project_name)?;
    let entity_id = ensure_entity(ctx.conn, &input.entity_name)?;
    let config_id = store::create_resource_config(
        ctx.conn,
        entity_id,
        &input.resource_type,
        &input.resource_config,
        input.template_variables.as_deref(),
    )?;
    store::upsert_queue(
        ctx.conn,
        project_id,
        &NewQueue {
            name: &input.queue_name,
            access: "PROJECT",
            prioritization_mode: input.prioritization_mode.as_deref(),
            default_resource_config_id: Some(config_id),
            external_links: input.external_links.as_deref(),
            created_by: viewer::DEFAULT_ENTITY,
        },
    )?;
    object(
        Record::new("UpsertRunQueuePayload")
            .leaf("success", true)
            .leaves("configSchemaValidationErrors", Vec::<String>::new()),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushByNameInput {
    entity_name: String,
    project_name: String,
    queue_name: String,
    run_spec: String,
    priority: Option<i64>,
    template_variable_values: Option<String>,
}

pub fn push_by_name<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: PushByNameInput = arg(info, "input")?;
    let queue = require_queue(
        ctx,
        &input.entity_name,
        &input.project_name,
        &input.queue_name,
    )?;
    let entity_id = entity_id(ctx, &input.entity_name)?;
    let (id, spec) = store::push(
        ctx.conn,
        &queue,
        entity_id,
        &input.run_spec,
        input.priority,
        input.template_variable_values.as_deref(),
    )?;
    object(
        Record::new("PushToRunQueueByNamePayload")
            .leaf("runQueueItemId", ids::encode(ITEM_KIND, id))
            .leaf("runSpec", spec.to_string()),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushByIdInput {
    #[serde(rename = "queueID")]
    queue_id: String,
    run_spec: String,
    template_variable_values: Option<String>,
}

pub fn push_by_id<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: PushByIdInput = arg(info, "input")?;
    let queue = store::queue_by_id(ctx.conn, decode(QUEUE_KIND, &input.queue_id)?)?
        .ok_or_else(|| field_error("run queue not found"))?;
    let entity_id = project_by_id(ctx.conn, queue.project_id)?.entity_id;
    let (id, _) = store::push(
        ctx.conn,
        &queue,
        entity_id,
        &input.run_spec,
        None,
        input.template_variable_values.as_deref(),
    )?;
    object(Record::new("PushToRunQueuePayload").leaf("runQueueItemId", ids::encode(ITEM_KIND, id)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PopInput {
    entity_name: String,
    project_name: String,
    queue_name: String,
    launch_agent_id: Option<String>,
}

/// Null when the queue has nothing waiting.
pub fn pop<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: PopInput = arg(info, "input")?;
    let queue = require_queue(
        ctx,
        &input.entity_name,
        &input.project_name,
        &input.queue_name,
    )?;
    let agent_id = input
        .launch_agent_id
        .as_deref()
        .map(|id| decode(AGENT_KIND, id))
        .transpose()?;
    let popped = store::pop(ctx.conn, &queue, agent_id, ctx.tuning.queue_lease)?;
    nullable(popped.map(|(id, spec)| {
        Record::new("PopFromRunQueuePayload")
            .leaf("runQueueItemId", ids::encode(ITEM_KIND, id))
            .leaf("runSpec", spec)
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckInput {
    run_queue_item_id: String,
    run_name: String,
}

pub fn ack<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: AckInput = arg(info, "input")?;
    let ok = store::ack(
        ctx.conn,
        decode(ITEM_KIND, &input.run_queue_item_id)?,
        &input.run_name,
    )?;
    success("AckRunQueueItemPayload", ok)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportInput {
    run_queue_item_id: String,
    message: String,
    stage: String,
    file_paths: Option<Vec<String>>,
}

fn report_input(info: &ResolveInfo<'_>) -> Result<(i64, ReportInput), FieldError> {
    let input: ReportInput = arg(info, "input")?;
    Ok((decode(ITEM_KIND, &input.run_queue_item_id)?, input))
}

pub fn fail<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let (id, input) = report_input(info)?;
    let paths = input.file_paths.unwrap_or_default();
    let report = ItemReport {
        message: &input.message,
        stage: &input.stage,
        file_paths: &paths,
    };
    success(
        "FailRunQueueItemPayload",
        store::fail(ctx.conn, id, &report)?,
    )
}

pub fn warning<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let (id, input) = report_input(info)?;
    let paths = input.file_paths.unwrap_or_default();
    let report = ItemReport {
        message: &input.message,
        stage: &input.stage,
        file_paths: &paths,
    };
    success(
        "UpdateRunQueueItemWarningPayload",
        store::add_warning(ctx.conn, id, &report)?,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteItemInput {
    #[serde(rename = "queueID")]
    queue_id: String,
    run_queue_item_id: String,
}

pub fn delete_from_run_queue<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: DeleteItemInput = arg(info, "input")?;
    let ok = store::delete_item(
        ctx.conn,
        decode(QUEUE_KIND, &input.queue_id)?,
        decode(ITEM_KIND, &input.run_queue_item_id)?,
    )?;
    success("DeleteFromRunQueuePayload", ok)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQueuesInput {
    #[serde(rename = "queueIDs")]
    queue_ids: Vec<String>,
}

pub fn delete_run_queues<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: DeleteQueuesInput = arg(info, "input")?;
    let ids = input
        .queue_ids
        .iter()
        .map(|id| decode(QUEUE_KIND, id))
        .collect::<Result<Vec<_>, _>>()?;
    success(
        "DeleteRunQueuesPayload",
        store::delete_queues(ctx.conn, &ids)?,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAgentInput {
    entity_name: String,
    project_name: String,
    run_queues: Vec<String>,
    hostname: String,
    agent_config: Option<String>,
    version: Option<String>,
}

pub fn create_launch_agent<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateAgentInput = arg(info, "input")?;
    let project_id = ensure_project(ctx.conn, &input.entity_name, &input.project_name)?;
    for queue in &input.run_queues {
        let exists = store::queue_by_id(ctx.conn, decode(QUEUE_KIND, queue)?)?
            .is_some_and(|q| q.project_id == project_id);
        if !exists {
            return Err(field_error(format!(
                "run queue {queue} not found in this project"
            )));
        }
    }
    let id = store::create_agent(
        ctx.conn,
        project_id,
        &NewAgent {
            run_queues: &input.run_queues,
            hostname: &input.hostname,
            agent_config: input.agent_config.as_deref(),
            version: input.version.as_deref(),
        },
    )?;
    object(
        Record::new("CreateLaunchAgentPayload").leaf("launchAgentId", ids::encode(AGENT_KIND, id)),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateAgentInput {
    launch_agent_id: String,
    agent_status: Option<String>,
}

pub fn update_launch_agent<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpdateAgentInput = arg(info, "input")?;
    let ok = store::update_agent(
        ctx.conn,
        decode(AGENT_KIND, &input.launch_agent_id)?,
        input.agent_status.as_deref(),
    )?;
    success("UpdateLaunchAgentPayload", ok)
}

pub fn launch_agent<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let id: String = arg(info, "id")?;
    let agent = match ids::decode(AGENT_KIND, &id) {
        Some(id) => store::agent(ctx.conn, id)?,
        None => None,
    };
    nullable(agent.map(|a| {
        Record::new("LaunchAgent")
            .leaf("id", ids::encode(AGENT_KIND, a.id))
            .leaf("name", a.name)
            .leaves("runQueues", a.run_queues)
            .leaf("hostname", a.hostname)
            .leaf("agentStatus", a.status)
            // There is no UI here to ask an agent to stop; it stops when its operator stops it.
            .leaf("stopPolling", false)
            .leaf("heartbeatAt", wandb_time(&a.heartbeat_at))
    }))
}
