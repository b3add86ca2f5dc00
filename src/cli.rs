//! Command-line definitions (clap), nothing else. `main` parses them and `commands::run`
//! dispatches; each subcommand's file in `commands/` turns them into typed settings, so nothing
//! below `commands/` sees a clap type.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::experiment::verdict::Direction;

#[derive(Debug, Parser)]
#[command(
    name = "mlwf",
    version,
    // `docker run mlwf-agent --version` reaches `mlwf agent --version`.
    propagate_version = true,
    about = "Run the ML experiment loop on W&B and GitHub"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Log filter (tracing syntax) for the diagnostic log on stderr, e.g. `info`, `debug` or
    /// `mlwf=trace`. The default shows warnings and errors only: what a command has to say is
    /// its own output, printed once.
    #[arg(long, global = true, env = "MLWF_LOG", default_value = "warn")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Where runs live: a W&B server (when `WANDB_API_KEY` or `WANDB_BASE_URL` is set) or the
/// embedded local store. Each setting is taken from the flag, else the environment, else a
/// config file (`run.project` for `mlwf train`), else the default.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// W&B entity (user or team) [env: WANDB_ENTITY]; default: the API key's default entity.
    #[arg(long, global = true)]
    pub entity: Option<String>,

    /// W&B project [env: WANDB_PROJECT] [default: mlwf].
    #[arg(long, global = true)]
    pub project: Option<String>,

    /// Directory of the embedded store used when no W&B server is configured [env: MLWF_STORE]
    /// (default: `.mlwf/` at the root of the current git repository, else the current directory).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the GPT on the configured data, tracked as a W&B run (the embedded store when no
    /// W&B account is configured).
    Train(TrainArgs),
    /// Serve a local W&B-compatible server backed by a directory.
    Server(ServerArgs),
    /// Read runs back.
    #[command(subcommand)]
    Results(ResultsCommand),
    /// Measure mlwf's own speed.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Report every run that ended to its branch's PR: compared with the baseline, or diagnosed.
    Analyze(Box<AnalyzeArgs>),
    /// Queue a branch as a W&B Launch job: the committed, pushed branch, pinned to its commit.
    Launch(LaunchArgs),
    /// Run W&B Launch jobs from queues: clone, build, run, report (a Launch-compatible agent).
    Agent(AgentArgs),
    /// W&B Launch queues: list, create, show items, cancel.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Runs: list, tag, untag, note, stop, delete.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Datasets as W&B artifacts: upload, download, list.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Artifacts (checkpoints, datasets…): list, get, alias, delete, prune.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Scaffold (or complete) an experiment repository: mlwf.toml, CLAUDE.md, the Claude Code
    /// skills and rules, the run-finished workflow.
    Init(InitArgs),
    /// Connect the repository to W&B: GitHub secrets, variables and labels; a W&B webhook
    /// integration and an automation that starts the run-finished workflow when a run ends.
    SetupAutomation(SetupAutomationArgs),
    /// Experiments: start one (branch, worktree, draft PR), list them, relaunch a failed one.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// The baseline: show it, run its seeds, roll it back.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Merge the experiment PRs that beat the baseline beyond noise, tag and release the new
    /// baseline, and run its seeds.
    MergeWinners(MergeWinnersArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository's folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The project's name (the W&B project and queue) [default: the folder's name].
    #[arg(long)]
    pub name: Option<String>,
    /// What the project trains, one sentence for CLAUDE.md [default: the last `init`'s].
    #[arg(long)]
    pub description: Option<String>,
    /// Overwrite files edited by hand with mlwf's version.
    #[arg(long)]
    pub force: bool,
    /// Say what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupAutomationArgs {
    #[command(flatten)]
    pub github: GitHubArgs,
    /// The W&B team secret holding the GitHub token W&B sends dispatches with (its value:
    /// `MLWF_DISPATCH_TOKEN`, else the GitHub token).
    #[arg(long, default_value = crate::automation::DEFAULT_TOKEN_SECRET)]
    pub token_secret: String,
    /// Replace the repository secrets that exist (GitHub never shows their values, so they are
    /// left alone by default).
    #[arg(long)]
    pub rotate_secrets: bool,
    /// Then send one test dispatch and wait for the workflow run it starts.
    #[arg(long)]
    pub test: bool,
    /// How long `--test` waits for the workflow run.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub test_timeout: std::time::Duration,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Every version of an artifact type, newest first within each collection.
    List(ArtifactListArgs),
    /// Download a version, every file checked against its digest.
    Get(ArtifactGetArgs),
    /// Point an alias at a version.
    Alias(ArtifactAliasArgs),
    /// Delete a version.
    Delete(ArtifactDeleteArgs),
    /// Delete all but the last N versions of each collection and those with a kept alias.
    Prune(ArtifactPruneArgs),
}

#[derive(Debug, Args)]
pub struct ArtifactListArgs {
    /// Artifact type.
    #[arg(long = "type", default_value = "model")]
    pub artifact_type: String,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactGetArgs {
    /// `[[entity/]project/]name[:alias]`.
    pub reference: String,
    /// Folder to write into [default: the artifact's name].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ArtifactAliasArgs {
    /// `[[entity/]project/]name[:alias]`.
    pub reference: String,
    /// The alias, e.g. `best` or `production`.
    pub alias: String,
    /// Say what would be aliased; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactDeleteArgs {
    /// `[[entity/]project/]name[:alias]`.
    pub reference: String,
    /// Delete a version that has aliases, and its aliases.
    #[arg(long)]
    pub force: bool,
    /// Say what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactPruneArgs {
    /// Artifact type.
    #[arg(long = "type", default_value = "model")]
    pub artifact_type: String,
    /// Versions kept per collection, newest first.
    #[arg(long, default_value_t = 3)]
    pub keep_last: usize,
    /// Versions with any of these aliases are kept.
    #[arg(long, value_delimiter = ',', default_value = "best,latest,baseline")]
    pub keep_aliases: Vec<String>,
    /// Print the plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Upload a file or a folder as a `dataset` artifact (a new version when it changed).
    Upload(DatasetUploadArgs),
    /// Download a dataset version, every file checked against its digest.
    Download(DatasetDownloadArgs),
    /// Every dataset version of the project.
    List(DatasetListArgs),
}

#[derive(Debug, Args)]
pub struct DatasetUploadArgs {
    /// The file or folder.
    pub path: PathBuf,
    /// The dataset's name (the artifact collection).
    #[arg(long)]
    pub name: String,
    /// The split it is (`train`, `val`, `test`), kept in the metadata.
    #[arg(long)]
    pub split: Option<String>,
    /// A description for the version.
    #[arg(long)]
    pub description: Option<String>,
    /// Say what would be uploaded, and upload nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatasetDownloadArgs {
    /// `[[entity/]project/]name[:alias]`, e.g. `tiny-text:v0` or `tiny-text:latest`.
    pub reference: String,
    /// Where the files go [default: ./<name>].
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DatasetListArgs {
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Branch to launch [default: the branch checked out].
    #[arg(long)]
    pub branch: Option<String>,
    /// Run queue to push to [env: WANDB_QUEUE].
    #[arg(long)]
    pub queue: Option<String>,
    /// A config value for the run, e.g. `--set optim.learning_rate=1e-3` (repeatable). Checked
    /// against the trainer's keys when the entrypoint is `mlwf train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// 0 (critical) to 3 (low), or critical, high, medium, low.
    #[arg(long)]
    pub priority: Option<String>,
    /// Display name of the run.
    #[arg(long)]
    pub name: Option<String>,
    /// Command the agent runs in the checkout [default: `mlwf train`, with `--config
    /// mlwf.toml` when the repository has one].
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Follow the item until its run ends; the exit status says how it ended.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Run queue to take jobs from (repeatable; polled in turn) [env: WANDB_QUEUE].
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Jobs run at once [default: the number of --gpus, else 1].
    #[arg(long)]
    pub max_jobs: Option<usize>,
    /// GPUs to hand out, e.g. `0,1`: each job gets its own (CUDA_VISIBLE_DEVICES).
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<usize>,
    /// W&B's launch agent config file (`entity`, `queues`, `max_jobs`); flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop after taking this many items, once they have ended.
    #[arg(long)]
    pub max_items: Option<usize>,
    /// Stop when no job runs and the queues are empty.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Wait between polls of empty queues.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: std::time::Duration,
    /// Time a job has to stop after SIGTERM before it is killed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Checkouts, clone mirrors, build caches [env: MLWF_AGENT_DIR] [default:
    /// ~/.cache/mlwf/agent].
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Git host that gets the HTTPS token (repeatable) [default: github.com]. The token is
    /// read from MLWF_GIT_TOKEN, else GITHUB_TOKEN, and is never passed to jobs.
    #[arg(long = "git-host")]
    pub git_hosts: Vec<String>,
    /// SSH private key for cloning `git@…`/`ssh://` remotes.
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// A variable of the agent that jobs may see although the agent withholds it (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// The docker client that runs `local-container` jobs [env: MLWF_DOCKER] [default: docker].
    #[arg(long)]
    pub docker: Option<PathBuf>,
    /// The image of `local-container` jobs that name none (no `docker.docker_image`, no
    /// `builder.base_image` in the queue config).
    #[arg(long)]
    pub image: Option<String>,
    /// A docker flag queues may set beyond the official agent's allow-list, e.g. `volume` or
    /// `network` (repeatable).
    #[arg(long = "docker-flag", value_name = "NAME")]
    pub docker_flags: Vec<String>,
    /// Exit 0 if the agent using --workdir is polling (a container HEALTHCHECK), else 1.
    #[arg(long)]
    pub healthcheck: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// The entity's run queues.
    List(QueueListArgs),
    /// Create a run queue.
    Create(QueueCreateArgs),
    /// A queue's items: state, run, age and why it failed.
    Items(QueueItemsArgs),
    /// Remove a waiting item from its queue.
    Cancel(QueueCancelArgs),
}

#[derive(Debug, Args)]
pub struct QueueListArgs {
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueueCreateArgs {
    pub name: String,
    /// Where its jobs run: `local-process` (in the agent's machine) or `local-container`.
    #[arg(long, default_value = "local-process")]
    pub resource: String,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueueItemsArgs {
    pub queue: String,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueueCancelArgs {
    /// The item id `mlwf launch` printed.
    pub item: String,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the database and the stored files; created if missing.
    #[arg(long, default_value = ".mlwf/server")]
    pub data: PathBuf,
    /// An API key clients may use (repeatable; the variable takes a comma-separated list, and
    /// keeps keys out of `ps`). Without one, a key is made, stored in the data directory and
    /// printed at start-up.
    #[arg(
        long = "api-key",
        env = "MLWF_SERVER_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// A running run that sends nothing (no file_stream request, no heartbeat) for this long
    /// reads as crashed: its process died without saying so.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub run_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Starting point: `tiny` (CPU default), `shakespeare-char` (GPU default) or `gpt2-124m`.
    #[arg(long)]
    pub preset: Option<String>,
    /// A TOML or YAML file of config keys (it may name its own `preset`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set optim.learning_rate=1e-3` (repeatable). W&B Launch
    /// overrides (`WANDB_CONFIG`) apply on top.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `auto`, `cpu`, `cuda` or `cuda:N` (shorthand for `--set train.device=...`).
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// State, config and summary metrics of one run.
    Summary(SummaryArgs),
    /// Runs, newest first: id, state, branch, the primary metric, tags.
    List(ListArgs),
    /// Each branch's latest ended run against the baseline (or `--against` another branch),
    /// with the PR report's verdict and noise band.
    Compare(CompareArgs),
    /// A run's console output.
    Logs(LogsArgs),
    /// A run's logged metrics, step by step.
    History(HistoryArgs),
    /// Branches' metric curves (each branch's latest run) as a PNG, or a terminal chart.
    Plot(PlotArgs),
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A branch to plot (repeatable; its latest run).
    #[arg(long = "branch", required = true)]
    pub branches: Vec<String>,
    /// The metric.
    #[arg(long, default_value = crate::experiment::keys::metric::VAL_LOSS)]
    pub metric: String,
    /// Write a PNG here instead of drawing in the terminal.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first (the same list as `mlwf results list`).
    List(ListArgs),
    /// Add tags to runs.
    Tag(RunTagArgs),
    /// Remove tags from runs.
    Untag(RunTagArgs),
    /// Set a run's notes.
    Note(RunNoteArgs),
    /// Ask runs to stop (the W&B Stop button: the trainer and the agent honour it).
    Stop(RunsArgs),
    /// Delete runs (with their files; `--with-artifacts` deletes the artifacts they logged).
    Delete(RunDeleteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the runs whose `config.branch` is this branch.
    #[arg(long)]
    pub branch: Option<String>,
    /// Only runs in this state: running, finished, failed, crashed, killed, preempted.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// The metric shown for each run.
    #[arg(long, env = "MLWF_METRIC", default_value = crate::experiment::keys::metric::VAL_LOSS)]
    pub metric: String,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A branch to compare (repeatable) [default: every branch with runs but the baseline's].
    #[arg(long = "branch")]
    pub branches: Vec<String>,
    /// Judge head to head against this branch's latest finished run instead of the baseline.
    #[arg(long)]
    pub against: Option<String>,
    #[command(flatten)]
    pub judging: JudgingArgs,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Run id.
    pub run: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Run id.
    pub run: String,
    /// Only these metrics, e.g. `--keys train/loss,val/loss` [default: every logged metric].
    #[arg(long, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// Print CSV (a header, then a row per step).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Print JSON lines, one object per step.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Run ids.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Say what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunTagArgs {
    #[command(flatten)]
    pub runs: RunsArgs,
    /// The tag (repeatable).
    #[arg(long = "tag", required = true)]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunNoteArgs {
    #[command(flatten)]
    pub runs: RunsArgs,
    /// The notes (replacing the run's).
    #[arg(long)]
    pub text: String,
}

#[derive(Debug, Args)]
pub struct RunDeleteArgs {
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Also delete the artifacts the runs logged (checkpoints, tables).
    #[arg(long)]
    pub with_artifacts: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["run", "branch"])))]
pub struct SummaryArgs {
    /// Run id (the 8-character W&B run name).
    #[arg(long)]
    pub run: Option<String>,
    /// The latest run whose `config.branch` is this branch.
    #[arg(long)]
    pub branch: Option<String>,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a run is judged against the baseline: the same flags for the PR report and the loop
/// commands, so that both give one verdict.
#[derive(Debug, Args, Clone)]
pub struct JudgingArgs {
    /// Primary metric of the verdict.
    #[arg(long, env = "MLWF_METRIC", default_value = crate::experiment::keys::metric::VAL_LOSS)]
    pub metric: String,
    /// Which way the primary metric improves.
    #[arg(long, env = "MLWF_DIRECTION", default_value = "lower")]
    pub direction: Direction,
    /// Relative change treated as noise when the baseline has a single seed (0.01 = 1%); with
    /// several seeds the band is at least twice their standard deviation.
    #[arg(long, env = "MLWF_NOISE_THRESHOLD", default_value_t = 0.01)]
    pub noise_threshold: f64,
    /// Branch whose latest finished run is the baseline (a run tagged `baseline` wins).
    #[arg(long = "baseline", alias = "baseline-branch", env = "MLWF_BASELINE_BRANCH", default_value = crate::experiment::baseline::DEFAULT_BRANCH)]
    pub baseline_branch: String,
}

/// Which GitHub repository, and a token for it.
#[derive(Debug, Args, Clone)]
pub struct GitHubArgs {
    /// GitHub repository (`owner/name`) [default: the `origin` remote's].
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: Option<String>,
    /// GitHub token: PR comments and labels for `analyze`; push, PRs, merges and releases for
    /// the loop commands.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// GitHub REST API base URL (GitHub Enterprise: `https://HOST/api/v3`).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
}

/// What the loop commands share: the repository, GitHub, and how runs are judged (the base
/// branch is `--baseline`).
#[derive(Debug, Args, Clone)]
pub struct LoopArgs {
    #[command(flatten)]
    pub github: GitHubArgs,
    #[command(flatten)]
    pub judging: JudgingArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Start an experiment: a branch `exp/<slug>` in its own worktree, a design note, the push
    /// and a draft PR.
    New(ExperimentNewArgs),
    /// Every experiment branch with its PR, latest run, verdict and age.
    List(ExperimentListArgs),
    /// Show a failed run's diagnosis and launch the branch again once it has a new commit.
    Relaunch(RelaunchArgs),
}

#[derive(Debug, Args)]
pub struct ExperimentNewArgs {
    /// The idea, in a sentence (default with --from-issue: the issue's title).
    pub idea: Option<String>,
    /// Seed the experiment from this GitHub issue (`exp/<N>-<slug>`, `Closes #N`).
    #[arg(long)]
    pub from_issue: Option<u64>,
    /// Where the worktree goes [default: `<repo>-worktrees/<slug>` beside the repository].
    #[arg(long)]
    pub worktree: Option<PathBuf>,
    /// Say what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

#[derive(Debug, Args)]
pub struct ExperimentListArgs {
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

#[derive(Debug, Args)]
pub struct RelaunchArgs {
    /// The experiment's branch [default: the one checked out].
    #[arg(long)]
    pub branch: Option<String>,
    /// Run queue [env: WANDB_QUEUE].
    #[arg(long)]
    pub queue: Option<String>,
    /// Show the diagnosis and what would be launched; launch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// The current baseline run(s), their seeds and metric, its git tag.
    Show(BaselineShowArgs),
    /// Launch the base branch's commit N times (tagged `baseline-candidate`); once all ended,
    /// they become the baseline.
    Run(BaselineRunArgs),
    /// Open (and with --merge, merge) a PR reverting the merges since a baseline tag, and move
    /// the `baseline` tag back to its runs.
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct BaselineShowArgs {
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

/// How the baseline's seeds are launched.
#[derive(Debug, Args, Clone)]
pub struct SeedArgs {
    /// Seeds of the baseline (each a run with its own `train.seed`).
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Run queue [env: WANDB_QUEUE].
    #[arg(long)]
    pub queue: Option<String>,
}

#[derive(Debug, Args)]
pub struct BaselineRunArgs {
    #[command(flatten)]
    pub seed_args: SeedArgs,
    /// Wait for the seeds to end and make them the baseline.
    #[arg(long)]
    pub wait: bool,
    /// Say what would be launched; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The baseline tag to go back to [default: the one before the latest].
    #[arg(long)]
    pub to: Option<String>,
    /// Why, for the PR and `docs/baselines.md`.
    #[arg(long)]
    pub reason: Option<String>,
    /// Merge the revert PR too.
    #[arg(long)]
    pub merge: bool,
    /// Say what would be reverted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

#[derive(Debug, Args)]
pub struct MergeWinnersArgs {
    /// Merge at most this many PRs.
    #[arg(long)]
    pub max: Option<usize>,
    /// Do not launch the new baseline's seeds afterwards.
    #[arg(long)]
    pub no_baseline_run: bool,
    #[command(flatten)]
    pub seed_args: SeedArgs,
    /// Say what would be merged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}

/// `mlwf analyze`: the GitHub Action's entry point, also run by hand.
#[derive(Debug, Args, Clone)]
pub struct AnalyzeArgs {
    /// The Actions event file (a `repository_dispatch` of type `wandb_run_finished`); its
    /// payload is a hint, all unreported runs are reported regardless.
    #[arg(long, env = "GITHUB_EVENT_PATH")]
    pub event: Option<PathBuf>,
    /// Report this run (again, if it was reported) instead of reconciling.
    #[arg(long)]
    pub run: Option<String>,
    /// Print the report markdown instead of posting it (nothing is changed anywhere).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub judging: JudgingArgs,
    /// Runs reported at most per job; older ones wait for the next job.
    #[arg(long, default_value_t = 20)]
    pub max_runs: usize,
    #[command(flatten)]
    pub github: GitHubArgs,
    /// W&B web UI base URL for run links (default: derived from the API URL).
    #[arg(long, env = "WANDB_UI_URL")]
    pub wandb_ui_url: Option<String>,
    /// Ask Claude for a short narrative of failures (needs `ANTHROPIC_API_KEY`).
    #[arg(long, env = "MLWF_LLM", default_value_t = true, action = clap::ArgAction::Set)]
    pub llm: bool,
    /// Claude model for the narrative.
    #[arg(long, env = "MLWF_LLM_MODEL", default_value = crate::analyze::llm::DEFAULT_MODEL)]
    pub llm_model: String,
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = crate::analyze::llm::DEFAULT_API_URL)]
    pub anthropic_api_url: String,
    /// Job summary file (Actions sets it).
    #[arg(long, env = "GITHUB_STEP_SUMMARY")]
    pub step_summary: Option<PathBuf>,
    /// Step outputs file (Actions sets it).
    #[arg(long, env = "GITHUB_OUTPUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Cost of one `log()` call: mlwf's client against the official `wandb` SDK.
    Log(BenchLogArgs),
    /// Training speed of a preset's model: tokens/s and ms/step (no W&B run).
    Train(BenchTrainArgs),
    /// Wall time of one `mlwf analyze`, start to comment posted, against local fakes.
    Analyze(BenchAnalyzeArgs),
    /// `mlwf agent` against the official `wandb launch-agent`: idle memory, push to job start.
    Agent(BenchAgentArgs),
}

#[derive(Debug, Args)]
pub struct BenchAgentArgs {
    /// Python interpreter with the official `wandb` package; its agent is skipped when absent.
    #[arg(long, env = "MLWF_PYTHON", default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// How long each agent idles before its memory is read.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub idle: std::time::Duration,
    /// Items pushed and timed per agent.
    #[arg(long, default_value_t = 3)]
    pub pushes: usize,
    /// An image with mlwf (e.g. the agent image) to also time `local-container` jobs against
    /// `local-process` ones.
    #[arg(long)]
    pub image: Option<String>,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// The model and batch shape: `tiny`, `shakespeare-char` or `gpt2-124m`.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Timed training steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Override the preset's batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Vocabulary size of the random tokens (default: 50257 for gpt2-124m, else 65, Tiny
    /// Shakespeare's characters).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// GPU matmul precision, `fp32`, `tf32` or `bf16` (default: the preset's).
    #[arg(long)]
    pub precision: Option<String>,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchAnalyzeArgs {
    /// Timed repetitions of each case.
    #[arg(long, default_value_t = 10)]
    pub repeat: usize,
}

#[derive(Debug, Args)]
pub struct BenchLogArgs {
    /// Logged steps per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    /// Metrics per step.
    #[arg(long, default_value_t = 4)]
    pub metrics: usize,
    /// Python interpreter with the official `wandb` package; skipped when absent.
    #[arg(long, env = "MLWF_PYTHON", default_value = ".venv/bin/python")]
    pub python: PathBuf,
}
