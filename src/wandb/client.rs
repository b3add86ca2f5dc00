//! The entry point: a [`Client`] holds the settings and the HTTP transport; runs, reads and
//! artifacts hang off it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::connection::Connection;
use super::error::{Error, Result};
use super::graphql::VIEWER;
use super::settings::Settings;
use super::transport::Transport;

/// A W&B API client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    transport: Arc<Transport>,
}

/// The user the API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub id: String,
    /// Default entity for new runs (the user or a team).
    pub entity: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub teams: Vec<String>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self> {
        let transport = Arc::new(Transport::new(&settings)?);
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                transport,
            }),
        })
    }

    /// This client with `entity` and `project` as the defaults of references that name none;
    /// the connection is shared.
    pub fn with_defaults(&self, entity: &str, project: &str) -> Self {
        let mut settings = self.inner.settings.clone();
        settings.entity = Some(entity.to_owned());
        settings.project = Some(project.to_owned());
        Self {
            inner: Arc::new(Inner {
                settings,
                transport: self.inner.transport.clone(),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn transport(&self) -> &Arc<Transport> {
        &self.inner.transport
    }

    /// Who the API key belongs to; also a cheap way to check the key.
    pub async fn viewer(&self) -> Result<Viewer> {
        #[derive(Deserialize)]
        struct Data {
            viewer: Option<RawViewer>,
        }
        #[derive(Deserialize)]
        struct RawViewer {
            id: String,
            entity: Option<String>,
            username: Option<String>,
            email: Option<String>,
            teams: Option<Connection<Team>>,
        }
        #[derive(Deserialize)]
        struct Team {
            name: String,
        }

        let data: Data = self.transport().graphql(&VIEWER, json!({})).await?;
        let viewer = data
            .viewer
            .ok_or_else(|| Error::NotFound("the viewer of this API key".into()))?;
        Ok(Viewer {
            id: viewer.id,
            entity: viewer.entity,
            username: viewer.username,
            email: viewer.email,
            teams: viewer
                .teams
                .map(|t| t.nodes().map(|n| n.name).collect())
                .unwrap_or_default(),
        })
    }

    /// `entity` if given, else `WANDB_ENTITY`, else the API key's default entity.
    pub async fn resolve_entity(&self, entity: Option<&str>) -> Result<String> {
        if let Some(entity) = entity.or(self.settings().entity.as_deref()) {
            return Ok(entity.to_owned());
        }
        self.viewer().await?.entity.ok_or_else(|| {
            Error::Settings(
                "no entity given, WANDB_ENTITY unset, and the API key has no default entity".into(),
            )
        })
    }

    /// `project` if given, else `WANDB_PROJECT`.
    pub(crate) fn resolve_project(&self, project: Option<&str>) -> Result<String> {
        project
            .or(self.settings().project.as_deref())
            .map(str::to_owned)
            .ok_or_else(|| Error::Settings("no project given and WANDB_PROJECT unset".into()))
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.settings().base_url.as_str())
            .finish_non_exhaustive()
    }
}
