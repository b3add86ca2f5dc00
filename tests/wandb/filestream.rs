//! The file_stream writer against the in-memory fake: request contents, pacing, and delivery
//! of every row exactly once under server faults.

use std::time::Duration;

use mlwf::wandb::{Client, Resume, RunSpec, Stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::util::fake_wandb::{FakeWandb, Fault};
use crate::util::settings;

async fn client_with(fake: &FakeWandb, adjust: impl FnOnce(&mut mlwf::wandb::Settings)) -> Client {
    let mut settings = settings(&fake.base_url);
    adjust(&mut settings);
    Client::new(settings).unwrap()
}

fn spec(id: &str) -> RunSpec {
    RunSpec {
        id: Some(id.into()),
        ..RunSpec::default()
    }
}

#[tokio::test]
async fn ten_thousand_rows_arrive_exactly_once_in_order_despite_faults() {
    let fake = FakeWandb::start().await;
    let mut rng = StdRng::seed_from_u64(7);
    fake.set_faults(move |_| match rng.random_range(0..10) {
        0..=1 => Fault::Reject,
        2..=3 => Fault::Drop,
        _ => Fault::None,
    });
    let client = client_with(&fake, |s| {
        s.tuning.transmit_interval = Duration::from_millis(2);
        // Small requests so the backlog is split into many chunks, each at risk.
        s.tuning.max_request_bytes = 16 * 1024;
    })
    .await;
    let run = client.start_run(spec("faulty01")).await.unwrap();
    for i in 0..10_000u64 {
        run.log(row! {"loss": 1.0 / (i as f64 + 1.0), "acc": i as f64 / 1e4, "lr": 0.001, "epoch": i / 1000});
        if i % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    run.finish(0).await.unwrap();

    fake.with(|state| {
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        assert!(
            state.faults_seen.contains(&Fault::Reject) && state.faults_seen.contains(&Fault::Drop)
        );
        assert!(
            state.stream_bodies.len() > 10,
            "only {} requests",
            state.stream_bodies.len()
        );
        let history = state.run("faulty01").history();
        assert_eq!(history.len(), 10_000);
        for (i, row) in history.iter().enumerate() {
            assert_eq!(row["_step"], json!(i), "row {i}: {row}");
            assert_eq!(row["epoch"], json!(i / 1000));
            assert!(row["_runtime"].is_f64() && row["_timestamp"].is_f64());
        }
        let last = state.stream_bodies.last().unwrap();
        assert_eq!(
            (&last["complete"], &last["exitcode"]),
            (&json!(true), &json!(0))
        );
        let completes = state
            .stream_bodies
            .iter()
            .filter(|b| b.get("complete").is_some())
            .count();
        let dropped_final = state.faults_seen.last() == Some(&Fault::Drop);
        assert_eq!(
            completes,
            1 + dropped_final as usize,
            "complete only on the final request"
        );
        for body in &state.stream_bodies {
            assert!(
                serde_json::to_vec(body).unwrap().len() < 20 * 1024,
                "a request exceeded the size limit"
            );
        }
        assert_eq!(state.run("faulty01").summary()["_step"], json!(9999));
        assert_eq!(state.run("faulty01").state, "finished");
    });
}

#[tokio::test]
async fn requests_carry_history_summary_console_events_and_uploads() {
    let fake = FakeWandb::start().await;
    // Everything after the first request waits for finish(): one interval is an hour.
    let client = client_with(&fake, |s| {
        s.tuning.transmit_interval = Duration::from_secs(3600)
    })
    .await;
    let spec = RunSpec {
        id: Some("semantic".into()),
        name: Some("probe-run".into()),
        tags: vec!["probe".into(), "t2".into()],
        group: Some("grpA".into()),
        job_type: Some("train".into()),
        notes: Some("hello".into()),
        config: row! {"lr": 0.001, "branch": "feat-x", "nested": {"a": 1}},
        ..RunSpec::default()
    };
    let run = client.start_run(spec).await.unwrap();
    assert_eq!(
        (run.id(), run.entity(), run.project()),
        ("semantic", "testent", "proj")
    );
    assert_eq!(run.display_name(), Some("probe-run"));
    assert_eq!(run.log(row! {"loss": 1.0, "acc": 0.0}), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first_requests = fake.with(|s| s.stream_bodies.len());
    assert_eq!(first_requests, 1, "the first request goes out at once");

    run.console("stdout line 0\n", Stream::Stdout);
    run.console("stderr line 0", Stream::Stderr);
    assert_eq!(run.log(row! {"loss": 0.5, "acc": 0.1}), 1);
    assert_eq!(run.log_at(5, row! {"loss": 0.25}).unwrap(), 5);
    assert!(run.log_at(3, row! {"loss": 9.0}).is_err());
    run.summary_update(row! {"best_acc": 0.2});
    run.system_metrics(row! {"cpu": 12.5, "system.memory_percent": 3.0});
    let model = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(model.path(), b"weights").unwrap();
    run.save_file(model.path(), "ckpt/model.pt").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.with(|s| s.stream_bodies.len()),
        1,
        "at most one request per transmit interval"
    );
    run.finish(0).await.unwrap();
    assert!(run.finish(0).await.is_err(), "a second finish is refused");

    fake.with(|state| {
        let stored = state.run("semantic");
        assert_eq!(stored.tags, ["probe", "t2"]);
        assert_eq!((stored.group.as_deref(), stored.job_type.as_deref()), (Some("grpA"), Some("train")));
        let config: Value = serde_json::from_str(&stored.config).unwrap();
        assert_eq!(config, json!({"lr": {"value": 0.001}, "branch": {"value": "feat-x"}, "nested": {"value": {"a": 1}}}));

        let steps: Vec<Value> = stored.history().iter().map(|r| r["_step"].clone()).collect();
        assert_eq!(steps, [json!(0), json!(1), json!(5)]);
        let summary = stored.summary();
        assert_eq!((&summary["loss"], &summary["acc"], &summary["best_acc"]), (&json!(0.25), &json!(0.1), &json!(0.2)));
        assert_eq!(summary["_step"], json!(5));
        assert!(summary["_wandb"]["runtime"].is_u64());

        let output = stored.lines("output.log");
        assert_eq!(output.len(), 2);
        assert!(output[0].ends_with(" stdout line 0") && !output[0].starts_with("ERROR"), "{}", output[0]);
        assert!(output[1].starts_with("ERROR ") && output[1].ends_with(" stderr line 0"), "{}", output[1]);
        let stamp = output[0].split(' ').next().unwrap();
        assert_eq!(stamp.len(), "2026-11-23T11:13:19.331599".len(), "{stamp}");

        let events: Vec<Value> = stored.lines("wandb-events.jsonl").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["_wandb"], json!(true));
        assert_eq!((&events[0]["system.cpu"], &events[0]["system.memory_percent"]), (&json!(12.5), &json!(3.0)));
        assert!(events[0]["_runtime"].is_f64() && events[0]["_timestamp"].is_f64());

        assert_eq!(stored.uploaded, ["ckpt/model.pt", "output.log"]);
        assert_eq!(state.storage["runs/semantic/ckpt/model.pt"], b"weights");
        let log_file = String::from_utf8(state.storage["runs/semantic/output.log"].clone()).unwrap();
        assert_eq!(log_file, "stdout line 0\nstderr line 0\n");
        for put in state.seen.iter().filter(|s| s.method == "PUT") {
            assert_eq!(put.authorization(), None, "signed URLs must not see the API key");
            assert_eq!(put.headers["x-upload-kind"], "run-file");
            assert!(put.headers.contains_key("content-length"), "uploads are not chunked");
        }

        let last = state.stream_bodies.last().unwrap();
        assert_eq!((&last["complete"], &last["exitcode"]), (&json!(true), &json!(0)));
        assert_eq!(last["uploaded"], json!(["ckpt/model.pt", "output.log"]));
        assert_eq!(state.stream_bodies.len(), 2);
        assert_eq!(stored.state, "finished");
    });
}

#[tokio::test]
async fn preempting_goes_out_at_once_and_failure_exit_codes_are_sent() {
    let fake = FakeWandb::start().await;
    let client = client_with(&fake, |s| {
        s.tuning.transmit_interval = Duration::from_secs(3600)
    })
    .await;
    let run = client.start_run(spec("preempt1")).await.unwrap();
    run.log(row! {"x": 1});
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.mark_preempting();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.with(|state| {
        assert_eq!(state.stream_bodies.len(), 2);
        assert_eq!(state.stream_bodies[1]["preempting"], json!(true));
        assert!(state.run("preempt1").preempting);
    });
    run.finish(3).await.unwrap();
    fake.with(|state| {
        let last = state.stream_bodies.last().unwrap();
        assert_eq!(
            (&last["complete"], &last["exitcode"]),
            (&json!(true), &json!(3))
        );
        assert!(last.get("preempting").is_none(), "preempting is sent once");
        assert_eq!(state.run("preempt1").state, "failed");
    });
}

#[tokio::test]
async fn idle_runs_send_heartbeats_and_notice_stop_requests() {
    let fake = FakeWandb::start().await;
    let client = client_with(&fake, |s| {
        s.tuning.heartbeat_interval = Duration::from_millis(50)
    })
    .await;
    let run = client.start_run(spec("idle0001")).await.unwrap();
    assert!(!run.stopped());
    fake.with(|s| s.stop_requested = true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.with(|state| {
        assert!(
            state.stream_bodies.len() >= 3,
            "{} heartbeats",
            state.stream_bodies.len()
        );
        assert!(
            state.stream_bodies.iter().all(|b| b == &json!({})),
            "heartbeats are empty objects"
        );
    });
    assert!(run.stopped());
    run.finish(0).await.unwrap();
}

#[tokio::test]
async fn resumed_runs_continue_offsets_and_steps() {
    let fake = FakeWandb::start().await;
    let client = client_with(&fake, |_| {}).await;
    let first = client.start_run(spec("resume01")).await.unwrap();
    for i in 0..3 {
        first.log(row! {"loss": i});
    }
    first.console("before", Stream::Stdout);
    first.finish(1).await.unwrap();

    let again = RunSpec {
        resume: Some(Resume::Must),
        config: row! {"extra": true},
        ..spec("resume01")
    };
    let run = client.start_run(again).await.unwrap();
    assert!(run.resumed());
    assert_eq!(run.step(), 3);
    run.log(row! {"loss": 3});
    run.console("after", Stream::Stdout);
    run.finish(0).await.unwrap();

    fake.with(|state| {
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        let stored = state.run("resume01");
        let steps: Vec<Value> = stored
            .history()
            .iter()
            .map(|r| r["_step"].clone())
            .collect();
        assert_eq!(steps, [json!(0), json!(1), json!(2), json!(3)]);
        assert_eq!(stored.lines("output.log").len(), 2);
        let config: Value = serde_json::from_str(&stored.config).unwrap();
        assert_eq!(config, json!({"extra": {"value": true}}));
    });

    // Reusing the id without resume must not overwrite stored history.
    let reuse = client.start_run(spec("resume01")).await.unwrap();
    assert!(!reuse.resumed());
    reuse.log(row! {"loss": 4});
    reuse.finish(0).await.unwrap();
    fake.with(|state| {
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        assert_eq!(state.run("resume01").history().len(), 5);
    });

    let missing = RunSpec {
        resume: Some(Resume::Must),
        ..spec("nothere1")
    };
    assert!(matches!(
        client.start_run(missing).await,
        Err(mlwf::wandb::Error::NotFound(_))
    ));
    let clash = RunSpec {
        resume: Some(Resume::Never),
        ..spec("resume01")
    };
    assert!(matches!(
        client.start_run(clash).await,
        Err(mlwf::wandb::Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn unreachable_file_stream_fails_finish_without_hanging() {
    let fake = FakeWandb::start().await;
    fake.set_faults(|_| Fault::Reject);
    let client = client_with(&fake, |s| {
        s.tuning.file_stream_retry =
            mlwf::retry::RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2));
    })
    .await;
    let run = client.start_run(spec("deadrun1")).await.unwrap();
    run.log(row! {"x": 1});
    let err = run.finish(0).await.unwrap_err();
    assert!(
        err.to_string().contains("file_stream") && err.to_string().contains("503"),
        "{err}"
    );
}

/// Compile-time check: handles can be shared across tasks and their futures spawned.
#[allow(dead_code)]
fn handles_and_futures_are_send(client: &Client, run: &mlwf::wandb::Run) {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    send_sync(client);
    send_sync(run);
    send(client.start_run(RunSpec::default()));
    send(client.runs("e", "p", &mlwf::wandb::RunQuery::new()));
    send(client.download_artifact(&"a:b".parse().unwrap(), std::path::Path::new("/tmp")));
    send(run.finish(0));
    send(run.save_file("/tmp/x", "x"));
    send(run.log_artifact(mlwf::wandb::ArtifactSpec::new("a", "model")));
    send(run.config_update(row! {"a": 1}));
}
