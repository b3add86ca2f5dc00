//! `mlwf launch`: a branch becomes a queued W&B Launch job. The branch is resolved to a commit
//! that an agent can clone, a `job` artifact names that commit and the entrypoint, and the item
//! pushed to the queue pins that job version, so a later launch cannot change what it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::connect::{Location, Store};
use crate::git::{self, RemoteForm, Repo};
use crate::wandb::launch::{
    ItemDetails, JobFile, LaunchSpec, Overrides, CLAIMED, FAILED, JOB_FILE, JOB_TYPE,
    REQUIREMENTS_FILE,
};
use crate::wandb::{safe_artifact_name, ArtifactSpec, RunState};

/// The remote an experiment branch is pushed to.
const REMOTE: &str = "origin";
/// How often `--wait` looks at the item and its run.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// What to launch, resolved by the command.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// A folder inside the repository.
    pub dir: PathBuf,
    /// `None`: the branch checked out.
    pub branch: Option<String>,
    pub queue: String,
    /// The run's config overrides (`--set`), checked by the caller.
    pub run_config: Map<String, Value>,
    pub entrypoint: Vec<String>,
    /// 0 (critical) to 3 (low).
    pub priority: Option<u8>,
    pub name: Option<String>,
}

/// A pushed item.
#[derive(Debug, Clone, Serialize)]
pub struct Launched {
    pub item: String,
    pub queue: String,
    pub entity: String,
    pub project: String,
    /// The pinned job version, `entity/project/job-…:vN`.
    pub job: String,
    pub branch: String,
    pub commit: String,
    pub remote: String,
    /// The code is a local repository only `mlwf agent` on this machine can clone.
    pub local_only: bool,
}

/// Where the code of a launch is: the remote an agent clones and the commit it checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    branch: String,
    commit: String,
    remote: String,
    local_only: bool,
}

/// Pushes `settings.branch` to `settings.queue` as a pinned job.
pub async fn launch(store: &Store, settings: &LaunchSettings) -> anyhow::Result<Launched> {
    let client = &store.client;
    let entity = &store.entity;
    if client.run_queue(entity, &settings.queue).await?.is_none() {
        bail!(
            "run queue {:?} does not exist in {entity}: create it with `mlwf queue create {}`",
            settings.queue,
            settings.queue
        );
    }
    let embedded = matches!(store.location, Location::Embedded { .. });
    let source = resolve_source(&settings.dir, settings.branch.as_deref(), embedded)?;
    let job = log_job(store, settings, &source).await?;

    let mut run_config = settings.run_config.clone();
    run_config.insert("branch".into(), Value::String(source.branch.clone()));
    run_config.insert("commit".into(), Value::String(source.commit.clone()));
    let spec = LaunchSpec {
        job: Some(job.clone()),
        entity: Some(entity.clone()),
        project: Some(store.project.clone()),
        name: settings.name.clone(),
        overrides: Overrides {
            run_config,
            ..Overrides::default()
        },
        ..LaunchSpec::default()
    };
    let item = client
        .push_to_queue(entity, &settings.queue, &spec, settings.priority)
        .await
        .with_context(|| format!("pushing {job} to run queue {:?}", settings.queue))?;
    Ok(Launched {
        item,
        queue: settings.queue.clone(),
        entity: entity.clone(),
        project: store.project.clone(),
        job,
        branch: source.branch,
        commit: source.commit,
        remote: source.remote,
        local_only: source.local_only,
    })
}

/// The branch's commit and a remote that has it, or why an agent could not run it.
fn resolve_source(dir: &Path, branch: Option<&str>, embedded: bool) -> anyhow::Result<Source> {
    let root = git::root(dir).with_context(|| {
        format!(
            "{} is not inside a git repository: an experiment is a branch, so launch from its \
             checkout",
            dir.display()
        )
    })?;
    let repo = Repo::at(&root);
    let branch = match branch {
        Some(branch) => branch.to_owned(),
        None => repo
            .current_branch()
            .context("HEAD is detached: check out the experiment's branch or pass --branch")?,
    };
    git::valid_branch(&branch)?;
    let changes = repo.uncommitted_changes()?;
    if !changes.is_empty() {
        bail!(
            "the work tree has uncommitted changes ({}): the agent runs a commit, not this work \
             tree, so commit them (or `git stash`) and launch again",
            summarize(&changes)
        );
    }
    let commit = repo
        .commit_of(&format!("refs/heads/{branch}"))
        .with_context(|| format!("there is no local branch {branch:?}"))?;
    let remote = repo.remote_url(REMOTE);
    let form = remote.as_deref().map(RemoteForm::of);
    if embedded && form != Some(RemoteForm::Cloneable) {
        return Ok(Source {
            branch,
            commit,
            remote: root.display().to_string(),
            local_only: true,
        });
    }
    let remote = match (remote, form) {
        (Some(url), Some(RemoteForm::Cloneable)) => url,
        (None, _) => bail!(
            "the repository has no remote {REMOTE:?}: a launch agent clones the branch from it. \
             Add one (`git remote add {REMOTE} git@github.com:you/repo.git`) and push {branch}"
        ),
        (Some(url), _) => bail!(
            "remote {REMOTE:?} is {url:?}, which the official W&B launch agent cannot clone (it \
             takes https://…, ssh://… and user@host:path remotes only): point {REMOTE} at such a \
             URL (`git remote set-url {REMOTE} git@github.com:you/repo.git`)"
        ),
    };
    match repo.remote_branch_commit(REMOTE, &branch)? {
        None => bail!(
            "branch {branch:?} is not on {REMOTE}: push it first (`git push -u {REMOTE} {branch}`)"
        ),
        Some(pushed) if pushed == commit => {}
        Some(pushed) if repo.is_ancestor(&commit, &pushed) => bail!(
            "branch {branch:?} is behind {REMOTE} ({pushed:.8} there, {commit:.8} here): \
             `git pull` first, so that you launch what you have looked at"
        ),
        Some(pushed) => bail!(
            "branch {branch:?} has commits that are not on {REMOTE} ({commit:.8} here, \
             {pushed:.8} there): `git push {REMOTE} {branch}` first"
        ),
    }
    Ok(Source {
        branch,
        commit,
        remote,
        local_only: false,
    })
}

fn summarize(changes: &[String]) -> String {
    let shown: Vec<&str> = changes.iter().take(3).map(|c| c.trim()).collect();
    match changes.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

/// Logs the job artifact (`wandb-job.json`, an empty `requirements.frozen.txt`) from a hidden
/// run that is deleted afterwards, as `wandb job create` does; returns the pinned reference.
async fn log_job(
    store: &Store,
    settings: &LaunchSettings,
    source: &Source,
) -> anyhow::Result<String> {
    let name = job_name(&source.remote);
    let job = JobFile::git(
        &source.remote,
        &source.commit,
        settings.entrypoint.clone(),
        &settings.run_config,
    );
    let files = tempfile::tempdir().context("a temporary folder for the job's files")?;
    let job_path = files.path().join(JOB_FILE);
    let requirements = files.path().join(REQUIREMENTS_FILE);
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job)?)
        .and_then(|()| std::fs::write(&requirements, ""))
        .context("writing the job's files")?;

    let run = store
        .start_side_run("cli_create_job")
        .await
        .context("starting the run that logs the job")?;
    let logged = run
        .log_artifact(
            ArtifactSpec::new(&name, JOB_TYPE)
                .file(JOB_FILE, &job_path)
                .file(REQUIREMENTS_FILE, &requirements)
                .alias("latest")
                .alias(branch_alias(&source.branch)),
        )
        .await;
    run.finish(i32::from(logged.is_err())).await?;
    let logged = logged.with_context(|| format!("logging job {name}"))?;
    store.client.delete_run(run.storage_id(), false).await?;
    let version = logged
        .version
        .with_context(|| format!("the server gave job {name} no version"))?;
    Ok(format!(
        "{}/{}/{name}:{version}",
        store.entity, store.project
    ))
}

/// `job-<repository name>`, in the characters artifact names allow.
fn job_name(remote: &str) -> String {
    let base = remote
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git");
    format!(
        "job-{}",
        safe_artifact_name(if base.is_empty() { "repo" } else { base })
    )
}

/// A branch as an artifact alias: aliases cannot hold `/` or `:`.
pub fn branch_alias(branch: &str) -> String {
    safe_artifact_name(branch)
}

/// How a followed item ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The item's run ended in `state`.
    Run { run: String, state: RunState },
    /// The agent gave the item up before or while running it.
    Failed { details: Option<ItemDetails> },
    /// The item left the queue without a run (cancelled).
    Gone,
}

/// What a wait is doing, for the progress line.
pub trait Progress {
    fn update(&self, message: &str);
}

/// Follows a pushed item until its run ends.
pub async fn wait(
    store: &Store,
    launched: &Launched,
    progress: &dyn Progress,
) -> anyhow::Result<Outcome> {
    let client = &store.client;
    let run = loop {
        let item = client
            .queue_item(&launched.entity, &launched.queue, &launched.item)
            .await?;
        let Some(item) = item else {
            return Ok(Outcome::Gone);
        };
        match (item.state.as_deref(), item.associated_run_id) {
            (Some(FAILED), _) => {
                return Ok(Outcome::Failed {
                    details: client.item_details(&launched.item).await?,
                })
            }
            (Some(CLAIMED), Some(run)) => break run,
            (state, _) => progress.update(&format!(
                "queued in {} ({})",
                launched.queue,
                state.unwrap_or("unknown").to_lowercase()
            )),
        }
        tokio::time::sleep(WAIT_POLL).await;
    };
    loop {
        // An item can still fail after its claim (the job crashed before starting its run).
        if let Some(item) = client
            .queue_item(&launched.entity, &launched.queue, &launched.item)
            .await?
        {
            if item.state.as_deref() == Some(FAILED) {
                return Ok(Outcome::Failed {
                    details: client.item_details(&launched.item).await?,
                });
            }
        }
        match client
            .run(&launched.entity, &launched.project, &run)
            .await?
        {
            Some(info) if info.state.is_terminal() => {
                return Ok(Outcome::Run {
                    run,
                    state: info.state,
                })
            }
            Some(info) => progress.update(&format!("run {run} {}", info.state.as_str())),
            None => progress.update(&format!("claimed by an agent as run {run}, starting")),
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_and_aliases_use_allowed_characters() {
        assert_eq!(job_name("git@github.com:me/nano-gpt.git"), "job-nano-gpt");
        assert_eq!(job_name("https://github.com/me/r.git/"), "job-r");
        assert_eq!(job_name("/home/me/my repo"), "job-my-repo");
        assert_eq!(branch_alias("exp/lr:sweep"), "exp-lr-sweep");
    }
}
