//! One file per subcommand. Each resolves its flags (the clap definitions of `cli.rs`), the
//! environment and config files once into typed settings, calls the library, and prints the
//! result. `cli.rs` does not dispatch here itself: that would make the two import each other.
//!
//! One precedence rule for every setting: the flag, else the environment variable, else the
//! config file, else the default. An empty environment variable counts as unset, since an unset
//! CI secret or variable expands to "".

pub mod agent;
pub mod analyze;
pub mod bench;
pub mod datasets;
pub mod launch;
pub mod queue;
pub mod results;
pub mod runs;
pub mod server;
pub mod train;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command, JudgingArgs, ResultsCommand, StoreArgs};
use crate::connect::{StoreSettings, DEFAULT_PROJECT};

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
        },
        Command::Runs(command) => runs::run(store, command).await,
        Command::Datasets(command) => datasets::run(store, command).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Analyze(args) => analyze::run(store, *args).await,
        Command::Launch(args) => launch::run(store, args).await,
        Command::Agent(args) => agent::run(store, args).await,
        Command::Queue(command) => queue::run(store, command).await,
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
