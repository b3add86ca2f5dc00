//! W&B client: everything mlwf says to a Weights & Biases server goes through here.
//!
//! - [`Client`] (from [`Settings`]): runs, reads and artifact downloads.
//! - [`Run`]: `log`, summary, console, system metrics, files, artifacts, alerts, `finish`.
//! - `launch`: W&B Launch queues, items and agents; runSpecs and job files.
//! - `graphql`: every GraphQL document sent, validated against the schema by tests.
//!
//! Internals: `transport` (HTTP, auth, retries), `filestream` (the background writer),
//! `files` (run files), `artifacts`, `reads`, `alerts`.

mod alerts;
mod artifacts;
mod automations;
mod client;
mod connection;
mod error;
mod files;
mod filestream;
pub mod graphql;
mod ids;
mod json;
pub mod launch;
mod reads;
mod run;
mod settings;
mod transport;

pub use alerts::{AlertLevel, DEFAULT_ALERT_WAIT};
pub use artifacts::{
    safe_artifact_name, ArtifactFile, ArtifactInfo, ArtifactRef, ArtifactSpec, DownloadedArtifact,
    LoggedArtifact, Manifest, ManifestEntry,
};
pub use automations::{Automation, AutomationSpec, WebhookIntegration};
pub use client::{Client, Viewer};
pub use error::{Error, Result};
pub use filestream::Stream;
pub use ids::{random_id, RUN_ID_LEN};
pub use json::Row;
pub use reads::{RunInfo, RunQuery, RunState};
pub use run::{hostname, Run, RunSpec};
pub use settings::{ApiKey, Resume, Settings, Tuning, DEFAULT_BASE_URL};
