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
/// Every operation the client can send.
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
];
