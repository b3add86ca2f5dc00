//! The `local-container` runner of an agent on the host: each job in its own container of the
//! agent image, with the official environment (read from inside the job), no secret on any
//! command line, its own GPUs, a Stop from the UI that removes the container, and containers an
//! agent killed outright left behind, stopped and requeued by the next agent.
//!
//! These machines have no GPU: docker goes through a wrapper that records each command and drops
//! `--gpus` before calling the real docker, so the GPU assignment is read from the record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mlwf::experiment::keys;
use mlwf::wandb::launch::{LaunchSpec, Overrides};
use serde_json::{json, Value};

use super::{docker, images, labelled, Images};
use crate::launch::{
    agent_command, ended, eventually, first_checkpoint, items, mlwf, output, run, stop_from_ui,
    text, Repos, QUEUE, QUICK_TRAIN,
};
use crate::util::{Fixture, ENTITY, KEY, PROJECT};

/// The docker wrapper: appends its arguments to `log`, one call a line, and runs docker
/// without `--gpus`.
fn recording_docker(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("docker");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nfirst=1; skip=0\nfor arg do\n  if [ $first = 1 ]; then set --; first=0; fi\n  if [ $skip = 1 ]; then skip=0; continue; fi\n  if [ \"$arg\" = --gpus ]; then skip=1; continue; fi\n  set -- \"$@\" \"$arg\"\ndone\nexec docker \"$@\"\n",
        log.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Removes the job containers of the fixture's agent folder, however the test ends.
struct JobContainers(String);

impl JobContainers {
    fn of(t: &Fixture) -> Self {
        Self(t.path("agent").display().to_string())
    }
}

impl Drop for JobContainers {
    fn drop(&mut self) {
        for name in labelled("mlwf.workdir", &self.0) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "--force", &name])
                .output();
        }
    }
}

async fn setup(t: &Fixture) -> Repos {
    t.client
        .create_run_queue(
            ENTITY,
            QUEUE,
            "local-container",
            json!({"shm-size": "256m"}),
        )
        .await
        .unwrap();
    let repos = Repos::new(&t.path("repos"), &[("NOTES.md", "idea\n")]);
    repos.push();
    repos
}

async fn launch(t: &Fixture, repos: &Repos, args: &[&str]) {
    let mut all = vec!["launch", "--queue", QUEUE, "--json"];
    all.extend_from_slice(QUICK_TRAIN);
    all.extend_from_slice(args);
    let out = output(mlwf(t, &repos.work, &all).envs(repos.ssh_env())).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// A fixture with a `local-container` queue, a pushed repository, the recording docker, and
/// the job containers removed at the end.
struct Case {
    _containers: JobContainers,
    images: &'static Images,
    t: Fixture,
    repos: Repos,
    log: PathBuf,
    wrapper: PathBuf,
}

impl Case {
    async fn start() -> Option<Case> {
        let images = images()?;
        let t = Fixture::start().await;
        let repos = setup(&t).await;
        let log = t.dir.path().join("docker.log");
        let wrapper = recording_docker(t.dir.path(), &log);
        Some(Case {
            _containers: JobContainers::of(&t),
            images,
            t,
            repos,
            log,
            wrapper,
        })
    }

    /// `mlwf agent` with the agent image as default, a short grace and the recording docker.
    fn agent(&self, args: &[&str]) -> tokio::process::Command {
        let mut all = vec!["--image", &self.images.agent, "--grace", "5s"];
        all.extend_from_slice(args);
        let mut command = agent_command(&self.t, &self.repos, &all);
        command.env("MLWF_DOCKER", &self.wrapper);
        command
    }

    /// The docker commands the agent ran, one a line.
    fn recorded(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The runs of the claimed items, once `count` of them run.
async fn running_runs(t: &Fixture, count: usize) -> Vec<String> {
    eventually(Duration::from_secs(90), "running runs", || async {
        let mut running = Vec::new();
        for (_, state, id) in items(t).await {
            let Some(id) = id.filter(|_| state == "CLAIMED") else {
                continue;
            };
            if run(t, &id).await?["state"] == "running" {
                running.push(id);
            }
        }
        (running.len() == count).then_some(running)
    })
    .await
}

#[tokio::test]
async fn container_jobs_get_their_env_their_own_gpus_and_stop_from_the_ui() {
    let Some(case) = Case::start().await else {
        return;
    };
    let Case { t, repos, .. } = &case;
    let entrypoint = "sh -c 'echo inside uid=$(id -u) pwd=$(pwd) key-chars=${#WANDB_API_KEY} \
         cuda=${CUDA_VISIBLE_DEVICES:-unset}; env | grep ^WANDB_ | sort; exec mlwf train'";
    for _ in 0..2 {
        let args = [
            "--entrypoint",
            entrypoint,
            "--set",
            "optim.max_iters=100000",
        ];
        launch(t, repos, &args).await;
    }
    let agent = case
        .agent(&["--gpus", "0,1", "--max-items", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs = running_runs(t, 2).await;

    let recorded = case.recorded();
    assert!(!recorded.contains(KEY), "{recorded}");
    let devices: BTreeSet<String> = recorded
        .lines()
        .filter(|line| line.starts_with("run "))
        .map(|line| {
            let gpus = line.split(" --gpus ").nth(1).expect("a --gpus flag");
            gpus.split(' ').next().unwrap().to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = ["\"device=0\"", "\"device=1\""].map(String::from).into();
    assert_eq!(devices, expected, "{recorded}");
    assert!(recorded.contains("--shm-size 256m"), "{recorded}");

    for id in &runs {
        let names = labelled("mlwf.run", id);
        assert_eq!(names.len(), 1, "one container for run {id}: {names:?}");
        let command_line = docker(&[
            "inspect",
            "--format",
            "{{json .Path}} {{json .Args}}",
            &names[0],
        ]);
        assert!(!command_line.contains(KEY), "{command_line}");
        assert!(command_line.contains("mlwf train"), "{command_line}");
    }

    for id in &runs {
        let stopped = Instant::now();
        stop_from_ui(t, id).await;
        eventually(Duration::from_secs(10), "the container to go", || async {
            labelled("mlwf.run", id).is_empty().then_some(())
        })
        .await;
        println!(
            "run {id}: container removed {:?} after the stop",
            stopped.elapsed()
        );
    }

    let out = ended(agent).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(KEY), "{said}");
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let inside = format!(
        "inside uid={uid} pwd=/mnt/wandb key-chars={} cuda=unset",
        KEY.len()
    );
    assert_eq!(said.matches(&inside).count(), 2, "{said}");
    for id in &runs {
        for line in [
            format!("WANDB_RUN_ID={id}"),
            "WANDB_LAUNCH=True".to_owned(),
            format!(
                "WANDB_BASE_URL={}",
                t.server.base_url().trim_end_matches('/')
            ),
            format!("WANDB_ENTITY={ENTITY}"),
            format!("WANDB_PROJECT={PROJECT}"),
        ] {
            assert!(said.contains(&line), "{line} not in:\n{said}");
        }
    }
}

#[tokio::test]
async fn an_agent_killed_outright_leaves_containers_the_next_one_stops_and_requeues() {
    let Some(case) = Case::start().await else {
        return;
    };
    let Case { t, repos, .. } = &case;
    launch(
        t,
        repos,
        &[
            "--set",
            "optim.max_iters=400",
            "--set",
            "train.checkpoint_interval=10",
        ],
    )
    .await;
    let mut first = case
        .agent(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_id = running_runs(t, 1).await.remove(0);
    first_checkpoint(&t.client, &run_id).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert_eq!(
        labelled("mlwf.run", &run_id).len(),
        1,
        "the container outlives its agent"
    );

    let second = output(&mut case.agent(&["--max-items", "1"])).await;
    let said = text(&second);
    assert!(second.status.success(), "{said}");
    assert!(said.contains("left by an agent that is gone"), "{said}");
    let resumed = run(t, &run_id).await.unwrap();
    assert_eq!(resumed["state"], "finished", "{resumed}\n{said}");
    assert!(
        resumed["config"][keys::config::RESUMED_STEP]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{resumed}"
    );
    assert_eq!(resumed["summary"][keys::metric::TRAIN_STEPS], json!(400));
    let claimed: Vec<Value> = items(t)
        .await
        .into_iter()
        .filter(|(_, _, r)| r.as_deref() == Some(run_id.as_str()))
        .map(|(id, state, _)| json!([id, state]))
        .collect();
    assert_eq!(
        claimed.len(),
        2,
        "the run ran once more, not twice: {claimed:?}"
    );
    assert!(labelled("mlwf.run", &run_id).is_empty());
}

#[tokio::test]
async fn an_image_only_item_runs_the_image_with_its_entrypoint_replaced() {
    let Some(case) = Case::start().await else {
        return;
    };
    let Case { images, t, .. } = &case;
    let mut train = vec!["mlwf".to_owned(), "train".to_owned()];
    train.extend(QUICK_TRAIN.iter().map(|s| (*s).to_owned()));
    let spec = LaunchSpec {
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        docker: json!({"docker_image": images.agent}),
        overrides: Overrides {
            entry_point: Some(train),
            ..Overrides::default()
        },
        ..LaunchSpec::default()
    };
    t.client
        .push_to_queue(ENTITY, QUEUE, &spec, None)
        .await
        .unwrap();
    let out = output(&mut case.agent(&["--max-items", "1"])).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("in image {}", images.agent)),
        "{said}"
    );
    let (_, _, run_id) = items(t).await.remove(0);
    let finished = run(t, &run_id.unwrap()).await.unwrap();
    assert_eq!(finished["state"], "finished", "{finished}\n{said}");
    let recorded = case.recorded();
    let line = recorded.lines().find(|l| l.starts_with("run ")).unwrap();
    assert!(
        !line.contains("--volume") && !line.contains("--workdir"),
        "{line}"
    );
}

#[tokio::test]
async fn the_agents_sigterm_stops_its_containers_and_requeues_their_items() {
    let Some(case) = Case::start().await else {
        return;
    };
    let Case { t, repos, .. } = &case;
    launch(t, repos, &["--set", "optim.max_iters=100000"]).await;
    let agent = case
        .agent(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = running_runs(t, 1).await.remove(0);
    assert_eq!(labelled("mlwf.run", &run_id).len(), 1);
    crate::launch::signal(&agent, libc::SIGTERM);
    let out = ended(agent).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("requeued as item"), "{said}");
    assert!(labelled("mlwf.run", &run_id).is_empty(), "{said}");
    let recorded = case.recorded();
    assert!(
        recorded
            .lines()
            .any(|l| l.starts_with("stop --time 5 mlwf-")),
        "{recorded}"
    );
    let pending = items(t)
        .await
        .into_iter()
        .filter(|(_, s, _)| s == "PENDING")
        .count();
    assert_eq!(pending, 1, "the item is back in the queue");
}

#[tokio::test]
async fn a_failing_container_job_fails_its_item_with_the_containers_last_output() {
    let Some(case) = Case::start().await else {
        return;
    };
    let Case { t, repos, .. } = &case;
    let entrypoint = "sh -c 'echo oops-from-the-container >&2; exit 3'";
    launch(t, repos, &["--entrypoint", entrypoint]).await;
    let out = output(&mut case.agent(&["--max-items", "1"])).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("oops-from-the-container"), "streamed: {said}");
    let (item, state, _) = items(t).await.remove(0);
    assert_eq!(state, "FAILED", "{said}");
    let error = t
        .client
        .item_details(&item)
        .await
        .unwrap()
        .unwrap()
        .error
        .expect("a failure");
    assert_eq!(error.stage, "run");
    assert!(
        error.message.contains("exited with status 3")
            && error.message.contains("oops-from-the-container"),
        "{}",
        error.message
    );
}
