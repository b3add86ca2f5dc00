//! What every area of the suite shares: the one API key, the one local-server fixture, the
//! `mlwf` binary with a clean environment, settings with millisecond retries, and the official
//! SDK's interpreter.

pub mod fake_wandb;
pub mod faulty_proxy;
mod fixture;

pub use fixture::{local_server, Fixture, ENTITY, PROJECT};

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use mlwf::retry::RetryPolicy;
use mlwf::wandb::{ApiKey, Settings, Tuning};

/// The API key tests use; assertions check it never shows up in errors.
pub const KEY: &str = "testkey-0123456789abcdefghijklmnopqrstuvwxyz_ABCD";

/// The `mlwf` binary run in `dir`, with none of the test run's `WANDB_*`, `MLWF_*`, GitHub or
/// Anthropic variables: each test says exactly what the command sees.
pub fn mlwf(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mlwf"));
    command.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let inherited = ["WANDB_", "MLWF_", "GITHUB_", "ANTHROPIC_"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if inherited {
            command.env_remove(&*name);
        }
    }
    command
}

/// [`mlwf`] for async tests: killed if the test drops it.
pub fn mlwf_async(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(mlwf(dir));
    command.kill_on_drop(true);
    command
}

/// Serves `router` on a free loopback port and returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// A base URL nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// Retries in milliseconds, a 10 ms transmit interval and a long heartbeat.
pub fn fast_tuning() -> Tuning {
    let policy =
        |attempts| RetryPolicy::new(attempts, Duration::from_millis(1), Duration::from_millis(5));
    Tuning {
        graphql_retry: policy(4).with_attempt_timeout(Duration::from_secs(5)),
        file_stream_retry: policy(200).with_attempt_timeout(Duration::from_secs(5)),
        transfer_retry: policy(4),
        transmit_interval: Duration::from_millis(10),
        heartbeat_interval: Duration::from_secs(3600),
        max_request_bytes: 10 << 20,
    }
}

/// Settings for a test server at `base_url`, with [`KEY`] and [`fast_tuning`].
pub fn settings(base_url: &str) -> Settings {
    let mut settings = Settings::new(base_url, Some(ApiKey::new(KEY))).expect("settings");
    settings.entity = Some("testent".into());
    settings.project = Some("proj".into());
    settings.tuning = fast_tuning();
    settings
}

/// `serde_json::json!` object literal as a metrics row.
#[macro_export]
macro_rules! row {
    ($($tt:tt)*) => {
        match serde_json::json!({ $($tt)* }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }
    };
}

/// A tool the test venv carries (`scripts/requirements-test.txt`): beside `MLWF_PYTHON`, else in
/// `.venv/bin/`. `None` (the test is skipped, and says so) when it is missing, unless
/// `MLWF_REQUIRE_PYTHON` is set, as `scripts/test.sh` does.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let bin_dir = std::env::var_os("MLWF_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin"));
    let tool = bin_dir.join(name);
    if tool.exists() {
        return Some(tool);
    }
    let why = format!("no {name} at {} (run scripts/test.sh)", tool.display());
    assert!(std::env::var_os("MLWF_REQUIRE_PYTHON").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// The Python interpreter with the official `wandb` SDK: `MLWF_PYTHON`, else `.venv/bin/python`.
/// `None` (the test is skipped, and says so) when it is missing, unless `MLWF_REQUIRE_PYTHON`
/// is set, as `scripts/test.sh` does, where a missing SDK fails the test instead.
pub fn python() -> Option<PathBuf> {
    let python = std::env::var_os("MLWF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let has_wandb = std::process::Command::new(&python)
        .args(["-c", "import wandb"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_wandb {
        return Some(python);
    }
    let why = format!(
        "no Python with the official wandb SDK at {} (set MLWF_PYTHON or run scripts/test.sh)",
        python.display()
    );
    assert!(std::env::var_os("MLWF_REQUIRE_PYTHON").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}
