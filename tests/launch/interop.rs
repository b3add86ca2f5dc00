//! mlwf's Launch pieces with the official SDK's, both ways: items pushed by `wandb launch` run
//! on `mlwf agent` (and the SDK's `QueuedRun` follows them), items pushed by `mlwf launch` run on
//! the official `wandb launch-agent`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mlwf::testkit::launch::{log_job, HandMadeJob};
use mlwf::testkit::sdk::official_sdk_command;
use mlwf::wandb::launch::LaunchSpec;
use serde_json::{json, Value};
use tokio::process::Command;

use super::{create_queue, eventually, items, mlwf, output, run, signal, text, Repos, QUEUE};
use crate::util::{self, closed_port_url, Fixture, ENTITY, PROJECT};

/// The job's code: dumps what it was given, then a run with defaults the launch overrides.
const TRAIN_PY: &str = r#"import json, os, subprocess, sys
out = os.environ.get("PROBE_JOB_ENV_OUT")
if out:
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    with open(out, "w") as f:
        json.dump({"env": {k: v for k, v in os.environ.items() if k.startswith("WANDB_")},
                   "argv": sys.argv, "head": head.strip()}, f)
import wandb
run = wandb.init(project="ignored-by-launch", config={"lr": 0.1, "epochs": 2})
for i in range(3):
    run.log({"loss": 1.0 / (i + 1)})
run.summary["final"] = "ok"
run.finish()
"#;

struct Official<'a> {
    t: &'a Fixture,
    python: PathBuf,
    repos: &'a Repos,
    home: PathBuf,
    dump: PathBuf,
}

impl<'a> Official<'a> {
    fn new(t: &'a Fixture, python: PathBuf, repos: &'a Repos) -> Self {
        let home = t.path("home");
        Official {
            dump: t.path("dump").join("env.json"),
            t,
            python,
            repos,
            home,
        }
    }

    /// The venv's `bin`, first on the `PATH` of everything, so that a job's `python` is it.
    fn path(&self) -> String {
        let bin = std::path::absolute(&self.python)
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `python <script> args` with the SDK pointed at the fixture, in a home of its own.
    fn python(&self, script: &Path, args: &[&str]) -> Command {
        let mut command = official_sdk_command(
            &self.python,
            script,
            self.t.server.base_url(),
            util::KEY,
            &self.t.path("sdk"),
        )
        .unwrap();
        command
            .args(args)
            .env("HOME", &self.home)
            .env("PATH", self.path())
            .env("WANDB_ENTITY", ENTITY)
            .env("WANDB_PROJECT", PROJECT)
            .env("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.5")
            .env("PROBE_JOB_ENV_OUT", &self.dump)
            .envs(self.repos.ssh_env());
        command
    }

    /// The official `wandb` command line.
    fn wandb(&self, args: &[&str]) -> Command {
        let cli = std::path::absolute(&self.python)
            .unwrap()
            .with_file_name("wandb");
        self.python(&cli, args)
    }

    fn probe(&self, args: &[&str]) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/launch_probe.py");
        self.python(&script, args)
    }

    /// `mlwf ARGS` in the work tree with the same `PATH`, ssh and dump file.
    fn mlwf(&self, args: &[&str]) -> Command {
        let mut command = mlwf(self.t, &self.repos.work, args);
        command
            .env("PATH", self.path())
            .env("PROBE_JOB_ENV_OUT", &self.dump)
            .env("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.5")
            .envs(self.repos.ssh_env());
        for (var, sub) in [
            ("WANDB_DIR", "wandb"),
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_CONFIG_DIR", "config"),
        ] {
            command.env(var, self.t.path("sdk").join(sub));
        }
        command
    }

    fn dumped(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.dump).expect("the job dumped its environment"))
            .unwrap()
    }
}

/// The queue, and a repository whose feat-x holds [`TRAIN_PY`], pushed.
async fn pushed_repository(t: &Fixture) -> Repos {
    create_queue(t).await;
    let repos = Repos::new(&t.path("repos"), &[("train.py", TRAIN_PY)]);
    repos.push();
    repos
}

#[tokio::test]
async fn items_pushed_by_the_official_cli_run_on_mlwf_agent() {
    let Some(python) = util::python() else { return };
    let t = Fixture::start().await;
    let repos = pushed_repository(&t).await;
    let official = Official::new(&t, python, &repos);

    let remote = repos.remote();
    let created = output(&mut official.wandb(&[
        "job",
        "create",
        "git",
        &remote,
        "-e",
        ENTITY,
        "-p",
        PROJECT,
        "-n",
        "job-git",
        "-E",
        "python train.py",
        "-g",
        "feat-x",
    ]))
    .await;
    assert!(
        created.status.success(),
        "wandb job create: {}",
        text(&created)
    );
    let overrides = r#"{"overrides":{"run_config":{"lr":0.5},"args":["--flag","v"]}}"#;
    let pushed = output(&mut official.wandb(&[
        "launch",
        "--job",
        &format!("{ENTITY}/{PROJECT}/job-git:latest"),
        "--queue",
        QUEUE,
        "-e",
        ENTITY,
        "-p",
        PROJECT,
        "--name",
        "interop-i",
        "-c",
        overrides,
    ]))
    .await;
    assert!(pushed.status.success(), "wandb launch: {}", text(&pushed));
    let item = items(&t).await[0].0.clone();

    // A job whose remote cannot be reached, and one whose entrypoint never starts a run.
    let unreachable = format!(
        "{}/x.git",
        closed_port_url().await.replace("http://", "https://")
    );
    let job = HandMadeJob {
        name: "job-bad-remote",
        remote: &unreachable,
        commit: "0123456789abcdef0123456789abcdef01234567",
        entrypoint: &["python", "train.py"],
        requirements: "",
    };
    let bad_remote = log_job(&t.client, &job, &t.path("hand-made"))
        .await
        .unwrap();
    let no_init = LaunchSpec::from_value(json!({
        "job": format!("{ENTITY}/{PROJECT}/job-git:latest"), "entity": ENTITY, "project": PROJECT,
        "overrides": {"entry_point": ["python", "-c", "print('no init here')"]}}))
    .unwrap();
    for spec in [
        LaunchSpec::from_value(json!({"job": bad_remote, "entity": ENTITY, "project": PROJECT}))
            .unwrap(),
        no_init,
    ] {
        t.client
            .push_to_queue(ENTITY, QUEUE, &spec, None)
            .await
            .unwrap();
    }

    let waiter = official
        .probe(&["wait", ENTITY, PROJECT, QUEUE, &item])
        .output();
    let mut agent = official.mlwf(&["agent", "--queue", QUEUE, "--max-items", "3"]);
    let agent = output(&mut agent);
    let (waited, agent) = tokio::join!(waiter, agent);
    assert!(agent.status.success(), "{}", text(&agent));
    let waited = waited.unwrap();
    assert!(waited.status.success(), "QueuedRun: {}", text(&waited));

    let all = items(&t).await;
    let (_, state, run_id) = &all[0];
    assert_eq!(state, "CLAIMED");
    let run_id = run_id.clone().unwrap();
    let seen: Value = serde_json::from_slice(
        waited
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seen, json!({"id": run_id, "state": "finished"}));
    let run = run(&t, &run_id).await.unwrap();
    assert_eq!(run["state"], "finished");
    assert_eq!(run["commit"], repos.feat_x.as_str());
    assert_eq!(
        run["config"]["lr"], 0.5,
        "the override beats the script's default: {run}"
    );
    assert_eq!(run["config"]["epochs"], 2);
    assert_eq!(run["summary"]["final"], "ok");

    let dump = official.dumped();
    let env = &dump["env"];
    assert_eq!(env["WANDB_RUN_ID"], run_id.as_str());
    assert_eq!(env["WANDB_LAUNCH"], "True");
    assert_eq!(
        (env["WANDB_PROJECT"].as_str(), env["WANDB_ENTITY"].as_str()),
        (Some(PROJECT), Some(ENTITY))
    );
    assert_eq!(env["WANDB_NAME"], "interop-i");
    assert_eq!(env["WANDB_LAUNCH_QUEUE_NAME"], QUEUE);
    assert_eq!(env["WANDB_LAUNCH_TRACE_ID"], item.as_str());
    assert_eq!(
        serde_json::from_str::<Value>(env["WANDB_CONFIG"].as_str().unwrap()).unwrap(),
        json!({"lr": 0.5})
    );
    assert_eq!(
        serde_json::from_str::<Value>(env["WANDB_ARTIFACTS"].as_str().unwrap()).unwrap(),
        json!({"_wandb_job": format!("{ENTITY}/{PROJECT}/job-git:latest")})
    );
    assert!(env.get("WANDB_SERVICE").is_none());
    assert_eq!(dump["argv"], json!(["train.py", "--flag", "v"]));
    assert_eq!(
        dump["head"],
        repos.feat_x.as_str(),
        "the job runs in a checkout of feat-x"
    );

    for (index, expected) in [(1, "agent"), (2, "run")] {
        let (id, state, _) = &all[index];
        assert_eq!(state, "FAILED", "item {index}: {all:?}");
        let error = t
            .client
            .item_details(id)
            .await
            .unwrap()
            .unwrap()
            .error
            .unwrap();
        assert_eq!(error.stage, expected, "{error:?}");
        let says = if index == 1 {
            "x.git"
        } else {
            "never started its W&B run"
        };
        assert!(error.message.contains(says), "{}", error.message);
        assert!(!error.message.contains(util::KEY));
    }
}

#[tokio::test]
async fn items_pushed_by_mlwf_launch_run_on_the_official_agent() {
    let Some(python) = util::python() else { return };
    let t = Fixture::start().await;
    let repos = pushed_repository(&t).await;
    let official = Official::new(&t, python, &repos);
    let launched = output(&mut official.mlwf(&[
        "launch",
        "--branch",
        "feat-x",
        "--queue",
        QUEUE,
        "--entrypoint",
        "python train.py",
        "--set",
        "lr=0.5",
        "--json",
    ]))
    .await;
    assert!(launched.status.success(), "{}", text(&launched));
    let launched: Value = serde_json::from_slice(&launched.stdout).unwrap();
    let job = launched["job"].as_str().unwrap().to_owned();

    let config = official.home.join(".config/wandb");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("launch-config.yaml"),
        format!("entity: {ENTITY}\nqueues: [{QUEUE}]\nmax_jobs: 1\n"),
    )
    .unwrap();
    let mut agent = official
        .wandb(&["launch-agent", "-q", QUEUE, "-e", ENTITY, "-j", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = eventually(
        Duration::from_secs(120),
        "the official agent to finish the run",
        || async {
            let (_, state, run_id) = items(&t).await.into_iter().next()?;
            assert_ne!(state, "FAILED");
            let run_id = run_id?;
            let state = run(&t, &run_id).await?["state"].as_str()?.to_owned();
            (state == "finished").then_some(run_id)
        },
    )
    .await;
    signal(&agent, libc::SIGINT);
    if tokio::time::timeout(Duration::from_secs(10), agent.wait())
        .await
        .is_err()
    {
        agent.start_kill().unwrap();
    }

    let run = run(&t, &run_id).await.unwrap();
    assert_eq!(
        run["commit"],
        repos.feat_x.as_str(),
        "feat-x, not main ({})",
        repos.main
    );
    assert_eq!(run["config"]["branch"], "feat-x");
    assert_eq!(run["config"]["lr"], 0.5);
    let item = items(&t).await[0].0.clone();
    let raw = t.run_fields(ENTITY, PROJECT, &run_id, "config").await;
    let stored: Value = serde_json::from_str(raw["config"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored["_wandb"]["value"]["launch_trace_id"],
        item.as_str(),
        "{stored}"
    );
    let env = &official.dumped()["env"];
    assert_eq!(
        serde_json::from_str::<Value>(env["WANDB_ARTIFACTS"].as_str().unwrap()).unwrap()
            ["_wandb_job"],
        job.as_str()
    );
    let read = output(&mut official.probe(&["job", &job])).await;
    assert!(read.status.success(), "Api().job: {}", text(&read));
    let read = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.contains("\"entrypoint\": [\"python\", \"train.py\"]"),
        "{read}"
    );
}
