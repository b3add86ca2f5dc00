//! `mlwf train` end to end, as a user (or the Launch agent) runs it: the real binary against
//! mlwf's W&B-compatible server on loopback, read back through `mlwf results summary --json`
//! and mlwf's client.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use mlwf::experiment::keys;
use mlwf::wandb::{ArtifactRef, Row};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::util::{self, Fixture};

const ENTITY: &str = "testent";
const PROJECT: &str = "train";

/// A short, fast schedule: 60 steps with every event happening a few times.
const QUICK: &[&str] = &[
    "--set",
    "optim.max_iters=60",
    "--set",
    "optim.warmup_iters=10",
    "--set",
    "train.eval_interval=20",
    "--set",
    "train.log_interval=10",
    "--set",
    "train.grad_norm_interval=10",
    "--set",
    "train.checkpoint_interval=30",
    "--set",
    "train.sample_count=4",
];

/// What this area asks of the shared fixture: the binary pointed at its server.
trait Binary {
    fn work_dir(&self) -> PathBuf;

    /// `mlwf ARGS` pointed at this server, with `extra` environment variables.
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command;

    async fn train(&self, args: &[&str], extra: &[(&str, &str)]) -> Output;

    /// `mlwf results summary --run ID --json`.
    async fn summary(&self, run_id: &str) -> Value;

    /// The report `mlwf analyze --dry-run --run ID` prints.
    async fn analyze_dry_run(&self, run_id: &str) -> String;

    async fn history(&self, run_id: &str) -> Vec<Row>;

    /// How many runs project `project` has.
    async fn runs(&self, project: &str) -> usize;

    async fn output_log(&self, run_id: &str) -> String;
}

impl Binary for Fixture {
    fn work_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("work");
        std::fs::create_dir_all(&dir).expect("work dir");
        dir
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut command = util::mlwf_async(&self.work_dir());
        command.args(args);
        let cache = self.dir.path().join("data-cache");
        command
            .env("WANDB_BASE_URL", self.server.base_url())
            .env("WANDB_API_KEY", util::KEY)
            .env("WANDB_ENTITY", ENTITY)
            .env("WANDB_PROJECT", PROJECT)
            .env("MLWF_DATA_CACHE", cache)
            .env("MLWF_LOG", "warn")
            .envs(extra.iter().copied());
        command
    }

    async fn train(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let checkpoints = format!(
            "run.checkpoint_dir={}",
            self.dir.path().join("checkpoints").display()
        );
        let mut all = vec!["train", "--set", &checkpoints];
        all.extend_from_slice(args);
        self.command(&all, extra)
            .output()
            .await
            .expect("run mlwf train")
    }

    async fn summary(&self, run_id: &str) -> Value {
        let output = self
            .command(&["results", "summary", "--run", run_id, "--json"], &[])
            .output()
            .await
            .expect("run mlwf results");
        assert!(output.status.success(), "{}", text(&output));
        serde_json::from_slice(&output.stdout).expect("summary JSON")
    }

    async fn analyze_dry_run(&self, run_id: &str) -> String {
        let output = self
            .command(&["analyze", "--dry-run", "--run", run_id], &[])
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_EVENT_PATH")
            .env_remove("ANTHROPIC_API_KEY")
            .output()
            .await
            .expect("run mlwf analyze");
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn history(&self, run_id: &str) -> Vec<Row> {
        self.client
            .history(ENTITY, PROJECT, run_id)
            .await
            .expect("history")
    }

    async fn runs(&self, project: &str) -> usize {
        self.client
            .runs(ENTITY, project, &mlwf::wandb::RunQuery::new())
            .await
            .expect("list runs")
            .len()
    }

    async fn output_log(&self, run_id: &str) -> String {
        self.client
            .output_log(ENTITY, PROJECT, run_id)
            .await
            .expect("output.log")
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The run id `mlwf train` printed (`mlwf: run entity/project/ID on ...`).
fn run_id(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    find_run_id(&stdout).unwrap_or_else(|| panic!("no run id in\n{}", text(output)))
}

fn find_run_id(stdout: &str) -> Option<String> {
    let prefix = format!("mlwf: run {ENTITY}/{PROJECT}/");
    stdout.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        Some(rest.split_whitespace().next()?.to_owned())
    })
}

/// `(step, train/loss)` of every history row that has a training loss.
fn train_losses(history: &[Row]) -> Vec<(u64, f64)> {
    history
        .iter()
        .filter_map(|row| Some((row["_step"].as_u64()?, row.get("train/loss")?.as_f64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_every_tracked_key_and_finishes() {
    let fx = Fixture::start().await;
    let output = fx.train(QUICK, &[]).await;
    assert!(output.status.success(), "{}", text(&output));
    let id = run_id(&output);
    let run = fx.summary(&id).await;
    assert_eq!(run["state"], "finished", "{run:#}");

    let config = &run["config"];
    for key in mlwf::train::config::valid_keys() {
        assert!(config.get(&key).is_some(), "config lacks {key}: {config:#}");
    }
    // A CPU run that was not resumed records every fact but those of a GPU and a resume.
    for key in keys::config::recorded() {
        if key.starts_with("resumed_") || keys::config::GPU.contains(&key) {
            continue;
        }
        assert!(config.get(key).is_some(), "config lacks {key}: {config:#}");
    }
    assert_eq!(config["backend"], "cpu");
    assert_eq!(config["optim.max_iters"], 60);
    assert_eq!(config["dataset.name"], "synthetic-addition");
    assert_eq!(config["mlwf_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        config["param_count"].as_u64().unwrap() > 10_000,
        "{config:#}"
    );

    let summary = &run["summary"];
    for key in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_sec",
        "train/step_ms",
        "val/loss",
        "val/accuracy",
        "best/val_loss",
        "best/step",
        "train/steps",
        "diag/grad_norm/embedding",
        "diag/grad_norm/block.0",
        "diag/grad_norm/final_norm",
        "diag/memory_mb",
    ] {
        assert!(
            summary.get(key).is_some(),
            "summary lacks {key}: {summary:#}"
        );
    }
    assert_eq!(summary["train/steps"], 60);
    assert_eq!(summary["val/predictions"]["_type"], "table-file");
    assert_eq!(summary["val/predictions"]["nrows"], 4);

    // History: one row per logged step, keyed by the training step.
    let history = fx.history(&id).await;
    let losses = train_losses(&history);
    let steps: Vec<u64> = losses.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [10, 20, 30, 40, 50, 60]);
    let evals: Vec<u64> = history
        .iter()
        .filter(|row| row.contains_key("val/loss"))
        .map(|row| row["_step"].as_u64().unwrap())
        .collect();
    assert_eq!(evals, [0, 20, 40, 60]);

    // The console, the model artifact (latest and best), the dataset, the alert.
    let log = fx.output_log(&id).await;
    assert!(log.contains("step     60/60"), "{log}");
    assert!(log.contains("val loss"), "{log}");
    let model = |alias: &str| ArtifactRef {
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        name: format!("model-{id}"),
        alias: alias.into(),
    };
    let latest = fx.client.artifact(&model("latest")).await.expect("latest");
    assert_eq!(latest.metadata["step"], 60, "{:?}", latest.metadata);
    assert_eq!(latest.metadata["backend"], "cpu");
    let best = fx.client.artifact(&model("best")).await.expect("best");
    assert_eq!(
        best.metadata["val_loss"], summary["best/val_loss"],
        "{:?}",
        best.metadata
    );
    let downloaded = fx
        .client
        .download_artifact(&model("latest"), &fx.dir.path().join("dl"))
        .await
        .expect("download the checkpoint");
    let names: Vec<String> = downloaded
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "config.json",
        "state.json",
    ] {
        assert!(names.iter().any(|n| n == file), "{names:?}");
    }
    let dataset = ArtifactRef {
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        name: "dataset-synthetic-addition".into(),
        alias: "latest".into(),
    };
    let dataset = fx
        .client
        .artifact(&dataset)
        .await
        .expect("dataset artifact");
    assert_eq!(dataset.metadata["dataset.sha256"], config["dataset.sha256"]);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_curve_and_resume_continues_it() {
    let fx = Fixture::start().await;
    let first = fx.train(QUICK, &[]).await;
    assert!(first.status.success(), "{}", text(&first));
    let second = fx.train(QUICK, &[]).await;
    assert!(second.status.success(), "{}", text(&second));
    let (a, b) = (run_id(&first), run_id(&second));
    let curve_a = train_losses(&fx.history(&a).await);
    assert_eq!(curve_a.len(), 6);
    assert_eq!(curve_a, train_losses(&fx.history(&b).await));

    // Resume the first run's step-30 checkpoint (its model artifact's first version).
    let from = format!("run.resume_from=artifact:{ENTITY}/{PROJECT}/model-{a}:v0");
    let mut args = QUICK.to_vec();
    args.extend(["--set", &from]);
    let resumed = fx.train(&args, &[]).await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    let c = run_id(&resumed);
    let curve_c = train_losses(&fx.history(&c).await);
    let tail: Vec<_> = curve_a.iter().filter(|(s, _)| *s > 30).cloned().collect();
    assert_eq!(curve_c, tail, "the resumed run continues the same curve");
    let config = &fx.summary(&c).await["config"];
    assert_eq!(config["resumed_step"], 30);
    assert_eq!(
        config["resumed_from"],
        json!(format!("artifact:{ENTITY}/{PROJECT}/model-{a}:v0"))
    );
    fx.shutdown().await;
}

/// A Launch requeue brings a run back under its id (`WANDB_RUN_ID`, `WANDB_RESUME`): it resumes
/// from its own latest checkpoint by itself, and its steps carry on from there, each logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_run_resumes_from_its_own_checkpoint() {
    let fx = Fixture::start().await;
    let id = "requeued1";
    let env = [("WANDB_RUN_ID", id), ("WANDB_RESUME", "allow")];
    let mut crashing = env.to_vec();
    crashing.push(("MLWF_FAULT", "panic-at-step:45"));
    let first = fx.train(QUICK, &crashing).await;
    assert!(!first.status.success(), "{}", text(&first));
    let before = train_losses(&fx.history(id).await);
    assert_eq!(before.last().map(|(s, _)| *s), Some(40), "{before:?}");

    let second = fx.train(QUICK, &env).await;
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.contains("resumes from its latest checkpoint"),
        "{said}"
    );
    let config = &fx.summary(id).await["config"];
    assert_eq!(config["resumed_step"], 30, "{config:#}");
    assert_eq!(
        config["resumed_from"],
        json!(format!("artifact:{ENTITY}/{PROJECT}/model-{id}:latest"))
    );
    let after = train_losses(&fx.history(id).await);
    let steps: Vec<u64> = after.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        [10, 20, 30, 40, 50, 60],
        "continuous, none twice: {after:?}"
    );
    assert_eq!(
        &after[..4],
        &before[..],
        "the first attempt's history stays as it was"
    );
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_environment_overrides_reach_the_run() {
    let fx = Fixture::start().await;
    let launch_config = json!({
        "optim.learning_rate": 0.002,
        "train": {"seed": 7},
        // Recorded facts of the run the config was copied from are ignored.
        "branch": "someone-else",
        "_wandb": {"cli_version": "0.31.0"},
    })
    .to_string();
    let output = fx
        .train(
            QUICK,
            &[
                ("WANDB_CONFIG", &launch_config),
                ("WANDB_RUN_ID", "launch01"),
            ],
        )
        .await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(run_id(&output), "launch01");
    let run = fx.summary("launch01").await;
    assert_eq!(run["config"]["optim.learning_rate"], 0.002);
    assert_eq!(run["config"]["train.seed"], 7);
    assert_ne!(run["config"]["branch"], "someone-else");
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_and_a_diverging_loss_each_end_in_a_failed_run() {
    let fx = Fixture::start().await;

    let output = fx.train(QUICK, &[("MLWF_FAULT", "panic-at-step:5")]).await;
    assert_eq!(output.status.code(), Some(101), "{}", text(&output));
    let id = run_id(&output);
    let run = fx.summary(&id).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 101, "{run:#}");
    let log = fx.output_log(&id).await;
    assert!(log.contains("injected panic before step 5"), "{log}");
    // Where it panicked, as the terminal shows it, for the failure report.
    assert!(log.contains("panicked at src/train/trainer.rs:"), "{log}");

    let mut args = QUICK.to_vec();
    args.extend([
        "--set",
        "optim.learning_rate=1e30",
        "--set",
        "optim.grad_clip=0",
    ]);
    let output = fx.train(&args, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("training diverged"), "{stderr}");
    let id = run_id(&output);
    let run = fx.summary(&id).await;
    assert_eq!(run["state"], "failed");
    let log = fx.output_log(&id).await;
    assert!(
        log.contains("training diverged") && log.contains("loss is"),
        "{log}"
    );
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_a_checkpoint_and_finishes_the_run() {
    let fx = Fixture::start().await;
    let mut args = vec!["train"];
    args.extend_from_slice(QUICK);
    args.extend([
        "--set",
        "optim.max_iters=100000",
        "--set",
        "optim.warmup_iters=10",
    ]);
    let mut child = fx
        .command(&args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mlwf train");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        let mut id = None;
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            id = id.or_else(|| find_run_id(&line));
            if line.starts_with("step") && line.contains("/100000") {
                return id;
            }
        }
        panic!("mlwf train ended before its first logged step");
    })
    .await;
    let id = waited.expect("no training step within two minutes");
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Drain stdout so the trainer never blocks on a full pipe while it saves.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("mlwf train exits after SIGTERM")
        .expect("wait");
    assert_eq!(status.code(), Some(143));

    let id = id.expect("run id printed");
    let run = fx.summary(&id).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 143);
    let log = fx.output_log(&id).await;
    assert!(log.contains("SIGTERM"), "{log}");
    let latest = ArtifactRef {
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        name: format!("model-{id}"),
        alias: "latest".into(),
    };
    let checkpoint = fx.client.artifact(&latest).await.expect("checkpoint");
    assert!(checkpoint.metadata["step"].as_u64().unwrap() >= 10);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_a_clear_error_before_any_run() {
    let fx = Fixture::start().await;
    for (set, error) in [
        ("model.n_head=5", "must be a multiple of model.n_head"),
        ("run.resume_from=artifact:a/b/c/d", "run.resume_from"),
        ("train.device=tpu", "unknown device \"tpu\""),
    ] {
        let output = fx.train(&["--set", set], &[]).await;
        assert_eq!(output.status.code(), Some(1), "{set}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(error), "{set}: {stderr}");
        assert!(!stderr.contains(util::KEY));
        assert_eq!(fx.runs(PROJECT).await, 0, "{set} started a run");
    }
    fx.shutdown().await;
}

/// One precedence rule: `--project` beats `WANDB_PROJECT`, which beats `run.project` in the
/// config file; an empty variable (an unset CI secret) counts as unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_flag_beats_the_environment_which_beats_the_config_file() {
    let fx = Fixture::start().await;
    let file = fx.work_dir().join("project.toml");
    std::fs::write(&file, "[run]\nproject = \"from-file\"\n").unwrap();
    let file = file.to_str().unwrap();
    let short = [
        "--config",
        file,
        "--set",
        "optim.max_iters=3",
        "--set",
        "optim.warmup_iters=1",
    ];
    // The fixture's command sets WANDB_PROJECT to PROJECT.
    let flagged = [&short[..], &["--project", "from-flag"]].concat();
    let unset = [("WANDB_PROJECT", "")];
    for (args, env, project) in [
        (&flagged[..], &[][..], "from-flag"),
        (&flagged[..], &unset[..], "from-flag"),
        (&short[..], &[][..], PROJECT),
        (&short[..], &unset[..], "from-file"),
    ] {
        let before = fx.runs(project).await;
        let output = fx.train(args, env).await;
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(fx.runs(project).await, before + 1, "{args:?} {env:?}");
    }
    assert_eq!(fx.runs("mlwf").await, 0);
    fx.shutdown().await;
}

/// The README's main command: the embedded store, built-in data, CPU. Half the tiny preset's
/// schedule already answers most held-out problems exactly (0.906 measured; the full 1,000
/// steps reach ≥ 0.98).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_learns_addition_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mlwf = |args: &[&str]| {
        util::mlwf(dir.path())
            .args(args)
            .env("MLWF_DATA_CACHE", dir.path().join("cache"))
            .output()
            .expect("run mlwf")
    };
    let output = mlwf(&[
        "train",
        "--set",
        "optim.max_iters=500",
        "--set",
        "train.eval_interval=100",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("embedded local store"), "{stderr}");
    // Piped, the console is plain text, and says each thing once.
    let console = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(
        !console.contains('\u{1b}'),
        "escape codes when piped:\n{console}"
    );
    let mut seen = std::collections::HashSet::new();
    for line in console.lines().filter(|l| !l.trim().is_empty()) {
        assert!(seen.insert(line), "printed twice: {line:?}\n{console}");
    }
    assert!(
        !console.contains(" INFO "),
        "the diagnostic log on the console:\n{console}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mlwf: run local/mlwf/"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", text(&output)))
        .to_owned();
    let summary = mlwf(&["results", "summary", "--run", &id, "--json"]);
    assert!(summary.status.success(), "{}", text(&summary));
    let run: Value = serde_json::from_slice(&summary.stdout).unwrap();
    let accuracy = run["summary"]["val/accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.8,
        "val/accuracy {accuracy} after 500 steps: {run:#}"
    );
    let loss = run["summary"]["val/loss"].as_f64().unwrap();
    assert!(
        loss < 0.5,
        "val/loss {loss} (answers only) after 500 steps: {run:#}"
    );
    assert!(Path::new(dir.path()).join(".mlwf/server").exists());
}

/// The two halves of the loop meet: runs the real trainer recorded (a `main` baseline, an
/// experiment branch, a crashing branch) are what `mlwf analyze` compares and diagnoses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_reports_on_runs_the_trainer_recorded() {
    let fx = Fixture::start().await;
    let baseline = fx.train(QUICK, &[("GITHUB_REF_NAME", "main")]).await;
    assert!(baseline.status.success(), "{}", text(&baseline));
    let mut faster = QUICK.to_vec();
    faster.extend(["--set", "optim.learning_rate=1e-2"]);
    let experiment = fx
        .train(&faster, &[("GITHUB_HEAD_REF", "exp/higher-lr")])
        .await;
    assert!(experiment.status.success(), "{}", text(&experiment));
    let crash = fx
        .train(
            QUICK,
            &[
                ("GITHUB_HEAD_REF", "exp/crash"),
                ("MLWF_FAULT", "panic-at-step:3"),
            ],
        )
        .await;
    assert_eq!(crash.status.code(), Some(101), "{}", text(&crash));

    let report = fx.analyze_dry_run(&run_id(&experiment)).await;
    assert!(report.contains(&run_id(&baseline)), "{report}");
    assert!(report.contains("val/loss"), "{report}");
    assert!(report.contains("optim.learning_rate"), "{report}");
    assert!(report.contains("```mermaid"), "{report}");
    let report = fx.analyze_dry_run(&run_id(&crash)).await;
    assert!(
        report.contains("panic at src/train/trainer.rs:"),
        "{report}"
    );
    assert!(report.contains("101"), "{report}");
    assert!(!report.contains(util::KEY), "{report}");
    fx.shutdown().await;
}
