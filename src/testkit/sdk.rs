//! Running the official `wandb` Python SDK against a W&B server: `mlwf bench log` times it, and
//! the tests prove mlwf's server and client against it.

use std::path::Path;
use std::process::Stdio;

/// `python script` with the official SDK pointed at `base_url` and every file it writes kept
/// under `dir`, so it never touches the user's `~/.config/wandb`, `~/.cache` or `./wandb`.
/// Inherited `WANDB_*` run defaults are dropped; the caller adds what it needs.
pub fn official_sdk_command(
    python: &Path,
    script: &Path,
    base_url: &str,
    api_key: &str,
    dir: &Path,
) -> std::io::Result<tokio::process::Command> {
    // Absolute, since the command runs in `dir` and `python` may be relative (`.venv/bin/python`).
    let mut command = tokio::process::Command::new(std::path::absolute(python)?);
    command.arg(script);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WANDB_") {
            command.env_remove(name);
        }
    }
    command
        .env("WANDB_BASE_URL", base_url)
        .env("WANDB_API_KEY", api_key)
        .env("WANDB_ERROR_REPORTING", "false")
        .env("WANDB_SILENT", "true");
    for (var, sub) in [
        ("WANDB_DIR", "wandb"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path)?;
        command.env(var, path);
    }
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}
