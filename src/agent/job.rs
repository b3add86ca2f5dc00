//! One queue item, from ack to settled: fetch the job, check out its commit, build what it
//! needs, run its entrypoint with the official environment, watch for a stop, and report.
//! Every error fails the item with the stage it happened in and a message a user can act on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::json;
use tokio::sync::watch;

use super::env::JobEnv;
use super::process::{JobProcess, Launch};
use super::slots::{GpuLease, JobSlot, Slots};
use super::workspace::{build_mlwf, builds_mlwf, GitAccess, Workdir};
use crate::experiment::keys;
use crate::secrets::Redactor;
use crate::wandb::launch::{JobFile, LaunchSpec, PoppedItem, Stage, JOB_FILE, REQUIREMENTS_FILE};
use crate::wandb::{random_id, ArtifactRef, Client, RunState, RUN_ID_LEN};

/// What every job of an agent shares.
pub struct JobContext {
    pub client: Client,
    /// The agent's entity (its queues'), and the project of runs whose spec names none.
    pub entity: String,
    pub project: String,
    pub workdir: Workdir,
    pub access: GitAccess,
    pub slots: Slots,
    pub grace: Duration,
    /// How often a running job's run is checked for a stop from the UI.
    pub stop_poll: Duration,
    pub pass_env: Vec<String>,
    /// Masks the agent's API key and git token in everything it prints or reports.
    pub redactor: Redactor,
}

/// How an item ended for the agent.
#[derive(Debug)]
pub enum Ended {
    /// The job ran; its run says how it went.
    Ran,
    /// The item was failed with a reason.
    Failed,
    /// Another agent claimed it first.
    Skipped,
    /// The agent is shutting down and stopped the job: it goes back to the queue to resume.
    Preempted(Box<Requeue>),
}

/// An item to push again so that another agent resumes its run.
#[derive(Debug)]
pub struct Requeue {
    pub queue: String,
    pub item: String,
    pub spec: LaunchSpec,
}

/// An error and the stage it belongs to.
struct Failure {
    stage: Stage,
    error: anyhow::Error,
}

fn at(stage: Stage) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { stage, error }
}

/// Runs one popped item; `shutdown` turns true when the agent stops.
pub async fn run(
    ctx: Arc<JobContext>,
    queue: String,
    item: PoppedItem,
    shutdown: watch::Receiver<bool>,
    slot: JobSlot,
) -> Ended {
    let _slot = slot;
    let run_id = item
        .spec
        .run_id
        .clone()
        .unwrap_or_else(|| random_id(RUN_ID_LEN));
    match ctx.client.ack_item(&item.id, &run_id).await {
        Ok(true) => {}
        Ok(false) => return Ended::Skipped,
        Err(err) => {
            tracing::warn!(item = %item.id, "ack failed: {err}");
            eprintln!("mlwf agent: could not claim item {}: {err}", item.id);
            return Ended::Skipped;
        }
    }
    let workspace = format!("{run_id}-{}", random_id(6));
    let outcome = Attempt {
        ctx: &ctx,
        queue: &queue,
        item: &item,
        run_id: &run_id,
        workspace: &workspace,
    }
    .run(shutdown)
    .await;
    let _ = std::fs::remove_dir_all(ctx.workdir.root().join("runs").join(&workspace));
    match outcome {
        Ok(ended) => ended,
        Err(Failure { stage, error }) => {
            let message = ctx.redactor.redact(&format!("{error:#}"));
            eprintln!(
                "mlwf agent: item {} failed ({}): {message}",
                item.id,
                stage.as_str()
            );
            if let Err(err) = ctx.client.fail_item(&item.id, stage, &message).await {
                eprintln!(
                    "mlwf agent: could not report the failure of item {}: {err}",
                    item.id
                );
            }
            Ended::Failed
        }
    }
}

struct Attempt<'a> {
    ctx: &'a JobContext,
    queue: &'a str,
    item: &'a PoppedItem,
    run_id: &'a str,
    workspace: &'a str,
}

/// Why a running job ended.
enum Exit {
    Own,
    StoppedFromUi,
    Shutdown,
}

/// A job whose process runs, and what it holds while it does.
struct Started<'a> {
    process: JobProcess,
    argv: Vec<String>,
    entity: &'a str,
    project: &'a str,
    /// Freed when the job is done with, whichever way it ends.
    _gpus: GpuLease,
}

impl<'a> Attempt<'a> {
    async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<Ended, Failure> {
        let mut started = self.start().await?;
        let (why, status) = self.watch(&mut started, &mut shutdown).await;
        let status = status
            .context("waiting for the job")
            .map_err(at(Stage::Run))?;
        self.settle(&started, why, status).await
    }

    /// Everything up to a running process: the job, its GPUs, its checkout, what it needs
    /// built, its environment.
    async fn start(&self) -> Result<Started<'a>, Failure> {
        let ctx = self.ctx;
        let spec = &self.item.spec;
        let entity = spec.entity.as_deref().unwrap_or(&ctx.entity);
        let project = spec.project.as_deref().unwrap_or(&ctx.project);
        let job_ref = spec.job.as_deref().ok_or_else(|| {
            at(Stage::Agent)(anyhow!(
                "the item names no job: mlwf agent runs job specs (`wandb launch --job …`, \
                 `mlwf launch`); image and uri specs are not supported by local-process"
            ))
        })?;
        let (job, job_dir) = self.fetch_job(job_ref).await.map_err(at(Stage::Agent))?;
        let git = job.source.git.as_ref().ok_or_else(|| {
            at(Stage::Agent)(anyhow!(
                "job {job_ref} is a {:?} job: mlwf agent runs git jobs (code-artifact and image \
                 jobs are not supported yet)",
                job.source_type
            ))
        })?;
        let wanted = if ctx.slots.gpu_count() > 0 {
            spec.gpus()
        } else {
            0
        };
        let gpus = ctx.slots.gpus(wanted).await.map_err(|have| {
            at(Stage::Agent)(anyhow!(
                "the job asks for {wanted} GPUs; this agent has {have}"
            ))
        })?;
        let branch = spec
            .overrides
            .run_config
            .get(keys::config::BRANCH)
            .and_then(|b| b.as_str())
            .filter(|b| crate::git::valid_branch(b).is_ok());
        let checkout = ctx
            .workdir
            .checkout(
                &ctx.access,
                &git.remote,
                &git.commit,
                branch,
                &format!("{}/code", self.workspace),
            )
            .await
            .map_err(at(Stage::Agent))?;

        let mut argv = spec
            .overrides
            .entry_point
            .clone()
            .unwrap_or_else(|| job.source.entrypoint.clone());
        argv.extend(spec.overrides.args.iter().cloned());
        if argv.is_empty() {
            return Err(at(Stage::Agent)(anyhow!("job {job_ref} has no entrypoint")));
        }
        let program = self.program(&argv[0], &checkout, &git.remote).await?;
        let requirements = job_dir.join(REQUIREMENTS_FILE);
        let path_prefix = match std::fs::metadata(&requirements) {
            Ok(meta) if meta.len() > 0 => Some(
                ctx.workdir
                    .venv(&requirements)
                    .await
                    .map_err(at(Stage::Build))?
                    .join("bin")
                    .into_os_string(),
            ),
            _ => None,
        };
        let settings = ctx.client.settings();
        let base_url = settings.base_url.as_str().trim_end_matches('/').to_owned();
        let env = JobEnv {
            spec,
            entity,
            project,
            base_url: &base_url,
            api_key: settings.api_key.as_ref().map(|k| k.expose_secret()),
            run_id: self.run_id,
            queue: self.queue,
            queue_entity: &ctx.entity,
            item: &self.item.id,
            job: job_ref,
            gpus: gpus.visible_devices(),
            path_prefix,
            pass_env: &ctx.pass_env,
        }
        .build(std::env::vars_os());
        let process = JobProcess::start(Launch {
            program: &program,
            args: &argv[1..],
            cwd: &checkout,
            env: &env,
            prefix: format!("[{}] ", self.run_id),
            redactor: ctx.redactor.clone(),
        })
        .map_err(at(Stage::Run))?;
        println!(
            "mlwf agent: item {} is run {} of {entity}/{project}: {} at {:.10}",
            self.item.id,
            self.run_id,
            argv.join(" "),
            git.commit
        );
        Ok(Started {
            process,
            argv,
            entity,
            project,
            _gpus: gpus,
        })
    }

    /// Waits for the job to end, stopping it on a Stop from the UI or the agent's shutdown.
    async fn watch(
        &self,
        started: &mut Started<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (Exit, std::io::Result<std::process::ExitStatus>) {
        let ctx = self.ctx;
        let (entity, project) = (started.entity, started.project);
        let mut poll = tokio::time::interval(ctx.stop_poll);
        poll.tick().await;
        let why = loop {
            tokio::select! {
                status = started.process.wait() => break Ok((Exit::Own, status)),
                _ = poll.tick() => {
                    let stop = ctx.client.run_stop_requested(entity, project, self.run_id).await;
                    if stop.unwrap_or(false) {
                        println!("mlwf agent: run {} was stopped from the UI; stopping its job", self.run_id);
                        break Err(Exit::StoppedFromUi);
                    }
                }
                _ = stopping(shutdown) => break Err(Exit::Shutdown),
            }
        };
        match why {
            Ok(exited) => exited,
            Err(why) => (why, started.process.stop(ctx.grace).await),
        }
    }

    /// What the ended job means for its item and its run.
    async fn settle(
        &self,
        started: &Started<'_>,
        why: Exit,
        status: std::process::ExitStatus,
    ) -> Result<Ended, Failure> {
        let (entity, project) = (started.entity, started.project);
        let run = self
            .ctx
            .client
            .run(entity, project, self.run_id)
            .await
            .ok()
            .flatten();
        match why {
            Exit::Shutdown => return Ok(Ended::Preempted(Box::new(self.requeue(started).await))),
            Exit::StoppedFromUi => {
                self.settle_run(run.as_ref()).await;
                return Ok(Ended::Ran);
            }
            Exit::Own => {}
        }
        if status.success() {
            if run.is_none() {
                return Err(at(Stage::Run)(anyhow!(
                    "the job exited successfully but never started its W&B run {} (does the \
                     entrypoint call wandb.init, or run `mlwf train`?); its last output:\n{}",
                    self.run_id,
                    started.process.tail()
                )));
            }
            return Ok(Ended::Ran);
        }
        self.settle_run(run.as_ref()).await;
        Err(at(Stage::Run)(anyhow!(
            "the job {} ({}); its last output:\n{}",
            describe_exit(&status),
            started.argv.join(" "),
            started.process.tail()
        )))
    }

    /// The item again, to resume the same run: from its latest checkpoint when it has one.
    async fn requeue(&self, started: &Started<'_>) -> Requeue {
        let (entity, project) = (started.entity, started.project);
        let mut spec = self.item.spec.clone();
        spec.run_id = Some(self.run_id.to_owned());
        spec.resume_count += 1;
        if self.resumable(&started.argv, entity, project).await {
            let from = format!(
                "artifact:{entity}/{project}/{}:latest",
                keys::checkpoint_artifact(self.run_id)
            );
            spec.overrides
                .run_config
                .insert("run.resume_from".into(), json!(from));
        }
        Requeue {
            queue: self.queue.to_owned(),
            item: self.item.id.clone(),
            spec,
        }
    }

    /// Downloads the job artifact (every file checked against the manifest's MD5) and reads
    /// its `wandb-job.json`.
    async fn fetch_job(&self, job_ref: &str) -> anyhow::Result<(JobFile, PathBuf)> {
        let reference: ArtifactRef = job_ref
            .parse()
            .with_context(|| format!("job reference {job_ref:?}"))?;
        let dir = self
            .ctx
            .workdir
            .root()
            .join("runs")
            .join(self.workspace)
            .join("job");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.ctx
            .client
            .download_artifact(&reference, &dir)
            .await
            .with_context(|| format!("fetching job {job_ref}"))?;
        let text = std::fs::read(dir.join(JOB_FILE))
            .with_context(|| format!("job {job_ref} has no {JOB_FILE}"))?;
        let job = serde_json::from_slice(&text)
            .with_context(|| format!("the {JOB_FILE} of job {job_ref} is malformed"))?;
        Ok((job, dir))
    }

    /// The program to start for `name`: a fork of mlwf is built and its binary runs; plain
    /// `mlwf` is this agent's own binary; anything else is looked up on the job's `PATH`.
    async fn program(
        &self,
        name: &str,
        checkout: &std::path::Path,
        remote: &str,
    ) -> Result<PathBuf, Failure> {
        if name != "mlwf" {
            return Ok(PathBuf::from(name));
        }
        if builds_mlwf(checkout) {
            println!("mlwf agent: building the repository's mlwf (cargo build --release --locked)");
            return build_mlwf(checkout, &self.ctx.workdir.target_dir(remote))
                .await
                .map_err(at(Stage::Build));
        }
        std::env::current_exe()
            .context("locating the mlwf binary")
            .map_err(at(Stage::Agent))
    }

    /// Whether a requeued job can resume from a checkpoint: it is the trainer and its run
    /// logged one.
    async fn resumable(&self, argv: &[String], entity: &str, project: &str) -> bool {
        let trainer = argv.len() >= 2 && argv[0] == "mlwf" && argv[1] == "train";
        if !trainer {
            return false;
        }
        let reference = ArtifactRef {
            entity: Some(entity.to_owned()),
            project: Some(project.to_owned()),
            name: keys::checkpoint_artifact(self.run_id),
            alias: "latest".into(),
        };
        self.ctx.client.artifact(&reference).await.is_ok()
    }

    /// A run still `running` after its process is gone is failed now rather than left for the
    /// server's silence timeout.
    async fn settle_run(&self, run: Option<&crate::wandb::RunInfo>) {
        if let Some(run) = run.filter(|r| r.state == RunState::Running) {
            if let Err(err) = self
                .ctx
                .client
                .set_run_state(&run.storage_id, "failed")
                .await
            {
                tracing::warn!(run = %run.id, "could not mark the run failed: {err}");
            }
        }
    }
}

/// Resolves once the agent is shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    loop {
        let stop = *shutdown.borrow_and_update();
        if stop {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "ended abnormally".to_owned(),
    }
}
