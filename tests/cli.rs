//! The `mlwf` binary end to end: backend choice, `results summary`, and clear errors.

use std::path::Path;
use std::process::{Output, Stdio};

use mlwf::server::Tuning;
use mlwf::wandb::{Client, RunSpec};
use serde_json::{json, Value};

use crate::util;

/// `mlwf ARGS` in `dir` with the environment `env`.
fn mlwf(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    util::mlwf(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run mlwf")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Logs a finished run of `branch` into the server at `data_dir`, then stops the server.
async fn seed_run(data_dir: &Path, branch: &str, loss: f64) -> String {
    let server = util::local_server(data_dir, Tuning::default()).await;
    let client = Client::new(util::settings(server.base_url())).unwrap();
    let run = client
        .start_run(RunSpec {
            entity: Some("local".into()),
            project: Some("mlwf".into()),
            config: row!("branch": branch, "lr": 0.001),
            ..RunSpec::default()
        })
        .await
        .expect("start run");
    run.log(row!("train/loss": loss * 2.0));
    run.log(row!("train/loss": loss));
    let id = run.id().to_owned();
    run.finish(0).await.expect("finish");
    server.shutdown().await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_summary_reads_the_embedded_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join(".mlwf");
    let older = seed_run(&store.join("server"), "feat-x", 2.0).await;
    let newer = seed_run(&store.join("server"), "feat-x", 1.5).await;
    assert_ne!(older, newer);

    let store_arg = store.to_str().unwrap();
    let output = mlwf(
        dir.path(),
        &[
            "--store", store_arg, "results", "summary", "--branch", "feat-x", "--json",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("embedded local store"),
        "says which backend: {}",
        stderr(&output)
    );
    let run: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(run["id"], json!(newer), "the latest run of the branch");
    assert_eq!(run["state"], "finished");
    assert_eq!(run["config"]["branch"], "feat-x");
    assert_eq!(run["summary"]["train/loss"], json!(1.5));

    let output = mlwf(
        dir.path(),
        &["--store", store_arg, "results", "summary", "--run", &older],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&older) && text.contains("finished") && text.contains("train/loss"),
        "{text}"
    );

    let output = mlwf(
        dir.path(),
        &[
            "--store", store_arg, "results", "summary", "--branch", "nope",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no run of branch \"nope\""),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_is_a_clear_error_that_never_shows_the_key() {
    let fx = util::Fixture::start().await;
    let (dir, server) = (&fx.dir, &fx.server);
    let wrong = "local-wrongwrongwrongwrongwrongwrongwrongwrong";
    let output = mlwf(
        dir.path(),
        &["--entity", "local", "results", "summary", "--run", "abc"],
        &[
            ("WANDB_BASE_URL", server.base_url()),
            ("WANDB_API_KEY", wrong),
        ],
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("API key") && err.contains(server.base_url()),
        "{err}"
    );
    assert!(!err.contains(wrong), "the key leaked: {err}");
}

#[test]
fn a_base_url_without_a_key_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let output = mlwf(
        dir.path(),
        &["results", "summary", "--run", "abc"],
        &[("WANDB_BASE_URL", "http://127.0.0.1:9")],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("WANDB_API_KEY is not"),
        "{}",
        stderr(&output)
    );
}

/// An unset GitHub secret expands to "": the error names the empty key, not `WANDB_BASE_URL`,
/// which the user never set.
#[test]
fn an_empty_api_key_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let output = mlwf(
        dir.path(),
        &["results", "summary", "--run", "abc"],
        &[("WANDB_API_KEY", "")],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("WANDB_API_KEY is set in the environment but empty"),
        "{err}"
    );
    assert!(!err.contains("WANDB_BASE_URL"), "{err}");
}

/// `mlwf results summary ... | head -1`: the reader closing the pipe ends the command quietly,
/// with status 0, as it does for any Unix filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join(".mlwf");
    let id = seed_run(&store.join("server"), "feat-x", 2.0).await;
    let mut child = util::mlwf(dir.path())
        .args(["--store", store.to_str().unwrap(), "results", "summary"])
        .args(["--run", &id, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mlwf");
    // The reader is gone before the command has opened the store, let alone printed.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("mlwf ends");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

/// The embedded store ignores itself in git: runs and checkpoints never make the work tree dirty
/// nor get committed by `git add -A`.
#[test]
fn the_embedded_store_stays_out_of_git() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run git");
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    git(&["init", "-q"]);
    let output = mlwf(dir.path(), &["results", "summary", "--run", "abc"], &[]);
    assert!(!output.status.success(), "there is no run abc");
    assert!(
        dir.path().join(".mlwf/server").exists(),
        "{}",
        stderr(&output)
    );
    assert_eq!(git(&["status", "--porcelain", "--untracked-files=all"]), "");
}
