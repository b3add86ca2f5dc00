//! W&B Launch end to end: `mlwf queue`, `mlwf launch` and `mlwf agent` as processes against the
//! fixture's server (or the embedded store), with git repositories on disk and, for the
//! interop checks, the official SDK's `wandb launch` and `wandb launch-agent`.
//!
//! Remotes the official tools accept are `git@localhost:<path>` with a fake `ssh` that runs
//! git's upload-pack locally (`shared/reference/wandb-launch-observed.md` F3): no network.

mod builds;
mod embedded;
mod faults;
mod interop;
mod private;
mod refusals;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;

use crate::util::{self, Fixture, ENTITY, PROJECT};

/// The queue every test uses.
pub const QUEUE: &str = "lq";

/// A repository with `main` and `feat-x` (one commit apart), a bare `origin` it is pushed to,
/// and the fake ssh that reaches it.
pub struct Repos {
    pub work: PathBuf,
    pub bare: PathBuf,
    pub fakessh: PathBuf,
    pub feat_x: String,
    pub main: String,
}

impl Repos {
    /// `files` are committed on `feat-x` on top of `main`.
    pub fn new(root: &Path, files: &[(&str, &str)]) -> Repos {
        let work = root.join("work");
        let bare = root.join("repo.git");
        std::fs::create_dir_all(&work).unwrap();
        git(
            root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README.md"), "probe\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "main"]);
        git(&work, &["checkout", "-q", "-b", "feat-x"]);
        for (name, text) in files {
            let path = work.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "feat-x"]);
        let fakessh = mlwf::testkit::launch::fake_ssh(root).unwrap();
        let feat_x = rev(&work, "feat-x");
        let main = rev(&work, "main");
        Repos {
            work,
            bare,
            fakessh,
            feat_x,
            main,
        }
    }

    /// The ssh-form remote of the bare repository.
    pub fn remote(&self) -> String {
        format!("git@localhost:{}", self.bare.display())
    }

    /// Points `origin` at [`Repos::remote`] and pushes both branches.
    pub fn push(&self) {
        git(&self.work, &["remote", "add", "origin", &self.remote()]);
        self.git_ssh(&["push", "-q", "origin", "main", "feat-x"]);
    }

    /// `git args` in the work tree with the fake ssh.
    pub fn git_ssh(&self, args: &[&str]) {
        git_with(&self.work, args, &self.ssh_env());
    }

    pub fn ssh_env(&self) -> [(&'static str, String); 2] {
        mlwf::testkit::launch::fake_ssh_env(&self.fakessh)
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    git_with(dir, args, &[]);
}

fn git_with(dir: &Path, args: &[&str], env: &[(&str, String)]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn rev(dir: &Path, rev: &str) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", rev])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `mlwf ARGS` in `dir`, pointed at the fixture's server as entity/project [`ENTITY`]/[`PROJECT`],
/// with the agent's folder and the data cache inside the fixture.
pub fn mlwf(t: &Fixture, dir: &Path, args: &[&str]) -> Command {
    let mut command = util::mlwf_async(dir);
    command
        .args(args)
        .env("WANDB_BASE_URL", t.server.base_url())
        .env("WANDB_API_KEY", util::KEY)
        .env("WANDB_ENTITY", ENTITY)
        .env("WANDB_PROJECT", PROJECT)
        .env("MLWF_AGENT_DIR", t.path("agent"))
        .env("MLWF_DATA_CACHE", t.path("data-cache"))
        .env("MLWF_LOG", "warn");
    command
}

/// `mlwf agent --queue lq ARGS` in the work tree, with the fake ssh.
pub fn agent_command(t: &Fixture, repos: &Repos, args: &[&str]) -> Command {
    let mut all = vec!["agent", "--queue", QUEUE];
    all.extend_from_slice(args);
    let mut command = mlwf(t, &repos.work, &all);
    command.envs(repos.ssh_env());
    command
}

/// Runs `command` to its end, for at most 180 s; a command still running then is killed and
/// the test fails with what it had printed.
pub async fn output(command: &mut Command) -> Output {
    use tokio::io::AsyncReadExt as _;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the command ran");
    let collect = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let buffer = buffer.clone();
            async move {
                let Some(mut stream) = stream else { return };
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    buffer.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }
        });
        (buffer, task)
    };
    let (stdout, out_task) = collect(child.stdout.take().map(|s| Box::new(s) as _));
    let (stderr, err_task) = collect(child.stderr.take().map(|s| Box::new(s) as _));
    let taken = |buffer: &std::sync::Mutex<Vec<u8>>| std::mem::take(&mut *buffer.lock().unwrap());
    match tokio::time::timeout(Duration::from_secs(180), child.wait()).await {
        Ok(status) => {
            let _ = (out_task.await, err_task.await);
            Output {
                status: status.expect("the command ran"),
                stdout: taken(&stdout),
                stderr: taken(&stderr),
            }
        }
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "the command did not finish in 180 s; it printed:\n{}\n{}",
                String::from_utf8_lossy(&taken(&stdout)),
                String::from_utf8_lossy(&taken(&stderr))
            );
        }
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub async fn create_queue(t: &Fixture) {
    t.client
        .create_run_queue(ENTITY, QUEUE, "local-process", json!({}))
        .await
        .expect("create the queue");
}

/// `mlwf train` settings that finish in a couple of seconds.
pub const QUICK_TRAIN: &[&str] = &[
    "--set",
    "optim.max_iters=40",
    "--set",
    "optim.warmup_iters=5",
    "--set",
    "train.eval_interval=20",
    "--set",
    "train.checkpoint_interval=20",
];

/// The queue's items as GraphQL reports them: `(id, state, associatedRunId)`.
pub async fn items(t: &Fixture) -> Vec<(String, String, Option<String>)> {
    t.client
        .queue_items(ENTITY, QUEUE)
        .await
        .expect("queue items")
        .into_iter()
        .map(|i| (i.id, i.state.unwrap_or_default(), i.associated_run_id))
        .collect()
}

/// Polls `check` every 200 ms until it gives a value, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run `id`'s `state`, `config` (unwrapped) and `commit`, if the run exists.
pub async fn run(t: &Fixture, id: &str) -> Option<Value> {
    let info = t.client.run(ENTITY, PROJECT, id).await.expect("read run")?;
    Some(json!({
        "state": info.state.as_str(),
        "config": info.config,
        "commit": info.commit,
        "summary": info.summary,
        "storage_id": info.storage_id,
    }))
}

/// Waits until run `run_id` has logged its first checkpoint through `client`.
pub async fn first_checkpoint(client: &mlwf::wandb::Client, run_id: &str) {
    let checkpoint = mlwf::wandb::ArtifactRef {
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        name: mlwf::experiment::keys::checkpoint_artifact(run_id),
        alias: "latest".into(),
    };
    eventually(Duration::from_secs(60), "a first checkpoint", || async {
        client.artifact(&checkpoint).await.ok()
    })
    .await;
}

/// Presses Stop on run `id` in the W&B UI (the `stopRun` mutation).
pub async fn stop_from_ui(t: &Fixture, id: &str) {
    let storage_id = run(t, id).await.expect("the run")["storage_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.gql(
        "mutation($id: ID!) { stopRun(input: {id: $id}) { success } }",
        json!({"id": storage_id}),
    )
    .await;
}

/// Waits (at most a minute) for a child started with piped output and returns what it said.
pub async fn ended(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command ended in time")
        .expect("the command ran")
}

/// SIGTERM or SIGINT to a child process.
pub fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().expect("a running child") as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid, signal);
    }
}
