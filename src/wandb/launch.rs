//! W&B Launch, the client side: run queues and their items, launch agents, and the two
//! documents a queued job is made of (the runSpec pushed to a queue and the `wandb-job.json`
//! of a job artifact), as the official SDK writes and reads them
//! (`shared/reference/wandb-launch-observed.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::client::Client;
use super::connection::Connection;
use super::error::{Error, Result};
use super::graphql::{
    Operation, ACK_RUN_QUEUE_ITEM, CREATE_DEFAULT_RESOURCE_CONFIG, CREATE_LAUNCH_AGENT,
    CREATE_RUN_QUEUE, DELETE_FROM_RUN_QUEUE, DELETE_RUN, FAIL_RUN_QUEUE_ITEM, GET_RUN_QUEUE_ITEM,
    GET_RUN_QUEUE_ITEMS, LAUNCH_AGENT, POP_FROM_RUN_QUEUE, PROJECT_RUN_QUEUES,
    PUSH_TO_RUN_QUEUE_BY_NAME, RUN_STOPPED_STATUS, STOP_RUN, UPDATE_LAUNCH_AGENT,
    UPDATE_RUN_QUEUE_ITEM_WARNING, UPDATE_RUN_STATE,
};

/// The project every entity's run queues and launch agents live in.
pub const QUEUE_PROJECT: &str = "model-registry";

/// The artifact type of a job.
pub const JOB_TYPE: &str = "job";
/// The files of a job artifact; the official agent needs both (the second may be empty).
pub const JOB_FILE: &str = "wandb-job.json";
pub const REQUIREMENTS_FILE: &str = "requirements.frozen.txt";

/// Item states as the server reports them.
pub const CLAIMED: &str = "CLAIMED";
pub const FAILED: &str = "FAILED";

/// Agent statuses (`updateLaunchAgent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Polling,
    Running,
    Killed,
}

impl AgentStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "POLLING",
            Self::Running => "RUNNING",
            Self::Killed => "KILLED",
        }
    }
}

/// Where in its life an item failed (`failRunQueueItem.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetching the job or the code.
    Agent,
    Build,
    /// The job's own process.
    Run,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Build => "build",
            Self::Run => "run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    pub id: String,
    pub name: String,
    pub created_by: Option<String>,
    pub access: Option<String>,
    #[serde(rename = "defaultResourceConfigID")]
    pub default_resource_config_id: Option<String>,
    pub prioritization_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemInfo {
    pub id: String,
    pub state: Option<String>,
    /// The run id the agent acked with; `None` until claimed.
    pub associated_run_id: Option<String>,
}

/// What mlwf's server also keeps of an item (`GET /mlwf/v1/run-queue-items/{id}`): W&B's
/// GraphQL schema exposes neither an item's age nor why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDetails {
    pub created_at: String,
    pub error: Option<ItemReport>,
    #[serde(default)]
    pub warnings: Vec<ItemReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReport {
    pub message: String,
    pub stage: String,
    #[serde(default)]
    pub file_paths: Vec<String>,
}

/// A launch agent as mlwf's server lists them (`GET /mlwf/v1/launch-agents/…`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    pub hostname: String,
    /// `POLLING`, `RUNNING` or `KILLED`.
    pub status: String,
    pub heartbeat_at: String,
    pub version: Option<String>,
}

/// A popped item: its id and the spec as pushed (merged with the queue's defaults).
#[derive(Debug, Clone)]
pub struct PoppedItem {
    pub id: String,
    pub spec: LaunchSpec,
}

/// A runSpec, read leniently: every key the official CLI writes is understood, unknown ones
/// are ignored, and it may arrive as an object or as a JSON string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub resource_args: Value,
    /// `{"docker_image": …}`: the image a `local-container` job runs in.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub docker: Value,
    #[serde(default)]
    pub overrides: Overrides,
    /// How many times the item was requeued to resume its run (the official agent's key).
    #[serde(default, rename = "_resume_count", skip_serializing_if = "is_zero")]
    pub resume_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub run_config: Map<String, Value>,
    /// Replaces the job's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    /// Appended to the entrypoint.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub artifacts: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub files: Map<String, Value>,
}

impl LaunchSpec {
    /// A spec from the JSON the server returned: an object, or a string holding one.
    pub fn from_value(value: Value) -> Result<Self> {
        let value = match value {
            Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| Error::InvalidInput(format!("the runSpec is not JSON: {e}")))?,
            other => other,
        };
        // `null` where the CLI had nothing to say reads as absent.
        let value = match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            _ => {
                return Err(Error::InvalidInput(
                    "the runSpec is not a JSON object".into(),
                ))
            }
        };
        serde_json::from_value(value)
            .map_err(|e| Error::InvalidInput(format!("the runSpec is malformed: {e}")))
    }

    /// The runner the item asks for; `local-process` when it names none.
    pub fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or("local-process")
    }

    /// The resource args of the item's runner.
    pub fn runner_args(&self) -> &Value {
        self.resource_args
            .get(self.resource())
            .unwrap_or(&Value::Null)
    }

    /// `docker.docker_image`, when the item names an image.
    pub fn docker_image(&self) -> Option<&str> {
        self.docker
            .get("docker_image")
            .and_then(Value::as_str)
            .filter(|image| !image.is_empty())
    }

    /// How many GPUs the job asks for: `resource_args.<resource>.gpus`, else one.
    pub fn gpus(&self) -> usize {
        self.runner_args()
            .get("gpus")
            .and_then(|gpus| match gpus {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// `wandb-job.json`: where a job's code is and how to start it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    #[serde(rename = "_version", default = "job_version")]
    pub version: String,
    pub source_type: String,
    pub source: JobSource,
    pub input_types: Value,
    pub output_types: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

fn job_version() -> String {
    "v0".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// A code job's artifact (`wandb-artifact://_id/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// An image job's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub notebook: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    pub remote: String,
    pub commit: String,
}

impl JobFile {
    /// A git job at `commit` of `remote`, its inputs typed as the keys of `config`.
    pub fn git(
        remote: &str,
        commit: &str,
        entrypoint: Vec<String>,
        config: &Map<String, Value>,
    ) -> Self {
        let type_map: BTreeMap<&String, Value> = config
            .iter()
            .map(|(key, value)| (key, json!({"wb_type": wb_type(value)})))
            .collect();
        Self {
            version: job_version(),
            source_type: "repo".into(),
            source: JobSource {
                git: Some(GitSource {
                    remote: remote.into(),
                    commit: commit.into(),
                }),
                artifact: None,
                image: None,
                entrypoint,
                notebook: false,
            },
            input_types: json!({"wb_type": "typedDict", "params": {"type_map": type_map}}),
            output_types: json!({"wb_type": "typedDict", "params": {"type_map": {}}}),
            runtime: None,
        }
    }
}

/// The W&B type name of a config value, as the SDK's job builder writes it.
fn wb_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        // Lists and dicts need their element types spelled out; `any` is always valid.
        Value::Array(_) | Value::Object(_) => "any",
        Value::Null => "none",
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Success {
    success: Option<bool>,
}

/// `{ "<field>": { ... } }`, the shape of every mutation's answer.
fn payload<T: for<'de> Deserialize<'de>>(
    client: &Client,
    op: &Operation,
    mut data: Value,
    field: &str,
) -> Result<Option<T>> {
    let value = data.get_mut(field).map(Value::take).unwrap_or(Value::Null);
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| client.transport().unexpected(op, e.to_string()))
}

impl Client {
    pub(super) async fn mutate<T: for<'de> Deserialize<'de>>(
        &self,
        op: &Operation,
        field: &str,
        variables: Value,
    ) -> Result<Option<T>> {
        let data: Value = self.transport().graphql(op, variables).await?;
        payload(self, op, data, field)
    }

    async fn succeed(&self, op: &Operation, field: &str, variables: Value) -> Result<bool> {
        let answer: Option<Success> = self.mutate(op, field, variables).await?;
        Ok(answer.and_then(|s| s.success).unwrap_or(false))
    }

    /// The run queues of `entity`.
    pub async fn run_queues(&self, entity: &str) -> Result<Vec<QueueInfo>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            project: Option<Project>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            run_queues: Option<Vec<QueueInfo>>,
        }
        let data: Data = self
            .transport()
            .graphql(
                &PROJECT_RUN_QUEUES,
                json!({"entity": entity, "projectName": QUEUE_PROJECT}),
            )
            .await?;
        Ok(data.project.and_then(|p| p.run_queues).unwrap_or_default())
    }

    /// The queue `name` of `entity`, if it exists.
    pub async fn run_queue(&self, entity: &str, name: &str) -> Result<Option<QueueInfo>> {
        Ok(self
            .run_queues(entity)
            .await?
            .into_iter()
            .find(|q| q.name == name))
    }

    /// Creates queue `name` whose items run on `resource` with `resource_args` unless an item
    /// says otherwise; returns its id.
    pub async fn create_run_queue(
        &self,
        entity: &str,
        name: &str,
        resource: &str,
        resource_args: Value,
    ) -> Result<String> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "defaultResourceConfigID")]
            id: String,
        }
        #[derive(Deserialize)]
        struct Queue {
            #[serde(rename = "queueID")]
            queue_id: Option<String>,
        }
        let config = json!({"resource_args": {resource: resource_args}}).to_string();
        let created: Option<Config> = self
            .mutate(
                &CREATE_DEFAULT_RESOURCE_CONFIG,
                "createDefaultResourceConfig",
                json!({"entityName": entity, "resource": resource, "config": config}),
            )
            .await?;
        let config = created.ok_or_else(|| {
            self.transport()
                .unexpected(&CREATE_DEFAULT_RESOURCE_CONFIG, "no resource config id")
        })?;
        let queue: Option<Queue> = self
            .mutate(
                &CREATE_RUN_QUEUE,
                "createRunQueue",
                json!({
                    "entityName": entity,
                    "projectName": QUEUE_PROJECT,
                    "queueName": name,
                    "access": "PROJECT",
                    "prioritizationMode": "V0",
                    "defaultResourceConfigID": config.id,
                }),
            )
            .await?;
        queue.and_then(|q| q.queue_id).ok_or_else(|| {
            self.transport()
                .unexpected(&CREATE_RUN_QUEUE, format!("queue {name:?} was not created"))
        })
    }

    /// Pushes `spec` to queue `queue`; returns the item id.
    pub async fn push_to_queue(
        &self,
        entity: &str,
        queue: &str,
        spec: &LaunchSpec,
        priority: Option<u8>,
    ) -> Result<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Pushed {
            run_queue_item_id: Option<String>,
        }
        let spec = serde_json::to_string(spec)
            .map_err(|e| Error::InvalidInput(format!("cannot encode the runSpec: {e}")))?;
        let pushed: Option<Pushed> = self
            .mutate(
                &PUSH_TO_RUN_QUEUE_BY_NAME,
                "pushToRunQueueByName",
                json!({
                    "entityName": entity,
                    "projectName": QUEUE_PROJECT,
                    "queueName": queue,
                    "runSpec": spec,
                    "priority": priority,
                }),
            )
            .await?;
        pushed
            .and_then(|p| p.run_queue_item_id)
            .ok_or_else(|| Error::NotFound(format!("run queue {queue:?} of entity {entity:?}")))
    }

    /// Claims the next item of `queue` for `agent`, if one waits.
    pub async fn pop_from_queue(
        &self,
        entity: &str,
        queue: &str,
        agent: Option<&str>,
    ) -> Result<Option<PoppedItem>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Popped {
            run_queue_item_id: Option<String>,
            #[serde(default)]
            run_spec: Value,
        }
        let popped: Option<Popped> = self
            .mutate(
                &POP_FROM_RUN_QUEUE,
                "popFromRunQueue",
                json!({
                    "entity": entity,
                    "project": QUEUE_PROJECT,
                    "queueName": queue,
                    "launchAgentId": agent,
                }),
            )
            .await?;
        let Some(Popped {
            run_queue_item_id: Some(id),
            run_spec,
        }) = popped
        else {
            return Ok(None);
        };
        Ok(Some(PoppedItem {
            spec: LaunchSpec::from_value(run_spec)?,
            id,
        }))
    }

    /// Claims item `item` for run `run_id`; false when another agent claimed it first.
    pub async fn ack_item(&self, item: &str, run_id: &str) -> Result<bool> {
        self.succeed(
            &ACK_RUN_QUEUE_ITEM,
            "ackRunQueueItem",
            json!({"itemId": item, "runId": run_id}),
        )
        .await
    }

    pub async fn fail_item(&self, item: &str, stage: Stage, message: &str) -> Result<bool> {
        self.succeed(
            &FAIL_RUN_QUEUE_ITEM,
            "failRunQueueItem",
            json!({"runQueueItemId": item, "message": message, "stage": stage.as_str(), "filePaths": []}),
        )
        .await
    }

    pub async fn warn_item(&self, item: &str, stage: &str, message: &str) -> Result<bool> {
        self.succeed(
            &UPDATE_RUN_QUEUE_ITEM_WARNING,
            "updateRunQueueItemWarning",
            json!({"runQueueItemId": item, "message": message, "stage": stage, "filePaths": []}),
        )
        .await
    }

    /// Removes a waiting item from its queue.
    pub async fn delete_item(&self, queue_id: &str, item: &str) -> Result<bool> {
        self.succeed(
            &DELETE_FROM_RUN_QUEUE,
            "deleteFromRunQueue",
            json!({"queueID": queue_id, "runQueueItemId": item}),
        )
        .await
    }

    /// The items of `queue`, oldest first (the first hundred, as the SDK reads them).
    pub async fn queue_items(&self, entity: &str, queue: &str) -> Result<Vec<ItemInfo>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<Project>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            run_queue: Option<Queue>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Queue {
            run_queue_items: Option<Connection<ItemInfo>>,
        }
        let data: Data = self
            .transport()
            .graphql(
                &GET_RUN_QUEUE_ITEMS,
                json!({"entityName": entity, "projectName": QUEUE_PROJECT, "runQueue": queue}),
            )
            .await?;
        let queue = data
            .project
            .and_then(|p| p.run_queue)
            .ok_or_else(|| Error::NotFound(format!("run queue {queue:?} of entity {entity:?}")))?;
        Ok(queue
            .run_queue_items
            .map(|items| items.nodes().collect())
            .unwrap_or_default())
    }

    /// Item `item` of `queue`.
    pub async fn queue_item(
        &self,
        entity: &str,
        queue: &str,
        item: &str,
    ) -> Result<Option<ItemInfo>> {
        let data: Value = self
            .transport()
            .graphql(
                &GET_RUN_QUEUE_ITEM,
                json!({"entityName": entity, "projectName": QUEUE_PROJECT, "runQueue": queue, "itemId": item}),
            )
            .await?;
        let node = data
            .pointer("/project/runQueue/runQueueItem")
            .cloned()
            .unwrap_or(Value::Null);
        if node.is_null() {
            return Ok(None);
        }
        serde_json::from_value(node).map(Some).map_err(|e| {
            self.transport()
                .unexpected(&GET_RUN_QUEUE_ITEM, e.to_string())
        })
    }

    /// The age and failure of an item, where the server keeps them (mlwf's does; W&B's GraphQL
    /// has no such field, so there it is `None`).
    pub async fn item_details(&self, item: &str) -> Result<Option<ItemDetails>> {
        self.mlwf_read("run queue item details", &["run-queue-items", item])
            .await
    }

    /// The entity's launch agents, newest heartbeat first, where the server lists them (mlwf's
    /// does; W&B's GraphQL reads agents only by id, so there it is `None`).
    pub async fn launch_agents(&self, entity: &str) -> Result<Option<Vec<AgentInfo>>> {
        self.mlwf_read("launch agents", &["launch-agents", entity, QUEUE_PROJECT])
            .await
    }

    /// `GET /mlwf/v1/<segments>`, a read only mlwf's server answers: `None` from a server that
    /// has no such route (W&B) or an answer of another shape.
    pub(super) async fn mlwf_read<T: for<'de> Deserialize<'de>>(
        &self,
        op: &str,
        segments: &[&str],
    ) -> Result<Option<T>> {
        let path: Vec<&str> = ["mlwf", "v1"].iter().chain(segments).copied().collect();
        let url = self.transport().endpoint(&path);
        match self.transport().get_bytes(op, &url).await {
            Ok(body) => Ok(serde_json::from_slice(&body).ok()),
            Err(Error::Http { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Registers a launch agent polling `queue_ids`; returns its id.
    pub async fn create_launch_agent(
        &self,
        entity: &str,
        queue_ids: &[String],
        hostname: &str,
        config: &Value,
        version: &str,
    ) -> Result<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            launch_agent_id: Option<String>,
        }
        let created: Option<Created> = self
            .mutate(
                &CREATE_LAUNCH_AGENT,
                "createLaunchAgent",
                json!({
                    "entity": entity,
                    "project": QUEUE_PROJECT,
                    "queues": queue_ids,
                    "hostname": hostname,
                    "agentConfig": config.to_string(),
                    "version": version,
                }),
            )
            .await?;
        created.and_then(|c| c.launch_agent_id).ok_or_else(|| {
            self.transport()
                .unexpected(&CREATE_LAUNCH_AGENT, "no launch agent id")
        })
    }

    /// Records the agent's status; also its heartbeat.
    pub async fn update_launch_agent(&self, agent: &str, status: AgentStatus) -> Result<bool> {
        self.succeed(
            &UPDATE_LAUNCH_AGENT,
            "updateLaunchAgent",
            json!({"agentId": agent, "agentStatus": status.as_str()}),
        )
        .await
    }

    /// Whether the W&B UI asked the agent to stop polling.
    pub async fn agent_stop_requested(&self, agent: &str) -> Result<bool> {
        let data: Value = self
            .transport()
            .graphql(&LAUNCH_AGENT, json!({"agentId": agent}))
            .await?;
        Ok(data
            .pointer("/launchAgent/stopPolling")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Whether someone pressed Stop on run `run_id` (false for a run that does not exist yet).
    pub async fn run_stop_requested(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
    ) -> Result<bool> {
        let data: Value = self
            .transport()
            .graphql(
                &RUN_STOPPED_STATUS,
                json!({"entityName": entity, "projectName": project, "runId": run_id}),
            )
            .await?;
        Ok(data
            .pointer("/project/run/stopped")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Sets a run's stop flag (by its storage id), as the UI's Stop button does: the trainer
    /// and the agents poll it.
    pub async fn stop_run(&self, storage_id: &str) -> Result<bool> {
        self.succeed(&STOP_RUN, "stopRun", json!({ "id": storage_id }))
            .await
    }

    /// Deletes a run (by its storage id), keeping the artifacts it logged unless asked.
    pub async fn delete_run(&self, storage_id: &str, delete_artifacts: bool) -> Result<()> {
        let _: Option<Value> = self
            .mutate(
                &DELETE_RUN,
                "deleteRun",
                json!({"id": storage_id, "deleteArtifacts": delete_artifacts}),
            )
            .await?;
        Ok(())
    }

    /// Sets a run's state (by its storage id), e.g. `failed` for a run whose process died
    /// without saying so.
    pub async fn set_run_state(&self, storage_id: &str, state: &str) -> Result<bool> {
        self.succeed(
            &UPDATE_RUN_STATE,
            "updateRunState",
            json!({"input": {"id": storage_id, "state": state}}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_from_the_official_cli_read_as_objects_or_strings() {
        let pushed = json!({"overrides": {"run_config": {"lr": 0.5}, "args": ["--flag", "v"],
                            "entry_point": ["python", "train.py"]},
                            "job": "local/proj/job-git:latest", "entity": "local", "project": "proj",
                            "name": "cfg-run", "docker": {}, "resource": null, "git": {}});
        let spec = LaunchSpec::from_value(pushed.clone()).unwrap();
        assert_eq!(
            spec,
            LaunchSpec::from_value(Value::String(pushed.to_string())).unwrap()
        );
        assert_eq!(spec.job.as_deref(), Some("local/proj/job-git:latest"));
        assert_eq!(spec.overrides.run_config["lr"], json!(0.5));
        assert_eq!(spec.overrides.args, ["--flag", "v"]);
        assert_eq!(
            spec.overrides.entry_point.as_deref(),
            Some(&["python".to_owned(), "train.py".to_owned()][..])
        );
        assert_eq!(spec.resource, None);
        assert!(LaunchSpec::from_value(json!([1])).is_err());
        assert!(LaunchSpec::from_value(json!("{not json")).is_err());
    }

    #[test]
    fn a_job_asks_for_one_gpu_unless_its_resource_args_say() {
        let spec = LaunchSpec::from_value(json!({"resource": "local-process",
            "resource_args": {"local-process": {"gpus": "2"}}}))
        .unwrap();
        assert_eq!(spec.gpus(), 2);
        assert_eq!(LaunchSpec::default().gpus(), 1);
    }

    #[test]
    fn git_jobs_carry_what_the_official_agent_requires() {
        let config = json!({"lr": 0.5, "branch": "feat-x"});
        let job = JobFile::git(
            "git@h:r.git",
            "abc",
            vec!["mlwf".into(), "train".into()],
            config.as_object().unwrap(),
        );
        let text = serde_json::to_value(&job).unwrap();
        assert_eq!(text["source"]["git"]["commit"], "abc");
        assert_eq!(
            text["input_types"]["params"]["type_map"]["lr"]["wb_type"],
            "number"
        );
        assert_eq!(text["output_types"]["wb_type"], "typedDict");
        assert_eq!(serde_json::from_value::<JobFile>(text).unwrap(), job);
    }
}
