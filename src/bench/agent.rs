//! `mlwf bench agent`: `mlwf agent` against the official `wandb launch-agent` on one local
//! server: each agent's resident memory once it idles (its whole process tree: the official
//! agent runs a wandb-core service beside it), and the time from a push to the job's first line;
//! with an image, that time for the same shell job as a process and in its own container.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::scratch_server;
use crate::git::Repo;
use crate::server::RunningServer;
use crate::testkit::launch::{fake_ssh, fake_ssh_env, log_job, HandMadeJob};
use crate::testkit::sdk::official_sdk_command;
use crate::wandb::launch::{ItemInfo, LaunchSpec, FAILED};
use crate::wandb::{ApiKey, Client, Settings};

const ENTITY: &str = "bench";
const PROJECT: &str = "bench";
const QUEUE: &str = "bench";
const CONTAINER_QUEUE: &str = "bench-container";
/// The job both runners can start (the agent image has no Python): its line, and no run.
const SH_JOB: [&str; 3] = ["sh", "-c", "echo MLWF_BENCH_JOB_STARTED"];
/// What the job prints: the agent's stdout showing it is the start being timed.
const MARKER: &str = "MLWF_BENCH_JOB_STARTED";
/// The job: its first line, then a W&B run when the SDK is there, so that it ends cleanly on
/// both agents (the official one waits a minute on a job that never starts a run).
const JOB_PY: &str = "print('MLWF_BENCH_JOB_STARTED', flush=True)\ntry:\n    import wandb\nexcept ImportError:\n    raise SystemExit(0)\nwandb.init()\nwandb.finish()\n";
/// Longest wait for a job to start or to end.
const SETTLE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// A Python interpreter with the official `wandb` package; its agent is skipped without one.
    pub python: PathBuf,
    /// How long an agent runs before its memory is read.
    pub idle: Duration,
    /// Items pushed one after another, each timed.
    pub pushes: usize,
    /// An image with mlwf (the agent image) for `local-container` jobs; none skips them.
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentFigures {
    pub agent: String,
    /// Resident memory of the agent's process tree while idle, in MiB.
    pub idle_rss_mib: f64,
    /// Push to the job's first line, one per push, in seconds.
    pub push_to_start_s: Vec<f64>,
}

pub async fn agent(options: &AgentOptions) -> anyhow::Result<Vec<AgentFigures>> {
    let (scratch, server, key) = scratch_server().await?;
    let result = measure_all(options, &server, &key, scratch.path()).await;
    server.shutdown().await;
    result
}

async fn measure_all(
    options: &AgentOptions,
    server: &RunningServer,
    key: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<AgentFigures>> {
    let mut settings = Settings::new(server.base_url(), Some(ApiKey::new(key)))?;
    settings.entity = Some(ENTITY.into());
    settings.project = Some(PROJECT.into());
    let client = Client::new(settings)?;
    client
        .create_run_queue(ENTITY, QUEUE, "local-process", json!({}))
        .await?;
    let (remote, commit, fakessh) = repository(scratch)?;
    let job = HandMadeJob {
        name: "job-bench",
        remote: &remote,
        commit: &commit,
        entrypoint: &["python3", "job.py"],
        requirements: "",
    };
    let python_job = log_job(&client, &job, &scratch.join("job")).await?;
    let sh_job = HandMadeJob {
        name: "job-bench-sh",
        entrypoint: &SH_JOB,
        ..job
    };
    let sh_job = log_job(&client, &sh_job, &scratch.join("job-sh")).await?;
    let bench = Bench {
        client,
        server,
        key,
        scratch,
        ssh: fake_ssh_env(&fakessh),
        options,
    };
    let mut figures = vec![
        bench
            .measure("mlwf agent", bench.mlwf_agent(QUEUE)?, QUEUE, &python_job)
            .await?,
    ];
    if options.python.exists() {
        figures.push(
            bench
                .measure(
                    "wandb launch-agent",
                    bench.official_agent()?,
                    QUEUE,
                    &python_job,
                )
                .await?,
        );
    }
    if let Some(image) = &options.image {
        bench
            .client
            .create_run_queue(ENTITY, CONTAINER_QUEUE, "local-container", json!({}))
            .await?;
        figures.push(
            bench
                .measure(
                    "mlwf agent, sh job, local-process",
                    bench.mlwf_agent(QUEUE)?,
                    QUEUE,
                    &sh_job,
                )
                .await?,
        );
        let mut agent = bench.mlwf_agent(CONTAINER_QUEUE)?;
        agent.args(["--image", image]);
        figures.push(
            bench
                .measure(
                    "mlwf agent, sh job, local-container",
                    agent,
                    CONTAINER_QUEUE,
                    &sh_job,
                )
                .await?,
        );
    }
    Ok(figures)
}

/// A bare repository with one commit, reachable as `git@localhost:<path>` through the fake ssh.
fn repository(scratch: &Path) -> anyhow::Result<(String, String, PathBuf)> {
    let bare = scratch.join("repo.git");
    let work = scratch.join("work");
    std::fs::create_dir_all(&work)?;
    let bare_path = bare.to_str().context("a scratch path that is not UTF-8")?;
    let identity = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"];
    Repo::at(scratch).git(["init", "-q", "--bare", bare_path])?;
    let repo = Repo::at(&work);
    repo.git(["init", "-q", "-b", "main"])?;
    std::fs::write(work.join("job.py"), JOB_PY)?;
    repo.git(["add", "-A"])?;
    repo.git([&identity[..], &["commit", "-q", "-m", "bench"]].concat())?;
    repo.git(["push", "-q", bare_path, "main"])?;
    let commit = repo.commit_of("HEAD")?;
    Ok((
        format!("git@localhost:{}", bare.display()),
        commit,
        fake_ssh(scratch)?,
    ))
}

struct Bench<'a> {
    client: Client,
    server: &'a RunningServer,
    key: &'a str,
    scratch: &'a Path,
    ssh: [(&'static str, String); 2],
    options: &'a AgentOptions,
}

impl Bench<'_> {
    fn mlwf_agent(&self, queue: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["agent", "--queue", queue, "--entity", ENTITY])
            .env("WANDB_BASE_URL", self.server.base_url())
            .env("WANDB_API_KEY", self.key)
            .env("MLWF_AGENT_DIR", self.scratch.join("mlwf-agent"))
            .env("MLWF_LOG", "warn")
            .env("WANDB_SILENT", "true");
        for (var, sub) in [
            ("WANDB_DIR", "wandb"),
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_CONFIG_DIR", "config"),
        ] {
            let dir = self.scratch.join("mlwf-agent-sdk").join(sub);
            std::fs::create_dir_all(&dir)?;
            command.env(var, dir);
        }
        Ok(command)
    }

    fn official_agent(&self) -> anyhow::Result<Command> {
        let home = self.scratch.join("home");
        let config = home.join(".config/wandb");
        std::fs::create_dir_all(&config)?;
        std::fs::write(
            config.join("launch-config.yaml"),
            format!("entity: {ENTITY}\nqueues: [{QUEUE}]\nmax_jobs: 1\n"),
        )?;
        let cli = std::path::absolute(&self.options.python)?.with_file_name("wandb");
        let mut command = official_sdk_command(
            &self.options.python,
            &cli,
            self.server.base_url(),
            self.key,
            &self.scratch.join("sdk"),
        )?;
        command
            .args(["launch-agent", "-q", QUEUE, "-e", ENTITY, "-j", "1"])
            .env("HOME", &home)
            .env_remove("WANDB_SILENT");
        Ok(command)
    }

    /// Starts `command`, lets it idle, reads its memory, then times `pushes` items of `job`
    /// pushed to `queue`.
    async fn measure(
        &self,
        name: &str,
        mut command: Command,
        queue: &str,
        job: &str,
    ) -> anyhow::Result<AgentFigures> {
        if let Some(bin) = std::path::absolute(&self.options.python)?.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", bin.display()));
        }
        command
            .envs(self.ssh.clone())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let (lines, mut seen) = mpsc::unbounded_channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    // Only the job's own line: the agents also quote commands and output tails.
                    if line.trim_end().ends_with(MARKER)
                        && !line.contains("job.py")
                        && !line.contains("echo")
                    {
                        let _ = lines.send(Instant::now());
                    }
                }
            });
        }
        tokio::time::sleep(self.options.idle).await;
        let idle_rss_mib = tree_rss_kib(pid(&child)?)? as f64 / 1024.0;
        let spec = LaunchSpec {
            job: Some(job.to_owned()),
            entity: Some(ENTITY.into()),
            project: Some(PROJECT.into()),
            ..LaunchSpec::default()
        };
        let mut push_to_start_s = Vec::new();
        for _ in 0..self.options.pushes {
            while seen.try_recv().is_ok() {}
            let pushed = Instant::now();
            let item = self
                .client
                .push_to_queue(ENTITY, queue, &spec, None)
                .await?;
            let started = tokio::time::timeout(SETTLE, seen.recv())
                .await
                .with_context(|| format!("{name} did not start the job within {SETTLE:?}"))?
                .context("the agent's output ended")?;
            push_to_start_s.push((started - pushed).as_secs_f64());
            // Each push meets an idle agent: the previous job has ended and been reported.
            self.settled(queue, &item).await?;
        }
        stop(&mut child).await;
        Ok(AgentFigures {
            agent: name.to_owned(),
            idle_rss_mib,
            push_to_start_s,
        })
    }
}

impl Bench<'_> {
    async fn settled(&self, queue: &str, item: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            let info = self.client.queue_item(ENTITY, queue, item).await?;
            let done = match info {
                Some(i) if i.state.as_deref() == Some(FAILED) => true,
                Some(ItemInfo {
                    associated_run_id: Some(run),
                    ..
                }) => self
                    .client
                    .run(ENTITY, PROJECT, &run)
                    .await?
                    .is_some_and(|r| r.state.is_terminal()),
                _ => false,
            };
            if done {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("item {item} did not settle within {SETTLE:?}")
    }
}

fn pid(child: &Child) -> anyhow::Result<u32> {
    child.id().context("the agent exited early")
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Resident memory of `root` and every descendant.
fn tree_rss_kib(root: u32) -> anyhow::Result<u64> {
    let mut system = System::new().map_err(|err| anyhow::anyhow!("reading processes: {err}"))?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    let processes = system.processes();
    let mut tree = vec![Pid::from_u32(root)];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(
            processes
                .iter()
                // Threads are listed too, sharing their process's memory: processes only.
                .filter(|(_, p)| p.thread_kind().is_none() && p.parent() == Some(parent))
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    Ok(tree
        .iter()
        .filter_map(|pid| processes.get(pid))
        .map(|p| p.memory() / 1024)
        .sum())
}
