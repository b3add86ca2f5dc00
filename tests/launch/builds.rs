//! What the agent builds before a job runs: a virtual environment for a Python job's
//! `requirements.frozen.txt` (made once per file, then reused), and a repository that is itself
//! a Cargo project building `mlwf` (a fork), whose own binary then runs as the entrypoint.
//! Neither job starts a W&B run, so each item fails, and its failure's output tail shows what ran.

use mlwf::testkit::launch::{log_job, HandMadeJob};
use mlwf::wandb::launch::LaunchSpec;
use serde_json::json;

use super::{agent_command, create_queue, items, output, text, Repos, QUEUE};
use crate::util::{Fixture, ENTITY, PROJECT};

/// A pure-Python wheel with one module, made with the system's `python3`.
fn wheel(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("probe_pkg-0.1-py3-none-any.whl");
    let script = r#"import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("probe_pkg/__init__.py", "MARK = 'installed-from-requirements'\n")
    z.writestr("probe_pkg-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: probe-pkg\nVersion: 0.1\n")
    z.writestr("probe_pkg-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("probe_pkg-0.1.dist-info/RECORD", "probe_pkg/__init__.py,,\nprobe_pkg-0.1.dist-info/METADATA,,\nprobe_pkg-0.1.dist-info/WHEEL,,\nprobe_pkg-0.1.dist-info/RECORD,,\n")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

async fn push(t: &Fixture, job: &str, count: usize) {
    let spec =
        LaunchSpec::from_value(json!({"job": job, "entity": ENTITY, "project": PROJECT})).unwrap();
    for _ in 0..count {
        t.client
            .push_to_queue(ENTITY, QUEUE, &spec, None)
            .await
            .unwrap();
    }
}

/// The output tails of the failed items, in queue order.
async fn tails(t: &Fixture) -> Vec<String> {
    let mut messages = Vec::new();
    for (id, _, _) in items(t).await {
        let error = t.client.item_details(&id).await.unwrap().unwrap().error;
        messages.push(error.map(|e| e.message).unwrap_or_default());
    }
    messages
}

#[tokio::test]
async fn python_requirements_get_a_virtual_environment_made_once() {
    let t = Fixture::start().await;
    create_queue(&t).await;
    let repos = Repos::new(&t.path("repos"), &[]);
    repos.push();
    let wheel = wheel(&t.path("wheels"));
    let job = HandMadeJob {
        name: "job-python",
        remote: &repos.remote(),
        commit: &repos.feat_x,
        entrypoint: &["python", "-c", "import probe_pkg; print(probe_pkg.MARK)"],
        requirements: &format!("{}\n", wheel.display()),
    };
    let job = log_job(&t.client, &job, &t.path("job")).await.unwrap();
    push(&t, &job, 2).await;
    let out = output(&mut agent_command(&t, &repos, &["--max-items", "2"])).await;
    assert!(out.status.success(), "{}", text(&out));
    for tail in tails(&t).await {
        assert!(tail.contains("installed-from-requirements"), "{tail}");
    }
    let venvs = std::fs::read_dir(t.path("agent").join("venvs"))
        .unwrap()
        .count();
    assert_eq!(
        venvs, 1,
        "the second job reuses the first one's environment"
    );
}

#[tokio::test]
async fn a_fork_of_mlwf_is_built_and_its_binary_runs() {
    let t = Fixture::start().await;
    create_queue(&t).await;
    let main_rs = "fn main() { println!(\"fork built: {:?}\", std::env::args().skip(1).collect::<Vec<_>>()); }\n";
    let repos = Repos::new(
        &t.path("repos"),
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"mlwf\"\nversion = \"0.0.1\"\nedition = \"2021\"\n",
            ),
            ("src/main.rs", main_rs),
            (
                "Cargo.lock",
                "version = 4\n\n[[package]]\nname = \"mlwf\"\nversion = \"0.0.1\"\n",
            ),
        ],
    );
    repos.push();
    let job = HandMadeJob {
        name: "job-fork",
        remote: &repos.remote(),
        commit: &repos.feat_x,
        entrypoint: &["mlwf", "train"],
        requirements: "",
    };
    let job = log_job(&t.client, &job, &t.path("job")).await.unwrap();
    push(&t, &job, 1).await;
    let out = output(&mut agent_command(&t, &repos, &["--max-items", "1"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let tail = tails(&t).await.remove(0);
    assert!(
        tail.contains("fork built: [\"train\"]"),
        "{tail}\n{}",
        text(&out)
    );
    let built = t.path("agent").join("targets");
    assert_eq!(
        std::fs::read_dir(built).unwrap().count(),
        1,
        "one target folder per repository"
    );
}
