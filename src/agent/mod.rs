//! `mlwf agent`: a W&B Launch agent with the `local-process` and `local-container` runners. It
//! registers, polls its queues in turn while it has free slots, and runs each item as a job (see
//! [`job`]). It tells the server what it is doing (POLLING, RUNNING, and KILLED when it stops,
//! which the official agent never sends), and on SIGTERM/SIGINT it stops its jobs and puts them
//! back in their queues so that the next agent resumes their runs. Containers that an agent
//! killed outright left running are stopped and requeued by the next agent on the same folder.

mod container;
mod env;
mod job;
mod process;
mod slots;
mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use container::ContainerSettings;
pub use workspace::GitAccess;

use crate::connect::Store;
use crate::secrets::Redactor;
use crate::wandb::launch::AgentStatus;

use self::job::{Ended, JobContext, Requeue};
use self::slots::Slots;
use self::workspace::Workdir;

/// How often a running job's run is checked for a Stop from the UI.
const STOP_POLL: Duration = Duration::from_secs(2);
/// How often an idle agent asks whether the UI wants it to stop polling.
const STOP_POLLING_CHECK: Duration = Duration::from_secs(10);
/// What W&B's `max_jobs: -1` ("no limit") becomes.
const UNLIMITED_JOBS: usize = 1024;
/// How often the poll loop touches its heartbeat file, and how old the file may be before
/// `mlwf agent --healthcheck` calls the agent stuck.
const HEARTBEAT: Duration = Duration::from_secs(10);
const HEARTBEAT_STALE: Duration = Duration::from_secs(90);
const HEARTBEAT_FILE: &str = "heartbeat";

/// What the agent does, resolved by the command.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub queues: Vec<String>,
    pub max_jobs: usize,
    pub gpus: Vec<usize>,
    pub max_items: Option<usize>,
    pub exit_when_idle: bool,
    pub poll: Duration,
    pub grace: Duration,
    pub workdir: PathBuf,
    pub access: GitAccess,
    pub pass_env: Vec<String>,
    pub containers: ContainerSettings,
}

/// What an agent did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ran: usize,
    pub failed: usize,
    pub requeued: usize,
}

/// Runs until `stop` resolves (a signal), `max_items` items have ended, the queues are empty
/// with `exit_when_idle`, or the W&B UI asks the agent to stop.
pub async fn run(
    store: &Store,
    settings: AgentSettings,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let client = &store.client;
    let entity = &store.entity;
    if settings.queues.is_empty() {
        bail!("no queue to poll: pass --queue NAME (or name queues in --config)");
    }
    let mut queue_ids = Vec::new();
    for name in &settings.queues {
        let queue = client.run_queue(entity, name).await?.with_context(|| {
            format!("run queue {name:?} does not exist in {entity}: create it with `mlwf queue create {name}`")
        })?;
        queue_ids.push(queue.id);
    }
    let hostname = crate::wandb::hostname().unwrap_or_else(|| "unknown".into());
    let config = json!({
        "entity": entity,
        "queues": settings.queues,
        "max_jobs": settings.max_jobs,
        "gpus": settings.gpus,
    });
    let agent = client
        .create_launch_agent(
            entity,
            &queue_ids,
            &hostname,
            &config,
            &format!("mlwf@{}", env!("CARGO_PKG_VERSION")),
        )
        .await
        .context("registering the launch agent")?;
    let key = client
        .settings()
        .api_key
        .as_ref()
        .map(|k| k.expose_secret().to_owned());
    let token = settings
        .access
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    let workdir = Workdir::new(settings.workdir.clone())?;
    let owner = Owner::claim(workdir.root())?;
    let ctx = Arc::new(JobContext {
        client: client.clone(),
        entity: entity.clone(),
        project: store.project.clone(),
        workdir,
        redactor: Redactor::new(key.into_iter().chain(token)),
        access: settings.access.clone(),
        slots: Slots::new(settings.max_jobs, &settings.gpus),
        grace: settings.grace,
        stop_poll: STOP_POLL,
        pass_env: settings.pass_env.clone(),
        containers: settings.containers.clone(),
        owner: owner.id.clone(),
    });
    for requeue in recover(&ctx).await {
        push_requeue(
            &ctx,
            &requeue,
            "left running by an agent that ended without stopping it",
        )
        .await;
    }
    println!(
        "mlwf agent: polling {} of {entity} on the {} with up to {} job(s){}",
        settings.queues.join(", "),
        store.location,
        settings.max_jobs,
        if settings.gpus.is_empty() {
            String::new()
        } else {
            format!(" on GPUs {:?}", settings.gpus)
        }
    );
    let mut agent_loop = Loop {
        ctx,
        settings: &settings,
        agent: &agent,
        jobs: JoinSet::new(),
        summary: Summary::default(),
        shutdown: watch::channel(false).0,
        requeue: Vec::new(),
    };
    let result = agent_loop.poll(stop).await;
    let ended = agent_loop.finish().await;
    let status = client
        .update_launch_agent(&agent, AgentStatus::Killed)
        .await;
    if let Err(err) = status {
        eprintln!("mlwf agent: could not report its own stop: {err}");
    }
    result?;
    ended
}

struct Loop<'a> {
    ctx: Arc<JobContext>,
    settings: &'a AgentSettings,
    agent: &'a str,
    jobs: JoinSet<Ended>,
    summary: Summary,
    shutdown: watch::Sender<bool>,
    requeue: Vec<Requeue>,
}

impl Loop<'_> {
    async fn poll(&mut self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(stop);
        let client = self.ctx.client.clone();
        let queues = &self.settings.queues;
        let mut taken = 0usize;
        let mut next_queue = 0usize;
        let mut status = AgentStatus::Polling;
        let mut last_stop_check = tokio::time::Instant::now();
        let mut last_beat: Option<tokio::time::Instant> = None;
        client.update_launch_agent(self.agent, status).await?;
        loop {
            if last_beat.is_none_or(|beat| beat.elapsed() >= HEARTBEAT) {
                last_beat = Some(tokio::time::Instant::now());
                let beat = self.ctx.workdir.root().join(HEARTBEAT_FILE);
                if let Err(err) = std::fs::write(&beat, b"") {
                    tracing::warn!("cannot touch {}: {err}", beat.display());
                }
            }
            while let Some(ended) = self.jobs.try_join_next() {
                self.record(ended);
            }
            let wanted = if self.jobs.is_empty() {
                AgentStatus::Polling
            } else {
                AgentStatus::Running
            };
            if wanted != status {
                status = wanted;
                client.update_launch_agent(self.agent, status).await?;
            }
            if self.settings.max_items.is_some_and(|max| taken >= max) {
                if self.jobs.is_empty() {
                    return Ok(());
                }
            } else if let Some(slot) = self.ctx.slots.try_job() {
                let mut popped = None;
                for offset in 0..queues.len() {
                    let index = (next_queue + offset) % queues.len();
                    let queue = &queues[index];
                    match client
                        .pop_from_queue(&self.ctx.entity, queue, Some(self.agent))
                        .await
                    {
                        Ok(Some(item)) => {
                            next_queue = index + 1;
                            popped = Some((queue.clone(), item));
                            break;
                        }
                        Ok(None) => {}
                        Err(err) => eprintln!("mlwf agent: polling {queue}: {err}"),
                    }
                }
                if let Some((queue, item)) = popped {
                    taken += 1;
                    let ctx = self.ctx.clone();
                    let shutdown = self.shutdown.subscribe();
                    self.jobs.spawn(job::run(ctx, queue, item, shutdown, slot));
                    continue;
                }
                if self.settings.exit_when_idle && self.jobs.is_empty() {
                    return Ok(());
                }
            }
            if last_stop_check.elapsed() >= STOP_POLLING_CHECK {
                last_stop_check = tokio::time::Instant::now();
                if client
                    .agent_stop_requested(self.agent)
                    .await
                    .unwrap_or(false)
                {
                    println!("mlwf agent: asked to stop polling from the W&B UI");
                    self.drain().await;
                    return Ok(());
                }
            }
            tokio::select! {
                _ = &mut stop => {
                    println!("mlwf agent: stopping: its jobs get SIGTERM and go back to their queues");
                    self.shutdown.send_replace(true);
                    return Ok(());
                }
                Some(ended) = self.jobs.join_next() => self.record(ended),
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Waits for the running jobs to end on their own.
    async fn drain(&mut self) {
        while let Some(ended) = self.jobs.join_next().await {
            self.record(ended);
        }
    }

    fn record(&mut self, ended: Result<Ended, tokio::task::JoinError>) {
        match ended {
            Ok(Ended::Ran) => self.summary.ran += 1,
            Ok(Ended::Failed) => self.summary.failed += 1,
            Ok(Ended::Skipped) => {}
            Ok(Ended::Preempted(requeue)) => self.requeue.push(*requeue),
            Err(err) => {
                eprintln!("mlwf agent: a job task ended abnormally: {err}");
                self.summary.failed += 1;
            }
        }
    }

    /// Waits for stopped jobs and puts preempted items back in their queues.
    async fn finish(mut self) -> anyhow::Result<Summary> {
        self.drain().await;
        for requeue in std::mem::take(&mut self.requeue) {
            if push_requeue(&self.ctx, &requeue, "preempted by the agent's shutdown").await {
                self.summary.requeued += 1;
            }
        }
        Ok(self.summary)
    }
}

/// Pushes `requeue` and notes on the old item `why` and where it went; fails the old item when
/// the push fails, so that nothing is silently lost.
async fn push_requeue(ctx: &JobContext, requeue: &Requeue, why: &str) -> bool {
    let client = &ctx.client;
    let pushed = client
        .push_to_queue(&ctx.entity, &requeue.queue, &requeue.spec, None)
        .await;
    match pushed {
        Ok(item) => {
            let note = format!(
                "{why}; requeued as item {item} to resume run {}",
                requeue.spec.run_id.as_deref().unwrap_or("?")
            );
            println!("mlwf agent: item {}: {note}", requeue.item);
            let _ = client.warn_item(&requeue.item, "agent", &note).await;
            true
        }
        Err(err) => {
            let message = format!("{why}, and could not be requeued: {err}");
            eprintln!("mlwf agent: item {}: {message}", requeue.item);
            let _ = client
                .fail_item(&requeue.item, crate::wandb::launch::Stage::Agent, &message)
                .await;
            false
        }
    }
}

/// An agent's claim on the containers it starts: an exclusive lock on `owners/<id>.lock` in
/// its folder, held while it lives. An agent that can take another owner's lock knows that
/// owner is gone, and that its containers are leftovers.
struct Owner {
    id: String,
    path: PathBuf,
    _lock: std::fs::File,
}

impl Owner {
    fn claim(root: &Path) -> anyhow::Result<Self> {
        let dir = root.join("owners");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Self::prune(&dir);
        let id = crate::wandb::random_id(12);
        let path = dir.join(format!("{id}.lock"));
        let lock =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        lock.try_lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Self {
            id,
            path,
            _lock: lock,
        })
    }

    /// Removes the locks of agents that are gone; a lock younger than a minute may belong to
    /// an agent between creating and taking it.
    fn prune(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() > Duration::from_secs(60));
            let free = std::fs::File::open(entry.path()).is_ok_and(|lock| lock.try_lock().is_ok());
            if old && free {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the agent `id` of the folder `root` still runs.
    fn alive(root: &Path, id: &str) -> bool {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return false;
        }
        match std::fs::File::open(Self::lock_path(root, id)) {
            Ok(lock) => lock.try_lock().is_err(),
            Err(_) => false,
        }
    }

    fn lock_path(root: &Path, id: &str) -> PathBuf {
        root.join("owners").join(format!("{id}.lock"))
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Containers of this folder whose agent is gone: each is stopped and removed, and its item
/// comes back to be requeued (resuming its run), so that it is neither orphaned nor run twice.
async fn recover(ctx: &JobContext) -> Vec<Requeue> {
    let root = ctx.workdir.root();
    let leftovers = match container::leftovers(&ctx.containers, root).await {
        Ok(Some(leftovers)) => leftovers,
        Ok(None) => return Vec::new(),
        Err(err) => {
            eprintln!("mlwf agent: cannot look for containers of an earlier agent: {err:#}");
            return Vec::new();
        }
    };
    let mut requeues = Vec::new();
    for left in leftovers {
        if left.owner == ctx.owner || Owner::alive(root, &left.owner) {
            continue;
        }
        println!(
            "mlwf agent: container {} was left by an agent that is gone: stopping it",
            left.name
        );
        let stopped = container::Container::new(&ctx.containers, left.name.clone())
            .stop_and_remove(ctx.grace)
            .await;
        if let Err(err) = stopped {
            eprintln!("mlwf agent: cannot stop container {}: {err:#}", left.name);
            continue;
        }
        let plain = !left.workspace.is_empty()
            && !left.workspace.contains(['/', '\\'])
            && left.workspace != ".."
            && left.workspace != ".";
        if plain {
            let dir = root.join("runs").join(&left.workspace);
            let record = std::fs::read(dir.join(container::RECORD_FILE))
                .map_err(anyhow::Error::from)
                .and_then(|text| Ok(serde_json::from_slice::<container::ItemRecord>(&text)?));
            match record {
                Ok(record) => requeues.push(job::requeue(ctx, &record).await),
                Err(err) => eprintln!(
                    "mlwf agent: container {} has no readable item record ({err:#}); its item \
                     is left as it is",
                    left.name
                ),
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_file(Owner::lock_path(root, &left.owner));
    }
    requeues
}

/// `mlwf agent --healthcheck`: whether the agent of folder `workdir` is polling (its heartbeat
/// is fresh). The error says what is wrong.
pub fn healthcheck(workdir: &Path) -> anyhow::Result<()> {
    let beat = workdir.join(HEARTBEAT_FILE);
    let touched = std::fs::metadata(&beat)
        .and_then(|meta| meta.modified())
        .with_context(|| format!("no heartbeat at {}: is the agent running?", beat.display()))?;
    let age = touched.elapsed().unwrap_or_default();
    if age > HEARTBEAT_STALE {
        bail!(
            "the agent's last heartbeat is {}s old: its poll loop is stuck",
            age.as_secs()
        );
    }
    Ok(())
}

/// The parts of a W&B launch agent config file (`launch-config.yaml`) mlwf reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    pub entity: Option<String>,
    pub queues: Vec<String>,
    pub max_jobs: Option<usize>,
}

impl ConfigFile {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let value: Value = serde_yaml_ng::from_str(text).context("the agent config is not YAML")?;
        let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let queues = match value.get("queues") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|q| {
                    q.as_str()
                        .map(str::to_owned)
                        .context("`queues` must list names")
                })
                .collect::<anyhow::Result<_>>()?,
            Some(Value::String(one)) => vec![one.clone()],
            Some(_) => bail!("`queues` must list queue names"),
            None => string("queue").into_iter().collect(),
        };
        let max_jobs = match value.get("max_jobs") {
            None | Some(Value::Null) => None,
            // W&B's -1 means "no limit"; a process agent still needs a bound.
            Some(v) if v.as_i64() == Some(-1) => Some(UNLIMITED_JOBS),
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .context("`max_jobs` must be a number")?,
            ),
        };
        Ok(Self {
            entity: string("entity"),
            queues,
            max_jobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_agent_configs_are_read() {
        let config =
            ConfigFile::parse("entity: local\nqueues: [lq, gpu]\nmax_jobs: 2\nverbosity: 2\n")
                .unwrap();
        assert_eq!(
            config,
            ConfigFile {
                entity: Some("local".into()),
                queues: vec!["lq".into(), "gpu".into()],
                max_jobs: Some(2)
            }
        );
        assert!(ConfigFile::parse("queues: 3").is_err());
        assert!(ConfigFile::parse(": :").is_err());
    }
}
