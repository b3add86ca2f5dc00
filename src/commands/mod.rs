//! One file per subcommand. Each resolves its flags (the clap definitions of `cli.rs`), the
//! environment and config files once into typed settings, calls the library, and prints the
//! result. `cli.rs` does not dispatch here itself: that would make the two import each other.
//!
//! One precedence rule for every setting: the flag, else the environment variable, else the
//! config file, else the default. An empty environment variable counts as unset, since an unset
//! CI secret or variable expands to "".

pub mod agent;
pub mod analyze;
pub mod artifacts;
pub mod baseline;
pub mod bench;
pub mod datasets;
pub mod experiment;
pub mod init;
pub mod launch;
pub mod queue;
pub mod results;
pub mod runs;
pub mod server;
pub mod setup_automation;
pub mod train;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Cli, Command, GitHubArgs, JudgingArgs, LoopArgs, ResultsCommand, StoreArgs};
use crate::connect::{Store, StoreSettings, DEFAULT_PROJECT};
use crate::github::{GitHub, Repo};
use crate::lifecycle::Workspace;
use crate::secrets::Secret;

/// Runs the command line's command; `main` owns the process exit.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let store = &cli.store;
    match cli.command {
        Command::Train(args) => train::run(store, args).await,
        Command::Server(args) => server::run(args).await,
        Command::Results(command) => match command {
            ResultsCommand::Summary(args) => results::summary(store, args).await,
            ResultsCommand::List(args) => results::list(store, args).await,
            ResultsCommand::Compare(args) => results::compare(store, args).await,
            ResultsCommand::Logs(args) => results::logs(store, args).await,
            ResultsCommand::History(args) => results::history(store, args).await,
            ResultsCommand::Plot(args) => results::plot(store, args).await,
        },
        Command::Runs(command) => runs::run(store, command).await,
        Command::Datasets(command) => datasets::run(store, command).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Analyze(args) => analyze::run(store, *args).await,
        Command::Launch(args) => launch::run(store, args).await,
        Command::Agent(args) => agent::run(store, args).await,
        Command::Queue(command) => queue::run(store, command).await,
        Command::Artifacts(command) => artifacts::run(store, command).await,
        Command::Init(args) => init::run(args),
        Command::SetupAutomation(args) => setup_automation::run(store, args).await,
        Command::Experiment(command) => experiment::run(store, command).await,
        Command::Baseline(command) => baseline::run(store, command).await,
        Command::MergeWinners(args) => baseline::merge_winners(store, args).await,
    }
}

/// Opens the store for reading, runs `read`, closes the store whatever happened.
async fn reading<T>(
    store: &StoreArgs,
    read: impl AsyncFnOnce(&Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::connect::open(
        &store_settings(store, None, env),
        crate::connect::Purpose::Read,
    )
    .await?;
    let result = read(&store).await;
    store.close().await;
    result
}

/// The GitHub client of `args`, `None` without a token. The repository is the flag's or
/// `GITHUB_REPOSITORY`, else the one the `origin` remote of `checkout` points at.
fn github(
    args: &GitHubArgs,
    checkout: Option<&crate::git::Repo>,
) -> anyhow::Result<Option<GitHub>> {
    let Some(token) = args.github_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let repo: Repo = match args.repo.as_deref().filter(|r| !r.is_empty()) {
        Some(repo) => repo.parse()?,
        None => checkout
            .and_then(|c| c.remote_url(crate::lifecycle::REMOTE))
            .and_then(|url| Repo::from_remote_url(&url))
            .ok_or_else(|| {
                anyhow!(
                    "no GitHub repository: set GITHUB_REPOSITORY (or --repo owner/name), or point                      the origin remote at GitHub"
                )
            })?,
    };
    GitHub::new(&args.github_api_url, &Secret::new(token), repo)
        .map(Some)
        .context("configuring the GitHub client")
}

/// The loop's workspace: the git checkout around the current directory, GitHub, the judging.
fn workspace<'a>(store: &'a Store, args: &LoopArgs) -> anyhow::Result<Workspace<'a>> {
    let dir = std::env::current_dir().context("reading the current directory")?;
    let root = crate::git::root(&dir).with_context(|| {
        format!(
            "{} is not inside a git repository: run this in the experiment repository's checkout",
            dir.display()
        )
    })?;
    let repo = crate::git::Repo::at(root);
    Ok(Workspace {
        github: github(&args.github, Some(&repo))?,
        store,
        repo,
        base: args.judging.baseline_branch.clone(),
        judging: judging(&args.judging),
    })
}

/// The job template of the loop's launches: `--queue`, else `WANDB_QUEUE`.
fn job_template(queue: Option<&str>) -> anyhow::Result<crate::lifecycle::jobs::JobTemplate> {
    let queue = queue
        .map(str::to_owned)
        .or_else(|| env("WANDB_QUEUE"))
        .context("no queue: pass --queue NAME or set WANDB_QUEUE (`mlwf queue list` shows them)")?;
    Ok(crate::lifecycle::jobs::JobTemplate {
        queue,
        entrypoint: None,
        priority: None,
    })
}

/// Prints `value` as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// A spinner on stderr that stays quiet when stderr is not a terminal.
struct Spinner(ProgressBar);

impl Spinner {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self(bar)
    }
}

impl crate::launch::Progress for Spinner {
    fn update(&self, message: &str) {
        self.0.set_message(message.to_owned());
    }
}

/// The process environment as the commands read it: an empty value is no value.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Where runs go, by the precedence rule: `--entity` / `WANDB_ENTITY`, `--project` /
/// `WANDB_PROJECT` / the config file's project / `mlwf`, `--store` / `MLWF_STORE`.
fn store_settings(
    args: &StoreArgs,
    file_project: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> StoreSettings {
    StoreSettings {
        entity: args.entity.clone().or_else(|| env("WANDB_ENTITY")),
        project: args
            .project
            .clone()
            .or_else(|| env("WANDB_PROJECT"))
            .or_else(|| file_project.map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_PROJECT.to_owned()),
        dir: args
            .store
            .clone()
            .or_else(|| env("MLWF_STORE").map(PathBuf::from)),
    }
}

/// The verdict's settings from their flags.
fn judging(args: &JudgingArgs) -> crate::experiment::verdict::Judging {
    crate::experiment::verdict::Judging {
        metric: args.metric.clone(),
        direction: args.direction,
        noise_threshold: args.noise_threshold,
    }
}

/// Writes `text` to stdout. A closed pipe comes back as the error `main` ends quietly on.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn args(entity: Option<&str>, project: Option<&str>) -> StoreArgs {
        StoreArgs {
            entity: entity.map(str::to_owned),
            project: project.map(str::to_owned),
            store: None,
        }
    }

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_flag_beats_the_environment_beats_the_file_beats_the_default() {
        let env = lookup(&[("WANDB_PROJECT", "from-env"), ("WANDB_ENTITY", "team")]);
        let project = |flag, file| store_settings(&args(None, flag), file, &env).project;
        assert_eq!(project(Some("from-flag"), Some("from-file")), "from-flag");
        assert_eq!(project(None, Some("from-file")), "from-env");
        let no_env = lookup(&[]);
        let settings = store_settings(&args(None, None), Some("from-file"), &no_env);
        assert_eq!(settings.project, "from-file");
        assert_eq!(settings.entity, None);
        let settings = store_settings(&args(None, None), None, &no_env);
        assert_eq!(settings.project, DEFAULT_PROJECT);
        let settings = store_settings(&args(Some("me"), None), None, &env);
        assert_eq!(settings.entity.as_deref(), Some("me"));
        assert_eq!(
            store_settings(&args(None, None), None, &env)
                .entity
                .as_deref(),
            Some("team")
        );
    }
}
