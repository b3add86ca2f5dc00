//! A job's code: a fresh checkout of the job's commit, cloned from a mirror kept per remote (the
//! second job of a repository fetches only what is new), and what the job needs built: a fork of
//! mlwf is compiled with a target folder kept per repository, Python requirements get a virtual
//! environment kept per requirements file.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use md5::{Digest as _, Md5};
use tokio::process::Command;

use crate::git::{remote_host, RemoteForm};
use crate::secrets::{Redactor, Secret};

/// How the agent reaches private repositories. The token reaches git through `GIT_ASKPASS`,
/// only for `hosts`, and never through argv, the remote URL or the job's environment.
#[derive(Debug, Clone, Default)]
pub struct GitAccess {
    pub token: Option<Secret>,
    pub hosts: Vec<String>,
    pub ssh_key: Option<PathBuf>,
}

/// The variable the askpass script reads the token from.
const TOKEN_VAR: &str = "MLWF_GIT_ASKPASS_TOKEN";

impl GitAccess {
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.token.iter().map(|t| t.expose_secret().to_owned()))
    }

    /// The environment git needs to fetch `remote`.
    fn env_for(&self, remote: &str, askpass: &Path) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![("GIT_TERMINAL_PROMPT".into(), "0".into())];
        let host = remote_host(remote);
        let encrypted = remote.to_ascii_lowercase().starts_with("https://")
            || host.as_deref().is_some_and(is_loopback);
        if let (Some(token), Some(host), true) = (&self.token, &host, encrypted) {
            if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                env.push(("GIT_ASKPASS".into(), askpass.into()));
                env.push((TOKEN_VAR.into(), token.expose_secret().into()));
            }
        }
        if let Some(key) = &self.ssh_key {
            if std::env::var_os("GIT_SSH_COMMAND").is_none() {
                let command = format!(
                    "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes",
                    key.display().to_string().replace('\'', "'\\''")
                );
                env.push(("GIT_SSH_COMMAND".into(), command.into()));
            }
        }
        env
    }
}

/// The agent's folder: mirrors, checkouts, build caches.
#[derive(Debug, Clone)]
pub struct Workdir {
    root: PathBuf,
    /// One lock per mirror or environment: two jobs of one repository must not clone it at
    /// the same time.
    locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Workdir {
    pub fn new(root: PathBuf) -> anyhow::Result<Self> {
        for sub in ["mirrors", "runs", "targets", "venvs", "bin"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        let askpass = root.join("bin/askpass");
        // Git asks for a username, then a password: the token works as both for GitHub.
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in\n  Username*) echo x-access-token ;;\n  *) printf '%s\\n' \"${TOKEN_VAR}\" ;;\nesac\n"
        );
        std::fs::write(&askpass, script).context("writing the git askpass helper")?;
        set_mode(&askpass, 0o700)?;
        Ok(Self {
            root,
            locks: Arc::default(),
        })
    }

    async fn lock(&self, path: &Path) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .expect("workdir locks")
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh checkout of `commit` of `remote` (on a local branch `branch` when given, so the
    /// job's git facts name it), under `runs/<name>`.
    pub async fn checkout(
        &self,
        access: &GitAccess,
        remote: &str,
        commit: &str,
        branch: Option<&str>,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let loopback = remote_host(remote).as_deref().is_some_and(is_loopback);
        if RemoteForm::of(remote) == RemoteForm::Insecure && !loopback {
            bail!("remote {remote:?} is unencrypted (http:// or git://): use https:// or ssh");
        }
        let mirror = self.mirror(access, remote, commit).await?;
        let dir = self.root.join("runs").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let local = |args: &[&str]| {
            let mut command = Command::new("git");
            command.args(args);
            command
        };
        run_git(
            local(&["clone", "--quiet", "--no-checkout", "--shared"])
                .arg(&mirror)
                .arg(&dir),
            "cloning the mirror",
            &access.redactor(),
        )
        .await?;
        let checkout: Vec<&str> = match branch {
            Some(branch) => vec!["checkout", "--quiet", "-B", branch, commit],
            None => vec!["checkout", "--quiet", "--detach", commit],
        };
        run_git(
            local(&checkout).current_dir(&dir),
            "checking out",
            &access.redactor(),
        )
        .await?;
        // The job sees the remote it came from, not the agent's mirror.
        run_git(
            local(&["remote", "set-url", "origin", remote]).current_dir(&dir),
            "naming the remote",
            &access.redactor(),
        )
        .await?;
        if dir.join(".gitmodules").exists() {
            run_git(
                local(&["submodule", "update", "--init", "--recursive", "--quiet"])
                    .current_dir(&dir)
                    .envs(access.env_for(remote, &self.askpass())),
                "fetching submodules",
                &access.redactor(),
            )
            .await?;
        }
        Ok(dir)
    }

    fn askpass(&self) -> PathBuf {
        self.root.join("bin/askpass")
    }

    /// The mirror of `remote`, fetched when it lacks `commit`.
    async fn mirror(
        &self,
        access: &GitAccess,
        remote: &str,
        commit: &str,
    ) -> anyhow::Result<PathBuf> {
        let mirror = self
            .root
            .join("mirrors")
            .join(format!("{}.git", short_hash(remote)));
        let _guard = self.lock(&mirror).await;
        let env = access.env_for(remote, &self.askpass());
        let redactor = access.redactor();
        if !mirror.join("HEAD").exists() {
            // Agents sharing the folder may clone at the same time: each into its own folder,
            // and the first to finish keeps its copy.
            let partial = mirror.with_extension(format!("partial-{}", crate::wandb::random_id(8)));
            run_git(
                Command::new("git")
                    .args(["clone", "--quiet", "--mirror", "--", remote])
                    .arg(&partial)
                    .envs(env.clone()),
                &format!("cloning {remote}"),
                &redactor,
            )
            .await?;
            if std::fs::rename(&partial, &mirror).is_err() {
                let _ = std::fs::remove_dir_all(&partial);
            }
        }
        if !has_commit(&mirror, commit).await {
            // Another agent's fetch may hold the mirror's ref locks: one retry.
            let fetch = || async {
                run_git(
                    Command::new("git")
                        .args(["fetch", "--quiet", "--prune", "origin"])
                        .current_dir(&mirror)
                        .envs(env.clone()),
                    &format!("fetching {remote}"),
                    &redactor,
                )
                .await
            };
            if fetch().await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                fetch().await?;
            }
        }
        if !has_commit(&mirror, commit).await {
            // Commits no branch points at any more are fetched by id where the server allows.
            let fetched = run_git(
                Command::new("git")
                    .args(["fetch", "--quiet", "origin", commit])
                    .current_dir(&mirror)
                    .envs(env),
                &format!("fetching commit {commit} of {remote}"),
                &redactor,
            )
            .await;
            if fetched.is_err() || !has_commit(&mirror, commit).await {
                bail!("{remote} has no commit {commit} (was the branch force-pushed?)");
            }
        }
        Ok(mirror)
    }

    /// The target folder for builds of `remote`'s code.
    pub fn target_dir(&self, remote: &str) -> PathBuf {
        self.root.join("targets").join(short_hash(remote))
    }

    /// A virtual environment with `requirements` installed, reused for the same file.
    pub async fn venv(&self, requirements: &Path) -> anyhow::Result<PathBuf> {
        let text = std::fs::read(requirements)
            .with_context(|| format!("reading {}", requirements.display()))?;
        let dir = self
            .root
            .join("venvs")
            .join(hex::encode(Md5::digest(&text)));
        let _guard = self.lock(&dir).await;
        if dir.join("ready").exists() {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        run_tool(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "creating a virtual environment",
        )
        .await?;
        run_tool(
            Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(requirements),
            "installing the job's requirements.frozen.txt",
        )
        .await?;
        std::fs::write(dir.join("ready"), "").context("marking the environment ready")?;
        Ok(dir)
    }
}

/// Whether `host` is this machine: unencrypted git is refused except to it, where nothing
/// crosses a network.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the checkout is a Cargo project building the `mlwf` binary (a fork of mlwf).
pub fn builds_mlwf(checkout: &Path) -> bool {
    std::fs::read_to_string(checkout.join("Cargo.toml")).is_ok_and(|text| {
        text.parse::<toml::Table>().ok().is_some_and(|manifest| {
            manifest
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                == Some("mlwf")
        })
    })
}

/// `cargo build --release --locked` in `checkout` into `target`; the binary built.
pub async fn build_mlwf(checkout: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    run_tool(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--bin", "mlwf"])
            .current_dir(checkout)
            .env("CARGO_TARGET_DIR", target),
        "cargo build --release --locked",
    )
    .await?;
    Ok(target.join("release/mlwf"))
}

async fn has_commit(repo: &Path, commit: &str) -> bool {
    Command::new("git")
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .current_dir(repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn run_git(command: &mut Command, what: &str, redactor: &Redactor) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("{what}: cannot run git (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "{what}: {}",
            redactor.redact(String::from_utf8_lossy(&output.stderr).trim())
        );
    }
    Ok(())
}

/// Runs a build tool; a failure carries the end of its output.
async fn run_tool(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("{what}: cannot start it"))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}):\n{}", output.status, tail.join("\n"));
    }
    Ok(())
}

fn short_hash(text: &str) -> String {
    hex::encode(&Md5::digest(text.as_bytes())[..8])
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_configured_https_hosts() {
        let access = GitAccess {
            token: Some(Secret::new("ghp_0123456789abcdef")),
            hosts: vec!["github.com".into()],
            ssh_key: None,
        };
        let askpass = Path::new("/x/askpass");
        let has_token = |remote: &str| {
            access
                .env_for(remote, askpass)
                .iter()
                .any(|(k, _)| k == TOKEN_VAR)
        };
        assert!(has_token("https://github.com/me/private.git"));
        assert!(!has_token("https://gitlab.com/me/private.git"));
        assert!(!has_token("git@github.com:me/private.git"));
    }

    #[test]
    fn forks_of_mlwf_are_recognised_by_their_manifest() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!builds_mlwf(dir.path()));
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"mlwf\"\n",
        )
        .unwrap();
        assert!(builds_mlwf(dir.path()));
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"other\"\n",
        )
        .unwrap();
        assert!(!builds_mlwf(dir.path()));
    }
}
