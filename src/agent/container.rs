//! The `local-container` runner: a job runs with `docker run` in its image, with its checkout
//! bind-mounted at `/mnt/wandb` (where the official agent mounts it), its environment in an
//! `--env-file` (never in argv, where `ps` shows it), its GPUs as `--gpus device=N`, and the
//! queue's resource args turned into docker flags the official agent's way (key → `--key value`,
//! list → the flag repeated, `true` → the bare flag) within an allow-list. The container is named
//! after the queue item and labelled, because killing the `docker run` client does not stop a
//! container: the agent stops it with `docker stop`, and an agent that restarts finds what an
//! earlier one left running.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::process::Command;

use super::process::JobProcess;
use crate::wandb::launch::LaunchSpec;

/// Where the checkout is mounted in the container.
pub const CODE_MOUNT: &str = "/mnt/wandb";
/// The [`ItemRecord`] in a container job's folder.
pub const RECORD_FILE: &str = "item.json";

/// Labels on every job container.
pub mod label {
    /// The agent folder the container belongs to: what a restarted agent looks for.
    pub const WORKDIR: &str = "mlwf.workdir";
    /// The agent that started it, while that agent lives (see `agent::Owner`).
    pub const OWNER: &str = "mlwf.owner";
    pub const ITEM: &str = "mlwf.item";
    pub const RUN: &str = "mlwf.run";
    pub const QUEUE: &str = "mlwf.queue";
    /// The job's folder under `runs/`, which holds [`super::ItemRecord`].
    pub const WORKSPACE: &str = "mlwf.workspace";
}

/// Docker flags a queue may set: the official agent's allow-list (`wandb-launch-protocol.md`
/// §4), less those the agent sets itself (`name`, `workdir`).
const ALLOWED_FLAGS: [&str; 18] = [
    "cpu",
    "cpu-period",
    "cpu-quota",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "e",
    "env",
    "gpus",
    "m",
    "memory",
    "memory-reservation",
    "memory-swap",
    "pids-limit",
    "platform",
    "shm-size",
    "ulimit",
];

/// Flags only the agent sets: a queue that names one is refused rather than half-obeyed.
const AGENT_FLAGS: [&str; 12] = [
    "name",
    "rm",
    "label",
    "l",
    "env-file",
    "entrypoint",
    "user",
    "u",
    "workdir",
    "w",
    "detach",
    "d",
];

/// How the agent runs container jobs.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    /// The docker client.
    pub docker: PathBuf,
    /// The image of jobs that name none.
    pub image: Option<String>,
    /// Docker flags a queue may set beyond the official allow-list, e.g. `volume`, `network`.
    pub extra_flags: Vec<String>,
}

impl Default for ContainerSettings {
    fn default() -> Self {
        Self {
            docker: PathBuf::from("docker"),
            image: None,
            extra_flags: Vec::new(),
        }
    }
}

/// The queue's resource args for `local-container`, sorted into what the agent handles itself
/// and plain docker flags.
#[derive(Debug, Default, PartialEq)]
pub struct QueueFlags {
    pub flags: Vec<String>,
    /// `env`/`e` entries: `NAME=value`, or a bare `NAME`.
    pub env: Vec<String>,
    /// `gpus` as the queue wrote it (used when the agent hands out no GPUs of its own).
    pub gpus: Option<String>,
    pub network: bool,
    /// `builder.base_image`: the image the official agent's no-build mode runs code in.
    pub image: Option<String>,
}

impl QueueFlags {
    pub fn parse(args: &Value, extra: &[String]) -> anyhow::Result<Self> {
        let mut parsed = Self::default();
        let Some(args) = args.as_object() else {
            return Ok(parsed);
        };
        for (key, value) in args {
            let key = key.trim_start_matches('-');
            if key == "builder" {
                parsed.image = value
                    .get("base_image")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                continue;
            }
            if AGENT_FLAGS.contains(&key) {
                bail!("the queue sets the docker flag --{key}, which only the agent sets");
            }
            if !ALLOWED_FLAGS.contains(&key) && !extra.iter().any(|e| e == key) {
                bail!(
                    "the queue asks for the docker flag --{key}, which this agent does not allow \
                     (start it with `--docker-flag {key}` to allow it)"
                );
            }
            let values: Vec<String> = match value {
                Value::Null | Value::Bool(false) => continue,
                Value::Bool(true) => vec![String::new()],
                Value::String(s) => vec![s.clone()],
                Value::Number(n) => vec![n.to_string()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        other => bail!("docker flag --{key}: {other} is not a string"),
                    })
                    .collect::<anyhow::Result<_>>()?,
                Value::Object(_) => bail!("docker flag --{key} must be a value or a list"),
            };
            match key {
                "e" | "env" => parsed.env.extend(values),
                "gpus" => parsed.gpus = values.into_iter().next(),
                _ => {
                    parsed.network |= key == "network" || key == "net";
                    let flag = if key.len() == 1 {
                        format!("-{key}")
                    } else {
                        format!("--{key}")
                    };
                    for value in values {
                        parsed.flags.push(flag.clone());
                        if !value.is_empty() {
                            parsed.flags.push(value);
                        }
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// What a queue item was, kept beside its container so that a restarted agent can requeue it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    pub queue: String,
    pub item: String,
    pub run_id: String,
    pub entity: String,
    pub project: String,
    pub argv: Vec<String>,
    pub spec: LaunchSpec,
}

/// One `docker run`.
pub struct ContainerRun<'a> {
    pub image: &'a str,
    pub name: &'a str,
    pub labels: &'a [(&'static str, String)],
    pub env_file: &'a Path,
    /// The checkout, and the mirrors mounted read-only beside it (a shared clone's objects
    /// live there); `None` for an image-only item.
    pub code: Option<(&'a Path, &'a Path)>,
    /// Host GPU indices, e.g. `0,1`.
    pub gpus: Option<&'a str>,
    /// The server is on this machine's loopback: the container shares the host's network
    /// (what the official agent does for a local server).
    pub host_network: bool,
    pub queue: &'a QueueFlags,
    pub argv: &'a [String],
    /// `argv[0]` replaces the image's entrypoint; otherwise all of `argv` goes to it.
    pub own_entrypoint: bool,
}

impl ContainerRun<'_> {
    /// The arguments of `docker`.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["run".into(), "--rm".into()];
        let pair = |args: &mut Vec<OsString>, flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        pair(&mut args, "--name", self.name.into());
        for (key, value) in self.labels {
            pair(&mut args, "--label", format!("{key}={value}").into());
        }
        pair(&mut args, "--env-file", self.env_file.into());
        if let Some((checkout, mirrors)) = self.code {
            let mut code = OsString::from(checkout);
            code.push(format!(":{CODE_MOUNT}"));
            pair(&mut args, "--volume", code);
            let mut shared = OsString::from(mirrors);
            shared.push(":");
            shared.push(mirrors);
            shared.push(":ro");
            pair(&mut args, "--volume", shared);
            pair(&mut args, "--workdir", CODE_MOUNT.into());
        }
        // An image's own healthcheck (the agent image's watches an agent) says nothing of a job.
        args.push("--no-healthcheck".into());
        // The job writes into its checkout as the agent would: files stay the agent's to clean.
        pair(&mut args, "--user", current_user().into());
        if self.host_network && !self.queue.network {
            pair(&mut args, "--network", "host".into());
        }
        // Quoted: docker reads the value as CSV, and `device=0,1` would be two fields.
        match (self.gpus, &self.queue.gpus) {
            (Some(ids), _) => pair(&mut args, "--gpus", format!("\"device={ids}\"").into()),
            (None, Some(queue)) => pair(&mut args, "--gpus", queue.into()),
            (None, None) => {}
        }
        args.extend(self.queue.flags.iter().map(OsString::from));
        let rest = match self.argv.split_first() {
            Some((program, rest)) if self.own_entrypoint => {
                pair(&mut args, "--entrypoint", program.into());
                rest
            }
            _ => self.argv,
        };
        args.push(self.image.into());
        args.extend(rest.iter().map(OsString::from));
        args
    }
}

fn current_user() -> String {
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    format!("{uid}:{gid}")
}

/// A container name docker accepts, unique across servers (item ids are numbered per server):
/// the queue item's id (base64, with `=`, `+`, `/`) and the run's.
pub fn container_name(item: &str, run_id: &str) -> String {
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .trim_matches('-')
            .to_owned()
    };
    format!("mlwf-{}-{}", safe(item), safe(run_id))
}

/// Writes `env` as a docker env file readable by the agent only. Docker's format has no
/// quoting: a value with a line break cannot be passed, and is refused by name.
pub fn write_env_file(path: &Path, env: &[(OsString, OsString)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (name, value) in env {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            bail!("variable {name:?} is not UTF-8: a docker env file cannot carry it");
        };
        if value.contains(['\n', '\r']) {
            bail!("variable {name} has a line break: a docker env file cannot carry it");
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The environment of the `docker` client itself: what it needs to find the engine, nothing
/// of the agent's credentials.
pub fn client_env(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    const KEEP: [&str; 6] = ["PATH", "HOME", "USER", "TMPDIR", "XDG_RUNTIME_DIR", "LANG"];
    inherited
        .into_iter()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            KEEP.contains(&name.as_ref()) || name.starts_with("DOCKER_")
        })
        .collect()
}

/// A running job container, seen from the agent.
pub struct Container {
    docker: PathBuf,
    env: Vec<(OsString, OsString)>,
    pub name: String,
}

impl Container {
    pub fn new(settings: &ContainerSettings, name: String) -> Self {
        Self {
            docker: settings.docker.clone(),
            env: client_env(std::env::vars_os()),
            name,
        }
    }

    fn docker(&self) -> Command {
        let mut command = Command::new(&self.docker);
        command.env_clear().envs(self.env.iter().cloned());
        command
    }

    /// `docker stop` (SIGTERM to the container, SIGKILL after `grace`), then the `docker run`
    /// client, which exits with the container, gives the status.
    pub async fn stop(
        &self,
        client: &mut JobProcess,
        grace: Duration,
    ) -> std::io::Result<ExitStatus> {
        if let Err(err) = self.stop_container(grace).await {
            tracing::warn!(container = %self.name, "docker stop: {err:#}");
        }
        match tokio::time::timeout(Duration::from_secs(10), client.wait()).await {
            Ok(status) => status,
            Err(_) => {
                let status = client.stop(Duration::from_secs(1)).await;
                let _ = self.remove().await;
                status
            }
        }
    }

    async fn stop_container(&self, grace: Duration) -> anyhow::Result<()> {
        let secs = grace.as_secs().max(1).to_string();
        let out = self
            .docker()
            .args(["stop", "--time", &secs, &self.name])
            .output()
            .await
            .context("running docker stop")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Removes the container whatever its state (`--rm` does it when it exits on its own).
    pub async fn remove(&self) -> anyhow::Result<()> {
        let out = self
            .docker()
            .args(["rm", "--force", &self.name])
            .output()
            .await
            .context("running docker rm")?;
        if !out.status.success() {
            let error = String::from_utf8_lossy(&out.stderr);
            if !error.contains("No such container") {
                bail!("{}", error.trim());
            }
        }
        Ok(())
    }

    /// Stops and removes a container left by an earlier agent.
    pub async fn stop_and_remove(&self, grace: Duration) -> anyhow::Result<()> {
        let stopped = self.stop_container(grace).await;
        self.remove().await?;
        stopped.or_else(|err| {
            if format!("{err}").contains("No such container") {
                Ok(())
            } else {
                Err(err)
            }
        })
    }
}

/// A container an earlier agent started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub name: String,
    pub owner: String,
    pub workspace: String,
}

/// Containers of the agent folder `workdir`, running or not.
/// `None` when there is no docker to ask (an agent that runs only local-process jobs).
pub async fn leftovers(
    settings: &ContainerSettings,
    workdir: &Path,
) -> anyhow::Result<Option<Vec<Leftover>>> {
    let filter = format!("label={}={}", label::WORKDIR, workdir.display());
    let format = format!(
        "{{{{.Names}}}}\t{{{{.Label \"{}\"}}}}\t{{{{.Label \"{}\"}}}}",
        label::OWNER,
        label::WORKSPACE
    );
    let out = Command::new(&settings.docker)
        .env_clear()
        .envs(client_env(std::env::vars_os()))
        .args(["ps", "--all", "--filter", &filter, "--format", &format])
        .output()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("running docker ps"),
    };
    if !out.status.success() {
        let error = String::from_utf8_lossy(&out.stderr);
        if error.contains("Cannot connect") || error.contains("permission denied") {
            return Ok(None);
        }
        bail!("docker ps: {}", error.trim());
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t').map(str::to_owned);
                Some(Leftover {
                    name: fields.next()?,
                    owner: fields.next()?,
                    workspace: fields.next()?,
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queue_args_become_docker_flags_the_official_way() {
        let args = json!({"shm-size": "1g", "cpus": 2, "ulimit": ["nofile=1024", "core=0"],
            "e": ["A=1"], "env": ["B"], "gpus": "all", "builder": {"base_image": "img:1"},
            "volume": ["/data:/data:ro"], "network": "lab", "platform": null});
        let parsed = QueueFlags::parse(&args, &["volume".into(), "network".into()]).unwrap();
        assert_eq!(
            parsed.flags,
            [
                "--cpus",
                "2",
                "--network",
                "lab",
                "--shm-size",
                "1g",
                "--ulimit",
                "nofile=1024",
                "--ulimit",
                "core=0",
                "--volume",
                "/data:/data:ro"
            ]
        );
        assert_eq!(parsed.env, ["A=1", "B"]);
        assert_eq!(parsed.gpus.as_deref(), Some("all"));
        assert_eq!(parsed.image.as_deref(), Some("img:1"));
        assert!(parsed.network);

        let refused = QueueFlags::parse(&json!({"volume": "/:/host"}), &[]).unwrap_err();
        assert!(
            refused.to_string().contains("--docker-flag volume"),
            "{refused}"
        );
        let refused = QueueFlags::parse(&json!({"name": "x"}), &[]).unwrap_err();
        assert!(refused.to_string().contains("only the agent"), "{refused}");
        assert_eq!(
            QueueFlags::parse(&json!(null), &[]).unwrap(),
            QueueFlags::default()
        );
    }

    #[test]
    fn the_run_line_carries_no_environment_and_quotes_gpu_lists() {
        let queue = QueueFlags::parse(&json!({"shm-size": "1g"}), &[]).unwrap();
        let argv = ["mlwf".to_owned(), "train".to_owned()];
        let labels = [(label::ITEM, "item=1".to_owned())];
        let run = ContainerRun {
            image: "img",
            name: &container_name("UnVu+/UXVldW==", "r1"),
            labels: &labels,
            env_file: Path::new("/w/runs/x/job.env"),
            code: Some((Path::new("/w/runs/x/code"), Path::new("/w/mirrors"))),
            gpus: Some("0,1"),
            host_network: true,
            queue: &queue,
            argv: &argv,
            own_entrypoint: true,
        };
        let args: Vec<String> = run
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        assert!(
            line.starts_with("run --rm --name mlwf-UnVu--UXVldW-r1 "),
            "{line}"
        );
        assert!(line.contains("--label mlwf.item=item=1"), "{line}");
        assert!(line.contains("--env-file /w/runs/x/job.env"), "{line}");
        assert!(
            line.contains("--volume /w/runs/x/code:/mnt/wandb"),
            "{line}"
        );
        assert!(line.contains("--volume /w/mirrors:/w/mirrors:ro"), "{line}");
        assert!(line.contains("--network host"), "{line}");
        assert!(line.contains("--gpus \"device=0,1\""), "{line}");
        assert!(
            line.ends_with("--shm-size 1g --entrypoint mlwf img train"),
            "{line}"
        );

        // An image-only item: the image's own entrypoint and working directory take over.
        let image_only = ContainerRun {
            code: None,
            own_entrypoint: false,
            gpus: None,
            ..run
        };
        let line: Vec<String> = image_only
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = line.join(" ");
        assert!(line.ends_with("--shm-size 1g img mlwf train"), "{line}");
        assert!(
            !line.contains("--volume") && !line.contains("--workdir"),
            "{line}"
        );
    }

    #[test]
    fn env_files_refuse_what_they_cannot_carry_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.env");
        let env = [("A".into(), "x=y z".into()), ("B".into(), "".into())];
        write_env_file(&path, &env).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=x=y z\nB=\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let broken = [("KEY".into(), "hunter2\nmore".into())];
        let err = write_env_file(&path, &broken).unwrap_err().to_string();
        assert!(err.contains("KEY") && !err.contains("hunter2"), "{err}");
    }
}
