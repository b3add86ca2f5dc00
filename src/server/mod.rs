//! Local W&B-compatible server: the official `wandb` SDK and mlwf's client can log runs,
//! files, artifacts and alerts to it, read them back, and drive W&B Launch run queues, as if it
//! were W&B. Data lives in one directory (SQLite database plus file bodies).
//!
//! Used two ways: `mlwf server` (`commands/server.rs`) and embedded in-process ([`start`]) when
//! the user has no W&B account.

mod auth;
mod filter;
mod graphql;
mod ids;
mod routes;
mod signing;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::generate_key;
pub use graphql::DEFAULT_ENTITY;

/// How long a popped but un-acked run queue item stays claimed before another agent may pop it.
/// The SDK's agent code says an un-acked item "will be pushed back onto the queue in 1 min".
pub const DEFAULT_QUEUE_LEASE: Duration = Duration::from_secs(60);
/// A run silent this long has crashed: its process is gone (five 30 s heartbeats missed, and more).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

const API_KEY_FILE: &str = "api-key";

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Directory of the database and stored files; created if missing.
    pub data_dir: PathBuf,
    /// Keys clients may use (`[prefix-]` and at least 40 of `[A-Za-z0-9_]`, as the SDK demands).
    /// Must not be empty.
    pub api_keys: Vec<String>,
}

/// Settings beyond [`ServerOptions`] that tests and embedders may want to change.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How long a popped, un-acked run queue item stays claimed.
    pub queue_lease: Duration,
    /// How long a running run may go without a file_stream request or heartbeat before it
    /// reads as crashed (W&B's default: minutes; the SDK heartbeats every 30 s).
    pub run_timeout: Duration,
    /// Attempts per automation webhook delivery, the first included.
    pub webhook_attempts: u32,
    /// Wait before a delivery's first retry; it doubles each time, up to a minute.
    pub webhook_backoff: Duration,
    /// How long a stopping server goes on sending the deliveries that are due.
    pub webhook_drain: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            queue_lease: DEFAULT_QUEUE_LEASE,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            webhook_attempts: 5,
            webhook_backoff: Duration::from_secs(4),
            webhook_drain: Duration::from_secs(5),
        }
    }
}

/// A server serving on the current tokio runtime.
pub struct RunningServer {
    base_url: String,
    api_key: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    webhooks: Webhooks,
}

/// The webhook sender's task and how to stop it.
struct Webhooks {
    stopping: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    drain: Duration,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("RunningServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// `http://IP:PORT`, to use as `WANDB_BASE_URL`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A key clients may use (the first configured one).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Stops accepting connections, lets requests in flight finish, sends the webhook
    /// deliveries that are due (for a while; the rest go out on the next start), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!("server stopped with an error: {err}"),
            Err(err) => tracing::error!("server task failed: {err}"),
        }
        let Webhooks {
            stopping,
            mut task,
            drain,
        } = self.webhooks;
        let _ = stopping.send(true);
        if tokio::time::timeout(drain, &mut task).await.is_err() {
            tracing::warn!(
                "webhook deliveries still pending at shutdown; they resume on the next start"
            );
            task.abort();
        }
    }
}

/// Binds `listen` (port 0 picks a free port) and serves on the current tokio runtime.
pub async fn start(opts: ServerOptions, listen: SocketAddr) -> anyhow::Result<RunningServer> {
    start_with(opts, listen, Tuning::default()).await
}

pub async fn start_with(
    opts: ServerOptions,
    listen: SocketAddr,
    tuning: Tuning,
) -> anyhow::Result<RunningServer> {
    let api_key = opts
        .api_keys
        .first()
        .cloned()
        .context("the server needs at least one API key")?;
    if let Some(bad) = opts.api_keys.iter().position(|k| !auth::is_valid_key(k)) {
        anyhow::bail!(
            "API key #{} is malformed: the wandb SDK only accepts `[prefix-]` followed by at least \
             40 characters of letters, digits and '_'",
            bad + 1
        );
    }
    let data_dir = opts.data_dir.clone();
    let (store, signer) = tokio::task::spawn_blocking(move || {
        let store = store::Store::open(&data_dir)?;
        let signer = signing::Signer::load_or_create(&data_dir)?;
        anyhow::Ok((store, signer))
    })
    .await??;
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let webhooks = Webhooks {
        stopping,
        task: tokio::spawn(webhooks::run(store.clone(), tuning, stopping_rx)),
        drain: tuning.webhook_drain,
    };
    let state = routes::AppState {
        store,
        engine: graphql::engine::Engine::new()?,
        signer: Arc::new(signer),
        api_keys: Arc::new(opts.api_keys),
        tuning,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let (stop, stopped) = oneshot::channel::<()>();
    let app = routes::router(state);
    // Streamed file downloads write headers and body separately; with Nagle on, the body then
    // waits out the client's delayed ACK (~40 ms per download, seen in `mlwf bench analyze`).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(url = %base_url, data = %opts.data_dir.display(), "W&B-compatible server listening");
    Ok(RunningServer {
        base_url,
        api_key,
        stop,
        task,
        webhooks,
    })
}

/// The key in `DATA/api-key`, created (mode 0600) if absent.
pub fn stored_api_key(data_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let path = data_dir.join(API_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_owned();
            anyhow::ensure!(
                auth::is_valid_key(&key),
                "{} does not hold a valid API key; delete it to make a new one",
                path.display()
            );
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = auth::generate_key();
            signing::write_private(&path, format!("{key}\n").as_bytes())?;
            Ok(key)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_key_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let key = stored_api_key(dir.path()).unwrap();
        assert!(auth::is_valid_key(&key));
        assert_eq!(stored_api_key(dir.path()).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(API_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
