//! One queue item, from ack to settled: fetch the job, check out its commit, build what it
//! needs, run its entrypoint with the official environment (as a process of the agent's, or in
//! its own container), watch for a stop, and report. Every error fails the item with the stage
//! it happened in and a message a user can act on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::json;
use tokio::sync::watch;

use super::container::{
    self, container_name, label, Container, ContainerRun, ContainerSettings, ItemRecord, QueueFlags,
};
use super::env::{inheritable, JobEnv};
use super::process::{JobProcess, Launch};
use super::slots::{GpuLease, JobSlot, Slots};
use super::workspace::{build_mlwf, builds_mlwf, is_loopback, GitAccess, Workdir};
use crate::experiment::keys;
use crate::secrets::Redactor;
use crate::wandb::launch::{
    GitSource, JobFile, LaunchSpec, PoppedItem, Stage, JOB_FILE, REQUIREMENTS_FILE,
};
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
    pub containers: ContainerSettings,
    /// This agent's id on the containers it starts (see [`super::owner`]).
    pub owner: String,
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

/// A job artifact, downloaded: where its code is and how to start it.
struct FetchedJob {
    reference: String,
    file: JobFile,
    git: GitSource,
    dir: PathBuf,
}

/// How an item's job runs.
enum Runner {
    Process,
    Container(QueueFlags),
}

impl Runner {
    fn of(spec: &LaunchSpec, containers: &ContainerSettings) -> anyhow::Result<Self> {
        match spec.resource() {
            "local-process" => Ok(Self::Process),
            "local-container" => QueueFlags::parse(spec.runner_args(), &containers.extra_flags)
                .map(Self::Container),
            other => Err(anyhow!(
                "the item asks for resource {other:?}: mlwf agent runs local-process and                  local-container jobs"
            )),
        }
    }
}

/// A job whose process runs, and what it holds while it does.
struct Started<'a> {
    /// The job, or for a container job its `docker run` client.
    process: JobProcess,
    container: Option<Container>,
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
        let runner = Runner::of(spec, &ctx.containers).map_err(at(Stage::Agent))?;
        let job = match (spec.job.as_deref(), &runner) {
            (Some(reference), _) => {
                Some(self.fetch_job(reference).await.map_err(at(Stage::Agent))?)
            }
            // An image-only item runs the image as it is, as the official agent does.
            (None, Runner::Container(_)) if spec.docker_image().is_some() => None,
            (None, _) => {
                return Err(at(Stage::Agent)(anyhow!(
                    "the item names no job: mlwf agent runs job specs (`wandb launch --job …`, \
                     `mlwf launch`), and image specs (`docker.docker_image`) on \
                     local-container queues"
                )))
            }
        };
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
        let checkout = match &job {
            Some(job) => Some(self.checkout(job).await.map_err(at(Stage::Agent))?),
            None => None,
        };
        let mut argv = spec
            .overrides
            .entry_point
            .clone()
            .or_else(|| job.as_ref().map(|j| j.file.source.entrypoint.clone()))
            .unwrap_or_default();
        // An image's own entrypoint takes the args when nothing replaces it.
        let own_entrypoint = !argv.is_empty();
        argv.extend(spec.overrides.args.iter().cloned());
        if let (Some(job), false) = (&job, own_entrypoint) {
            return Err(at(Stage::Agent)(anyhow!(
                "job {} has no entrypoint",
                job.reference
            )));
        }
        let settings = ctx.client.settings();
        let base_url = settings.base_url.as_str().trim_end_matches('/').to_owned();
        let mut env = JobEnv {
            spec,
            entity,
            project,
            base_url: &base_url,
            api_key: settings.api_key.as_ref().map(|k| k.expose_secret()),
            run_id: self.run_id,
            queue: self.queue,
            queue_entity: &ctx.entity,
            item: &self.item.id,
            job: job.as_ref().map(|j| j.reference.as_str()),
            gpus: gpus.visible_devices(),
            path_prefix: None,
            pass_env: &ctx.pass_env,
        };
        let (process, container) = match (&runner, &job, &checkout) {
            (Runner::Process, Some(job), Some(checkout)) => {
                let program = self.program(&argv[0], checkout, &job.git.remote).await?;
                let requirements = job.dir.join(REQUIREMENTS_FILE);
                if std::fs::metadata(&requirements).is_ok_and(|meta| meta.len() > 0) {
                    let venv = ctx
                        .workdir
                        .venv(&requirements)
                        .await
                        .map_err(at(Stage::Build))?;
                    env.path_prefix = Some(venv.join("bin").into_os_string());
                }
                let args: Vec<OsString> = argv[1..].iter().map(OsString::from).collect();
                let process =
                    self.spawn(&program, &args, checkout, &env.build(std::env::vars_os()))?;
                (process, None)
            }
            (Runner::Container(queue), _, checkout) => {
                let record = ItemRecord {
                    queue: self.queue.to_owned(),
                    item: self.item.id.clone(),
                    run_id: self.run_id.to_owned(),
                    entity: entity.to_owned(),
                    project: project.to_owned(),
                    argv: argv.clone(),
                    spec: spec.clone(),
                };
                let host_network = settings
                    .base_url
                    .host_str()
                    .is_some_and(|host| is_loopback(host.trim_matches(['[', ']'])));
                let (process, container) = self
                    .start_container(
                        &record,
                        queue,
                        env,
                        checkout.as_deref(),
                        own_entrypoint,
                        host_network,
                    )
                    .map_err(at(Stage::Run))?;
                (process, Some(container))
            }
            (Runner::Process, _, _) => unreachable!("local-process items have a job"),
        };
        let what = match &job {
            Some(job) => format!("at {:.10}", job.git.commit),
            None => format!("in image {}", spec.docker_image().unwrap_or_default()),
        };
        println!(
            "mlwf agent: item {} is run {} of {entity}/{project}: {} {what}",
            self.item.id,
            self.run_id,
            argv.join(" "),
        );
        Ok(Started {
            process,
            container,
            argv,
            entity,
            project,
            _gpus: gpus,
        })
    }

    /// A fresh checkout of the job's commit (on its branch when the launch named one).
    async fn checkout(&self, job: &FetchedJob) -> anyhow::Result<PathBuf> {
        let branch = self
            .item
            .spec
            .overrides
            .run_config
            .get(keys::config::BRANCH)
            .and_then(|b| b.as_str())
            .filter(|b| crate::git::valid_branch(b).is_ok());
        self.ctx
            .workdir
            .checkout(
                &self.ctx.access,
                &job.git.remote,
                &job.git.commit,
                branch,
                &format!("{}/code", self.workspace),
            )
            .await
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
            Err(why) => {
                let status = match &started.container {
                    Some(container) => container.stop(&mut started.process, ctx.grace).await,
                    None => started.process.stop(ctx.grace).await,
                };
                (why, status)
            }
        }
    }

    fn spawn(
        &self,
        program: &Path,
        args: &[OsString],
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<JobProcess, Failure> {
        JobProcess::start(Launch {
            program,
            args,
            cwd,
            env,
            prefix: format!("[{}] ", self.run_id),
            redactor: self.ctx.redactor.clone(),
        })
        .map_err(at(Stage::Run))
    }

    /// `docker run` of the job in its image: the official variables, of the agent's own only
    /// what `--pass-env` names, in a private env file; the item's record beside it for an agent
    /// that restarts.
    fn start_container(
        &self,
        record: &ItemRecord,
        queue: &QueueFlags,
        mut env: JobEnv<'_>,
        checkout: Option<&Path>,
        own_entrypoint: bool,
        host_network: bool,
    ) -> anyhow::Result<(JobProcess, Container)> {
        let ctx = self.ctx;
        let spec = &self.item.spec;
        let image = spec
            .docker_image()
            .or(queue.image.as_deref())
            .or(ctx.containers.image.as_deref())
            .context(
                "the job names no image (docker.docker_image, or the queue's                  builder.base_image) and the agent has no default: start it with --image",
            )?;
        // Inside the container the job's GPUs are its only ones: docker numbers them from 0.
        let devices = env.gpus.take();
        let passed =
            std::env::vars_os().filter(|(name, _)| ctx.pass_env.iter().any(|p| name == p.as_str()));
        let mut vars = env.build(passed);
        for entry in &queue.env {
            let (name, value) = match entry.split_once('=') {
                Some((name, value)) => (name.to_owned(), OsString::from(value)),
                // Docker's bare `-e NAME` takes the client's value: never one the agent withholds.
                None if inheritable(entry, &ctx.pass_env) => match std::env::var_os(entry) {
                    Some(value) => (entry.clone(), value),
                    None => continue,
                },
                None => continue,
            };
            vars.retain(|(n, _)| *n != *name);
            vars.push((name.into(), value));
        }
        let workspace = ctx.workdir.root().join("runs").join(self.workspace);
        std::fs::create_dir_all(&workspace)
            .with_context(|| format!("creating {}", workspace.display()))?;
        let env_file = workspace.join("job.env");
        container::write_env_file(&env_file, &vars)?;
        let recorded = serde_json::to_vec(record).context("recording the item")?;
        std::fs::write(workspace.join(container::RECORD_FILE), recorded)
            .context("recording the item")?;
        let name = container_name(&self.item.id, self.run_id);
        let mirrors = ctx.workdir.root().join("mirrors");
        let labels = [
            (label::WORKDIR, ctx.workdir.root().display().to_string()),
            (label::OWNER, ctx.owner.clone()),
            (label::ITEM, self.item.id.clone()),
            (label::RUN, self.run_id.to_owned()),
            (label::QUEUE, self.queue.to_owned()),
            (label::WORKSPACE, self.workspace.to_owned()),
        ];
        let args = ContainerRun {
            image,
            name: &name,
            labels: &labels,
            env_file: &env_file,
            code: checkout.map(|checkout| (checkout, mirrors.as_path())),
            gpus: devices.as_deref(),
            host_network,
            queue,
            argv: &record.argv,
            own_entrypoint,
        }
        .args();
        let client = container::client_env(std::env::vars_os());
        let process = self
            .spawn(&ctx.containers.docker, &args, &workspace, &client)
            .map_err(|failure| failure.error)?;
        Ok((process, Container::new(&ctx.containers, name)))
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
        requeue(
            self.ctx,
            &ItemRecord {
                queue: self.queue.to_owned(),
                item: self.item.id.clone(),
                run_id: self.run_id.to_owned(),
                entity: started.entity.to_owned(),
                project: started.project.to_owned(),
                argv: started.argv.clone(),
                spec: self.item.spec.clone(),
            },
        )
        .await
    }

    /// Downloads the job artifact (every file checked against the manifest's MD5) and reads
    /// its `wandb-job.json`: a git job.
    async fn fetch_job(&self, reference: &str) -> anyhow::Result<FetchedJob> {
        let parsed: ArtifactRef = reference
            .parse()
            .with_context(|| format!("job reference {reference:?}"))?;
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
            .download_artifact(&parsed, &dir)
            .await
            .with_context(|| format!("fetching job {reference}"))?;
        let text = std::fs::read(dir.join(JOB_FILE))
            .with_context(|| format!("job {reference} has no {JOB_FILE}"))?;
        let file: JobFile = serde_json::from_slice(&text)
            .with_context(|| format!("the {JOB_FILE} of job {reference} is malformed"))?;
        let git = file.source.git.clone().with_context(|| {
            format!(
                "job {reference} is a {:?} job: mlwf agent runs git jobs (code-artifact and \
                 image jobs are not supported yet)",
                file.source_type
            )
        })?;
        Ok(FetchedJob {
            reference: reference.to_owned(),
            file,
            git,
            dir,
        })
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

/// The item `record` again, to resume the same run: from its latest checkpoint when the job is
/// the trainer and its run logged one.
pub async fn requeue(ctx: &JobContext, record: &ItemRecord) -> Requeue {
    let ItemRecord {
        entity,
        project,
        run_id,
        argv,
        ..
    } = record;
    let mut spec = record.spec.clone();
    spec.run_id = Some(run_id.clone());
    spec.resume_count += 1;
    let trainer = argv.len() >= 2 && argv[0] == "mlwf" && argv[1] == "train";
    let checkpoint = ArtifactRef {
        entity: Some(entity.clone()),
        project: Some(project.clone()),
        name: keys::checkpoint_artifact(run_id),
        alias: "latest".into(),
    };
    if trainer && ctx.client.artifact(&checkpoint).await.is_ok() {
        spec.overrides.run_config.insert(
            "run.resume_from".into(),
            json!(format!(
                "artifact:{entity}/{project}/{}:latest",
                checkpoint.name
            )),
        );
    }
    Requeue {
        queue: record.queue.clone(),
        item: record.item.clone(),
        spec,
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
