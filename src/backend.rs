//! Chooses where runs live: a configured W&B server, or the embedded local store.
//!
//! With `WANDB_API_KEY` or `WANDB_BASE_URL` set, mlwf talks to that server like the official
//! SDK does. Otherwise it starts the local W&B-compatible server in-process, on a loopback port
//! with a key made for this process, over a store in `.mlwf/` — so the same client code runs
//! with no account and no separate process.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::BackendArgs;
use crate::server::{self, RunningServer, ServerOptions};
use crate::wandb::{ApiKey, Client, RetryPolicy, Settings};

/// The embedded store's folder name, at the root of the user's project.
pub const STORE_DIR: &str = ".mlwf";

#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub entity: Option<String>,
    pub project: String,
    pub store: Option<PathBuf>,
}

impl From<BackendArgs> for BackendOptions {
    fn from(args: BackendArgs) -> Self {
        Self {
            entity: args.entity,
            project: args.project,
            store: args.store,
        }
    }
}

/// Which backend a [`Connection`] uses, for the one line that tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Remote { base_url: String },
    Embedded { store: PathBuf },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Remote { base_url } => write!(f, "W&B server {base_url}"),
            Backend::Embedded { store } => write!(
                f,
                "embedded local store {} (no W&B account needed; set WANDB_API_KEY to use W&B)",
                store.display()
            ),
        }
    }
}

/// A client bound to an entity and project, keeping the embedded server alive while in use.
pub struct Connection {
    pub client: Client,
    pub entity: String,
    pub project: String,
    pub backend: Backend,
    embedded: Option<RunningServer>,
}

impl Connection {
    /// Stops the embedded server, if any, after its in-flight requests.
    pub async fn close(self) {
        if let Some(server) = self.embedded {
            server.shutdown().await;
        }
    }
}

/// What a connection is for, which decides how long it waits out an unreachable server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A command-line read: give up after about half a minute.
    Read,
    /// A training run: the official client's patience, since giving up loses the run's data.
    Training,
}

/// Connects for a command-line read (see [`connect_for`]).
pub async fn connect(options: &BackendOptions) -> anyhow::Result<Connection> {
    connect_for(options, Purpose::Read).await
}

/// Connects as the environment says and prints which backend is in use to stderr.
pub async fn connect_for(options: &BackendOptions, purpose: Purpose) -> anyhow::Result<Connection> {
    let env = Settings::from_env().context("reading the WANDB_* environment")?;
    let remote =
        std::env::var_os("WANDB_API_KEY").is_some() || std::env::var_os("WANDB_BASE_URL").is_some();
    let connection = if remote {
        connect_remote(env, options, purpose).await?
    } else {
        connect_embedded(env, options).await?
    };
    eprintln!("mlwf: using {}", connection.backend);
    Ok(connection)
}

/// Command-line reads give up on an unreachable server after about half a minute, not after the
/// official client's quarter of an hour (which suits a training run that must not lose data).
fn interactive_retry() -> RetryPolicy {
    RetryPolicy::new(6, Duration::from_secs(1), Duration::from_secs(10))
        .with_attempt_timeout(Duration::from_secs(30))
}

async fn connect_remote(
    mut settings: Settings,
    options: &BackendOptions,
    purpose: Purpose,
) -> anyhow::Result<Connection> {
    if purpose == Purpose::Read {
        settings.tuning.graphql_retry = interactive_retry();
    }
    let base_url = settings.base_url.to_string();
    if settings.api_key.is_none() {
        bail!(
            "WANDB_BASE_URL is set to {base_url} but WANDB_API_KEY is not: set the key, \
             or unset WANDB_BASE_URL to use the embedded local store"
        );
    }
    let client = Client::new(settings).context("configuring the W&B client")?;
    bind(client, options, Backend::Remote { base_url }, None).await
}

async fn connect_embedded(env: Settings, options: &BackendOptions) -> anyhow::Result<Connection> {
    let store = match &options.store {
        Some(dir) => dir.clone(),
        None => project_store_dir()?,
    };
    // A key for this process alone: only it talks to its embedded server.
    let key = server::generate_key();
    let server = server::start(
        ServerOptions {
            data_dir: store.join("server"),
            api_keys: vec![key.clone()],
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .with_context(|| format!("starting the embedded store in {}", store.display()))?;
    // Run defaults from the environment (WANDB_RUN_ID, WANDB_TAGS, ...) still apply.
    let mut settings = env;
    settings.base_url = server
        .base_url()
        .parse()
        .context("the embedded server's URL")?;
    settings.api_key = Some(ApiKey::new(key));
    let client = Client::new(settings)?;
    bind(client, options, Backend::Embedded { store }, Some(server)).await
}

async fn bind(
    client: Client,
    options: &BackendOptions,
    backend: Backend,
    embedded: Option<RunningServer>,
) -> anyhow::Result<Connection> {
    let entity = client
        .resolve_entity(options.entity.as_deref())
        .await
        .with_context(|| format!("connecting to the {backend}"))?;
    Ok(Connection {
        client,
        entity,
        project: options.project.clone(),
        backend,
        embedded,
    })
}

/// `.mlwf/` at the root of the current git work tree, else in the current directory: the
/// embedded store's default home, and the trainer's checkpoints'.
pub fn project_store_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(git_root(&cwd).unwrap_or(cwd).join(STORE_DIR))
}

fn git_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_sits_at_the_git_root_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(git_root(&nested), None);
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        assert_eq!(git_root(&nested).as_deref(), Some(dir.path()));
    }
}
