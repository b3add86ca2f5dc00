//! `mlwf agent`: queues, slots and git access from the flags, the environment and W&B's launch
//! agent config file, by the one precedence rule.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{env, print, store_settings};
use crate::agent::{self, AgentSettings, ConfigFile, ContainerSettings, GitAccess};
use crate::cli::{AgentArgs, StoreArgs};
use crate::connect::{self, Purpose};
use crate::secrets::Secret;

/// Hosts that get the HTTPS token when none are named.
const DEFAULT_GIT_HOSTS: [&str; 1] = ["github.com"];

pub async fn run(store_args: &StoreArgs, args: AgentArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => ConfigFile::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("in {}", path.display()))?,
        None => ConfigFile::default(),
    };
    let mut store_args = store_args.clone();
    store_args.entity = store_args
        .entity
        .or_else(|| env("WANDB_ENTITY"))
        .or(file.entity.clone());
    let queues = if !args.queues.is_empty() {
        args.queues.clone()
    } else if let Some(queue) = env("WANDB_QUEUE") {
        vec![queue]
    } else {
        file.queues.clone()
    };
    let max_jobs = args
        .max_jobs
        .or(file.max_jobs)
        .unwrap_or_else(|| args.gpus.len().max(1));
    let workdir = match args
        .workdir
        .clone()
        .or_else(|| env("MLWF_AGENT_DIR").map(PathBuf::from))
    {
        Some(dir) => dir,
        None => default_workdir()?,
    };
    if args.healthcheck {
        return Ok(match agent::healthcheck(&workdir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("mlwf agent: unhealthy: {err:#}");
                ExitCode::FAILURE
            }
        });
    }
    let token = env("MLWF_GIT_TOKEN")
        .or_else(|| env("GITHUB_TOKEN"))
        .map(Secret::new);
    let hosts = if args.git_hosts.is_empty() {
        DEFAULT_GIT_HOSTS.map(str::to_owned).to_vec()
    } else {
        args.git_hosts.clone()
    };
    let settings = AgentSettings {
        queues,
        max_jobs,
        gpus: args.gpus.clone(),
        max_items: args.max_items,
        exit_when_idle: args.exit_when_idle,
        poll: args.poll,
        grace: args.grace,
        workdir,
        access: GitAccess {
            token,
            hosts,
            ssh_key: args.ssh_key.clone(),
        },
        pass_env: args.pass_env.clone(),
        containers: ContainerSettings {
            docker: args
                .docker
                .clone()
                .or_else(|| env("MLWF_DOCKER").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("docker")),
            image: args.image.clone(),
            extra_flags: args.docker_flags.clone(),
        },
    };
    let store = connect::open(&store_settings(&store_args, None, env), Purpose::Training).await?;
    let stop = async {
        if let Err(err) = crate::server::shutdown_signal().await {
            tracing::warn!("cannot listen for signals: {err:#}");
            std::future::pending::<()>().await;
        }
    };
    let result = agent::run(&store, settings, stop).await;
    store.close().await;
    let summary = result?;
    // The summary line is for whoever ran the agent; a closed stdout must not fail the stop.
    let _ = print(&format!(
        "mlwf agent: stopped after {} run(s), {} failed item(s), {} requeued\n",
        summary.ran, summary.failed, summary.requeued
    ));
    Ok(ExitCode::SUCCESS)
}

/// `~/.cache/mlwf/agent` (`$XDG_CACHE_HOME/mlwf/agent` where set).
fn default_workdir() -> anyhow::Result<PathBuf> {
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither HOME nor XDG_CACHE_HOME is set: pass --workdir")?;
    Ok(cache.join("mlwf/agent"))
}
