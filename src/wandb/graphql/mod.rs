//! Every GraphQL document the client sends, one `.graphql` file per operation.
//!
//! Operation names and shapes follow what the official `wandb` 0.31 SDK sends (see
//! `shared/reference/wandb-sdk-traffic.txt`), so a W&B server sees familiar requests.
//! `tests/wandb/schema.rs` validates every entry of [`ALL`] against the vendored schema.

/// A named GraphQL operation: the `operationName` sent with the request and its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub document: &'static str,
}

/// The fields of a run that [`crate::wandb::RunInfo`] is built from, shared by `Runs` and `Run`.
macro_rules! with_run_fields {
    ($file:literal) => {
        concat!(include_str!($file), include_str!("run_fields.graphql"))
    };
}

/// The fields of an automation that [`crate::wandb::Automation`] is built from.
macro_rules! with_automation_fields {
    ($file:literal) => {
        concat!(
            include_str!($file),
            include_str!("automation_fields.graphql")
        )
    };
}

pub const VIEWER: Operation = Operation {
    name: "Viewer",
    document: include_str!("viewer.graphql"),
};
pub const UPSERT_BUCKET: Operation = Operation {
    name: "UpsertBucket",
    document: include_str!("upsert_bucket.graphql"),
};
pub const RUN_RESUME_STATUS: Operation = Operation {
    name: "RunResumeStatus",
    document: include_str!("run_resume_status.graphql"),
};
pub const CREATE_RUN_FILES: Operation = Operation {
    name: "CreateRunFiles",
    document: include_str!("create_run_files.graphql"),
};
pub const NOTIFY_SCRIPTABLE_RUN_ALERT: Operation = Operation {
    name: "NotifyScriptableRunAlert",
    document: include_str!("notify_scriptable_run_alert.graphql"),
};
pub const CREATE_ARTIFACT: Operation = Operation {
    name: "CreateArtifact",
    document: include_str!("create_artifact.graphql"),
};
pub const CREATE_ARTIFACT_MANIFEST: Operation = Operation {
    name: "CreateArtifactManifest",
    document: include_str!("create_artifact_manifest.graphql"),
};
pub const CREATE_ARTIFACT_FILES: Operation = Operation {
    name: "CreateArtifactFiles",
    document: include_str!("create_artifact_files.graphql"),
};
pub const COMMIT_ARTIFACT: Operation = Operation {
    name: "CommitArtifact",
    document: include_str!("commit_artifact.graphql"),
};
pub const USE_ARTIFACT: Operation = Operation {
    name: "UseArtifact",
    document: include_str!("use_artifact.graphql"),
};
pub const ARTIFACT_MEMBERSHIP_BY_NAME: Operation = Operation {
    name: "ArtifactMembershipByName",
    document: include_str!("artifact_membership_by_name.graphql"),
};
pub const FETCH_ARTIFACT_MANIFEST: Operation = Operation {
    name: "FetchArtifactManifest",
    document: include_str!("fetch_artifact_manifest.graphql"),
};
pub const ARTIFACT_FILE_URLS: Operation = Operation {
    name: "ArtifactFileURLs",
    document: include_str!("artifact_file_urls.graphql"),
};
pub const RUNS: Operation = Operation {
    name: "Runs",
    document: with_run_fields!("runs.graphql"),
};
pub const RUN: Operation = Operation {
    name: "Run",
    document: with_run_fields!("run.graphql"),
};
pub const RUN_HISTORY_KEYS: Operation = Operation {
    name: "RunHistoryKeys",
    document: include_str!("run_history_keys.graphql"),
};
pub const HISTORY_PAGE: Operation = Operation {
    name: "HistoryPage",
    document: include_str!("history_page.graphql"),
};
pub const RUN_FILES: Operation = Operation {
    name: "RunFiles",
    document: include_str!("run_files.graphql"),
};
pub const RUN_CONSOLE_LOG_TAIL: Operation = Operation {
    name: "RunConsoleLogTail",
    document: include_str!("run_console_log_tail.graphql"),
};
pub const UPSERT_MODEL: Operation = Operation {
    name: "UpsertModel",
    document: include_str!("upsert_model.graphql"),
};
pub const PROJECT_ID: Operation = Operation {
    name: "ProjectId",
    document: include_str!("project_id.graphql"),
};
pub const INTEGRATIONS_BY_ENTITY: Operation = Operation {
    name: "IntegrationsByEntity",
    document: include_str!("integrations_by_entity.graphql"),
};
pub const CREATE_GENERIC_WEBHOOK_INTEGRATION: Operation = Operation {
    name: "CreateGenericWebhookIntegration",
    document: include_str!("create_generic_webhook_integration.graphql"),
};
pub const GET_ENTITY_AUTOMATIONS: Operation = Operation {
    name: "GetEntityAutomations",
    document: with_automation_fields!("get_entity_automations.graphql"),
};
pub const CREATE_AUTOMATION: Operation = Operation {
    name: "CreateAutomation",
    document: with_automation_fields!("create_automation.graphql"),
};
pub const UPDATE_AUTOMATION: Operation = Operation {
    name: "UpdateAutomation",
    document: with_automation_fields!("update_automation.graphql"),
};
pub const DELETE_AUTOMATION: Operation = Operation {
    name: "DeleteAutomation",
    document: include_str!("delete_automation.graphql"),
};

/// Every operation the client can send.
// W&B Launch (queues, items, agents) and run control, as the official agent sends them.
pub const PROJECT_RUN_QUEUES: Operation = Operation {
    name: "ProjectRunQueues",
    document: include_str!("project_run_queues.graphql"),
};
pub const GET_RUN_QUEUE_ITEMS: Operation = Operation {
    name: "GetRunQueueItems",
    document: include_str!("get_run_queue_items.graphql"),
};
pub const GET_RUN_QUEUE_ITEM: Operation = Operation {
    name: "GetRunQueueItem",
    document: include_str!("get_run_queue_item.graphql"),
};
pub const CREATE_DEFAULT_RESOURCE_CONFIG: Operation = Operation {
    name: "createDefaultResourceConfig",
    document: include_str!("create_default_resource_config.graphql"),
};
pub const CREATE_RUN_QUEUE: Operation = Operation {
    name: "createRunQueue",
    document: include_str!("create_run_queue.graphql"),
};
pub const PUSH_TO_RUN_QUEUE_BY_NAME: Operation = Operation {
    name: "pushToRunQueueByName",
    document: include_str!("push_to_run_queue_by_name.graphql"),
};
pub const POP_FROM_RUN_QUEUE: Operation = Operation {
    name: "popFromRunQueue",
    document: include_str!("pop_from_run_queue.graphql"),
};
pub const ACK_RUN_QUEUE_ITEM: Operation = Operation {
    name: "ackRunQueueItem",
    document: include_str!("ack_run_queue_item.graphql"),
};
pub const FAIL_RUN_QUEUE_ITEM: Operation = Operation {
    name: "failRunQueueItem",
    document: include_str!("fail_run_queue_item.graphql"),
};
pub const UPDATE_RUN_QUEUE_ITEM_WARNING: Operation = Operation {
    name: "updateRunQueueItemWarning",
    document: include_str!("update_run_queue_item_warning.graphql"),
};
pub const CREATE_LAUNCH_AGENT: Operation = Operation {
    name: "createLaunchAgent",
    document: include_str!("create_launch_agent.graphql"),
};
pub const UPDATE_LAUNCH_AGENT: Operation = Operation {
    name: "updateLaunchAgent",
    document: include_str!("update_launch_agent.graphql"),
};
pub const LAUNCH_AGENT: Operation = Operation {
    name: "LaunchAgent",
    document: include_str!("launch_agent.graphql"),
};
pub const RUN_STOPPED_STATUS: Operation = Operation {
    name: "RunStoppedStatus",
    document: include_str!("run_stopped_status.graphql"),
};
pub const DELETE_FROM_RUN_QUEUE: Operation = Operation {
    name: "deleteFromRunQueue",
    document: include_str!("delete_from_run_queue.graphql"),
};
pub const DELETE_RUN: Operation = Operation {
    name: "DeleteRun",
    document: include_str!("delete_run.graphql"),
};
pub const PROJECT_ARTIFACTS: Operation = Operation {
    name: "ProjectArtifacts",
    document: include_str!("project_artifacts.graphql"),
};
pub const STOP_RUN: Operation = Operation {
    name: "StopRun",
    document: include_str!("stop_run.graphql"),
};
pub const UPDATE_RUN_STATE: Operation = Operation {
    name: "UpdateRunState",
    document: include_str!("update_run_state.graphql"),
};

pub const DELETE_ARTIFACT: Operation = Operation {
    name: "DeleteArtifact",
    document: include_str!("delete_artifact.graphql"),
};
pub const ADD_ALIASES: Operation = Operation {
    name: "AddAliases",
    document: include_str!("add_aliases.graphql"),
};

pub const ALL: &[Operation] = &[
    VIEWER,
    UPSERT_BUCKET,
    RUN_RESUME_STATUS,
    CREATE_RUN_FILES,
    NOTIFY_SCRIPTABLE_RUN_ALERT,
    CREATE_ARTIFACT,
    CREATE_ARTIFACT_MANIFEST,
    CREATE_ARTIFACT_FILES,
    COMMIT_ARTIFACT,
    USE_ARTIFACT,
    ARTIFACT_MEMBERSHIP_BY_NAME,
    FETCH_ARTIFACT_MANIFEST,
    ARTIFACT_FILE_URLS,
    RUNS,
    RUN,
    RUN_HISTORY_KEYS,
    HISTORY_PAGE,
    RUN_FILES,
    RUN_CONSOLE_LOG_TAIL,
    PROJECT_RUN_QUEUES,
    GET_RUN_QUEUE_ITEMS,
    GET_RUN_QUEUE_ITEM,
    CREATE_DEFAULT_RESOURCE_CONFIG,
    CREATE_RUN_QUEUE,
    PUSH_TO_RUN_QUEUE_BY_NAME,
    POP_FROM_RUN_QUEUE,
    ACK_RUN_QUEUE_ITEM,
    FAIL_RUN_QUEUE_ITEM,
    UPDATE_RUN_QUEUE_ITEM_WARNING,
    CREATE_LAUNCH_AGENT,
    UPDATE_LAUNCH_AGENT,
    LAUNCH_AGENT,
    RUN_STOPPED_STATUS,
    DELETE_FROM_RUN_QUEUE,
    DELETE_RUN,
    STOP_RUN,
    PROJECT_ARTIFACTS,
    UPDATE_RUN_STATE,
    DELETE_ARTIFACT,
    ADD_ALIASES,
    UPSERT_MODEL,
    PROJECT_ID,
    INTEGRATIONS_BY_ENTITY,
    CREATE_GENERIC_WEBHOOK_INTEGRATION,
    GET_ENTITY_AUTOMATIONS,
    CREATE_AUTOMATION,
    UPDATE_AUTOMATION,
    DELETE_AUTOMATION,
];
