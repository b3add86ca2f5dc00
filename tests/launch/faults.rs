//! The agent when things go wrong or get busy: a Stop from the UI, its own SIGTERM (the item is
//! requeued and resumed from its checkpoint) and SIGKILL (the run is marked crashed), two agents
//! on one queue, GPU slots.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mlwf::experiment::keys;
use mlwf::server::Tuning;
use mlwf::wandb::launch::LaunchSpec;
use serde_json::Value;

use super::{
    agent_command, create_queue, eventually, first_checkpoint, items, mlwf, output, run, signal,
    stop_from_ui, text, Repos, QUEUE, QUICK_TRAIN,
};
use crate::util::{Fixture, ENTITY, PROJECT};

/// Launches feat-x with `args`; returns the pushed job reference.
async fn launch(t: &Fixture, repos: &Repos, args: &[&str]) -> String {
    let mut all = vec!["launch", "--queue", QUEUE, "--json"];
    all.extend_from_slice(args);
    let out = output(mlwf(t, &repos.work, &all).envs(repos.ssh_env())).await;
    assert!(out.status.success(), "{}", text(&out));
    let launched: Value = serde_json::from_slice(&out.stdout).unwrap();
    launched["job"].as_str().unwrap().to_owned()
}

fn agent(t: &Fixture, repos: &Repos, args: &[&str]) -> tokio::process::Child {
    agent_command(t, repos, &[&["--grace", "20s"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent")
}

async fn setup(t: &Fixture) -> Repos {
    create_queue(t).await;
    let repos = Repos::new(&t.path("repos"), &[("NOTES.md", "idea\n")]);
    repos.push();
    repos
}

/// The run of the queue's only claimed item, once it is running.
async fn running_run(t: &Fixture) -> String {
    eventually(Duration::from_secs(60), "a running run", || async {
        let (_, _, run_id) = items(t)
            .await
            .into_iter()
            .find(|(_, s, r)| s == "CLAIMED" && r.is_some())?;
        let run_id = run_id?;
        let state = run(t, &run_id).await?["state"].as_str()?.to_owned();
        (state == "running").then_some(run_id)
    })
    .await
}

#[tokio::test]
async fn a_stop_from_the_ui_ends_the_job_within_seconds() {
    let t = Fixture::start().await;
    let repos = setup(&t).await;
    launch(&t, &repos, &["--set", "optim.max_iters=100000"]).await;
    let mut agent = agent(&t, &repos, &["--max-items", "1"]);
    let run_id = running_run(&t).await;
    let stopped_at = Instant::now();
    stop_from_ui(&t, &run_id).await;
    let status = tokio::time::timeout(Duration::from_secs(30), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopped_at.elapsed()
    );
    let state = run(&t, &run_id).await.unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(state, "running");
}

#[tokio::test]
async fn an_agent_stopped_mid_job_requeues_it_and_the_next_one_resumes_the_run() {
    let t = Fixture::start().await;
    let repos = setup(&t).await;
    let mut args = QUICK_TRAIN.to_vec();
    args.extend([
        "--set",
        "optim.max_iters=400",
        "--set",
        "train.checkpoint_interval=10",
    ]);
    launch(&t, &repos, &args).await;
    let first = agent(&t, &repos, &[]);
    let run_id = running_run(&t).await;
    first_checkpoint(&t.client, &run_id).await;
    signal(&first, libc::SIGTERM);
    let out = tokio::time::timeout(Duration::from_secs(60), first.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("requeued as item"), "{said}");

    let pending: Vec<_> = items(&t)
        .await
        .into_iter()
        .filter(|(_, s, _)| s == "PENDING")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let second = output(&mut agent_command(&t, &repos, &["--max-items", "1"])).await;
    assert!(second.status.success(), "{}", text(&second));
    let resumed = run(&t, &run_id).await.unwrap();
    assert_eq!(resumed["state"], "finished", "{resumed}");
    let from_step = resumed["config"][keys::config::RESUMED_STEP]
        .as_u64()
        .unwrap_or(0);
    assert!(
        from_step > 0,
        "the second agent must resume from a checkpoint: {resumed}"
    );
    assert_eq!(
        resumed["summary"][keys::metric::TRAIN_STEPS],
        400,
        "{resumed}"
    );
    let claimed: Vec<_> = items(&t)
        .await
        .into_iter()
        .filter(|(_, _, r)| r.as_deref() == Some(&run_id))
        .collect();
    assert_eq!(claimed.len(), 2, "both items ran the same run: {claimed:?}");
}

#[tokio::test]
async fn an_agent_killed_outright_leaves_a_run_the_server_marks_crashed() {
    let t = Fixture::start_tuned(Tuning {
        run_timeout: Duration::from_secs(3),
        ..Tuning::default()
    })
    .await;
    let repos = setup(&t).await;
    launch(&t, &repos, &["--set", "optim.max_iters=100000"]).await;
    let mut agent = agent(&t, &repos, &[]);
    let run_id = running_run(&t).await;
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    let state = eventually(
        Duration::from_secs(30),
        "the run to read as crashed",
        || async {
            let state = run(&t, &run_id).await?["state"].as_str()?.to_owned();
            (state != "running").then_some(state)
        },
    )
    .await;
    assert_eq!(state, "crashed");
}

/// Pushes `count` more items running the same job.
async fn push_more(t: &Fixture, job: &str, count: usize) {
    let spec = LaunchSpec {
        job: Some(job.to_owned()),
        entity: Some(ENTITY.into()),
        project: Some(PROJECT.into()),
        ..LaunchSpec::default()
    };
    for _ in 0..count {
        t.client
            .push_to_queue(ENTITY, QUEUE, &spec, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_agents_on_one_queue_never_run_an_item_twice() {
    let t = Fixture::start().await;
    let repos = setup(&t).await;
    let ledger = t.path("ledger").join("items");
    let entrypoint = format!(
        "sh -c 'echo $WANDB_LAUNCH_TRACE_ID >> {}'",
        ledger.display()
    );
    let job = launch(&t, &repos, &["--entrypoint", &entrypoint]).await;
    push_more(&t, &job, 99).await;
    let args = ["--max-jobs", "2", "--exit-when-idle", "--poll", "100ms"];
    let (mut a, mut b) = (
        agent_command(&t, &repos, &args),
        agent_command(&t, &repos, &args),
    );
    let (a, b) = (output(&mut a), output(&mut b));
    let (a, b) = tokio::join!(a, b);
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        text(&a),
        text(&b)
    );
    let lines: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let distinct: BTreeSet<&String> = lines.iter().collect();
    let mut other_failures = Vec::new();
    for (id, _, _) in items(&t).await {
        let error = t
            .client
            .item_details(&id)
            .await
            .unwrap()
            .and_then(|d| d.error);
        if let Some(error) = error.filter(|e| !e.message.contains("never started")) {
            other_failures.push(format!("{id}: {} {}", error.stage, error.message));
        }
    }
    assert!(other_failures.is_empty(), "{other_failures:#?}");
    assert_eq!(
        (lines.len(), distinct.len()),
        (100, 100),
        "each item runs exactly once"
    );
    // The jobs start no W&B run, so every item is failed, once, with the reason.
    let states: BTreeSet<String> = items(&t).await.into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(states, BTreeSet::from(["FAILED".to_owned()]));
    let details = t.client.item_details(&lines[0]).await.unwrap().unwrap();
    let error = details.error.unwrap();
    assert_eq!(error.stage, "run");
    assert!(
        error.message.contains("never started its W&B run"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn jobs_never_share_a_gpu() {
    let t = Fixture::start().await;
    let repos = setup(&t).await;
    let ledger = t.path("ledger").join("gpus");
    let entrypoint = format!(
        "sh -c 'echo $CUDA_VISIBLE_DEVICES start $(date +%s%N) >> {0}; sleep 0.4; echo $CUDA_VISIBLE_DEVICES end $(date +%s%N) >> {0}'",
        ledger.display()
    );
    let job = launch(&t, &repos, &["--entrypoint", &entrypoint]).await;
    push_more(&t, &job, 3).await;
    let args = ["--gpus", "0,1", "--exit-when-idle", "--poll", "100ms"];
    let out = output(&mut agent_command(&t, &repos, &args)).await;
    assert!(out.status.success(), "{}", text(&out));
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut spans: BTreeMap<String, Vec<(u128, u128)>> = BTreeMap::new();
    let mut open: BTreeMap<String, u128> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [gpu, what, at] = parts[..] else {
            panic!("ledger line {line:?}")
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "start" => assert!(
                open.insert(gpu.to_owned(), at).is_none(),
                "GPU {gpu} given twice:\n{text}"
            ),
            _ => spans
                .entry(gpu.to_owned())
                .or_default()
                .push((open.remove(gpu).unwrap(), at)),
        }
    }
    assert_eq!(
        spans.keys().cloned().collect::<Vec<_>>(),
        ["0", "1"],
        "{text}"
    );
    assert_eq!(spans.values().map(Vec::len).sum::<usize>(), 4);
}
