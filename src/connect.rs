//! Connects to where runs live: a configured W&B server, or the embedded local store.
//!
//! With `WANDB_API_KEY` or `WANDB_BASE_URL` set, mlwf talks to that server like the official
//! SDK does. Otherwise it starts the local W&B-compatible server in-process, on a loopback port
//! with a key made for this process, over a store in `.mlwf/` — so the same client code runs
//! with no account and no separate process.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::git;
use crate::retry::RetryPolicy;
use crate::server::{self, RunningServer, ServerOptions};
use crate::wandb::{ApiKey, Client, Settings};

/// The embedded store's folder name, at the root of the user's project.
pub const STORE_DIR: &str = ".mlwf";
/// The project runs go to when nothing names one.
pub const DEFAULT_PROJECT: &str = "mlwf";

/// Where a command reads and writes runs, resolved from flags, environment and config files.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `None`: the API key's default entity.
    pub entity: Option<String>,
    pub project: String,
    /// The embedded store's directory; `None`: [`project_store_dir`].
    pub dir: Option<PathBuf>,
}

/// Which store a [`Store`] talks to, for the one line that tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Remote { base_url: String },
    Embedded { dir: PathBuf },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Remote { base_url } => write!(f, "W&B server {base_url}"),
            Location::Embedded { dir } => write!(
                f,
                "embedded local store {} (no W&B account needed; set WANDB_API_KEY to use W&B)",
                dir.display()
            ),
        }
    }
}

/// A client bound to an entity and project, keeping the embedded server alive while in use.
pub struct Store {
    pub client: Client,
    pub entity: String,
    pub project: String,
    pub location: Location,
    embedded: Option<RunningServer>,
}

impl Store {
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

/// Connects as the environment says and prints which store is in use to stderr.
pub async fn open(settings: &StoreSettings, purpose: Purpose) -> anyhow::Result<Store> {
    open_with(settings, purpose, &|name| std::env::var(name).ok()).await
}

/// [`open`] with the `WANDB_*` variables read through `lookup` (the environment, or the
/// environment completed by a project's settings files).
pub async fn open_with(
    settings: &StoreSettings,
    purpose: Purpose,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Store> {
    let env = Settings::from_lookup(lookup).context("reading the WANDB_* environment")?;
    let key_set = lookup("WANDB_API_KEY").is_some();
    let store = if key_set || lookup("WANDB_BASE_URL").is_some() {
        open_remote(env, settings, purpose, key_set).await?
    } else {
        open_embedded(env, settings).await?
    };
    eprintln!("mlwf: using {}", store.location);
    Ok(store)
}

/// Command-line reads give up on an unreachable server after about half a minute, not after the
/// official client's quarter of an hour (which suits a training run that must not lose data).
fn interactive_retry() -> RetryPolicy {
    RetryPolicy::new(6, Duration::from_secs(1), Duration::from_secs(10))
        .with_attempt_timeout(Duration::from_secs(30))
}

async fn open_remote(
    mut env: Settings,
    settings: &StoreSettings,
    purpose: Purpose,
    key_set: bool,
) -> anyhow::Result<Store> {
    if purpose == Purpose::Read {
        env.tuning.graphql_retry = interactive_retry();
    }
    let base_url = env.base_url.to_string();
    if env.api_key.is_none() {
        // An unset GitHub secret expands to "": the key is there, but empty.
        if key_set {
            bail!(
                "WANDB_API_KEY is set in the environment but empty (an unset CI secret expands \
                 to \"\"): set it to your W&B API key, or unset it to use the embedded local store"
            );
        }
        bail!(
            "WANDB_BASE_URL is set to {base_url} but WANDB_API_KEY is not: set the key, \
             or unset WANDB_BASE_URL to use the embedded local store"
        );
    }
    let client = Client::new(env).context("configuring the W&B client")?;
    bind(client, settings, Location::Remote { base_url }, None).await
}

async fn open_embedded(mut env: Settings, settings: &StoreSettings) -> anyhow::Result<Store> {
    let dir = match &settings.dir {
        Some(dir) => dir.clone(),
        None => project_store_dir()?,
    };
    ignore_in_git(&dir)?;
    // A key for this process alone: only it talks to its embedded server.
    let key = server::generate_key();
    let server = server::start(
        ServerOptions {
            data_dir: dir.join("server"),
            api_keys: vec![key.clone()],
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .with_context(|| format!("starting the embedded store in {}", dir.display()))?;
    // Run defaults from the environment (WANDB_RUN_ID, WANDB_TAGS, ...) still apply.
    env.base_url = server
        .base_url()
        .parse()
        .context("the embedded server's URL")?;
    env.api_key = Some(ApiKey::new(key));
    let client = Client::new(env)?;
    bind(client, settings, Location::Embedded { dir }, Some(server)).await
}

async fn bind(
    client: Client,
    settings: &StoreSettings,
    location: Location,
    embedded: Option<RunningServer>,
) -> anyhow::Result<Store> {
    let entity = client
        .resolve_entity(settings.entity.as_deref())
        .await
        .with_context(|| format!("connecting to the {location}"))?;
    // References that name no entity or project (`name:alias`) mean the store's.
    let client = client.with_defaults(&entity, &settings.project);
    Ok(Store {
        client,
        entity,
        project: settings.project.clone(),
        location,
        embedded,
    })
}

impl Store {
    /// A run of this store's project with a fresh id and `job_type`: what a command that logs
    /// an artifact by itself (a job, a dataset) logs it from.
    pub async fn start_side_run(&self, job_type: &str) -> crate::wandb::Result<crate::wandb::Run> {
        self.client
            .start_run(crate::wandb::RunSpec {
                entity: Some(self.entity.clone()),
                project: Some(self.project.clone()),
                id: Some(crate::wandb::random_id(crate::wandb::RUN_ID_LEN)),
                job_type: Some(job_type.into()),
                ..crate::wandb::RunSpec::default()
            })
            .await
    }
}

/// Puts a `.gitignore` of `*` in the store, as Python virtual environments do, so that runs and
/// checkpoints never show in `git status` nor get committed by a `git add -A`.
fn ignore_in_git(dir: &std::path::Path) -> anyhow::Result<()> {
    let path = dir.join(".gitignore");
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, "# mlwf's embedded store: never committed\n*\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// `.mlwf/` at the root of the current git work tree, else in the current directory: the
/// embedded store's default home, and the trainer's checkpoints'.
pub fn project_store_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(git::root(&cwd).unwrap_or(cwd).join(STORE_DIR))
}
