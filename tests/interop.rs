//! mlwf against a client nobody here wrote: the official `wandb` SDK writes a run that mlwf's
//! client reads back, and mlwf's client writes a run that the official `wandb.Api()` reads back,
//! both through `mlwf server`. Also: file-stream rows survive a proxy that fails requests.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use md5::{Digest, Md5};
use mlwf::wandb::{ArtifactFile, ArtifactSpec, Client, RunSpec, RunState, Stream};
use serde_json::{json, Value};

use crate::util::{self, Fixture};

/// JSON equality where numbers compare by value: `1` and `1.0` are the same metric (JSON
/// writers differ on whether a whole float keeps its `.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[track_caller]
fn assert_same(got: Option<&Value>, want: &Value, what: &str) {
    let got = got.unwrap_or(&Value::Null);
    assert!(same(got, want), "{what}: got {got}, want {want}");
}

fn md5_base64(path: &Path) -> String {
    use base64::Engine;
    let bytes = std::fs::read(path).expect("read file");
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_run_reads_back_through_mlwf_client() {
    let Some(python) = util::python() else {
        return;
    };
    let fixture = Fixture::start().await;
    let work = fixture.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let logged = fixture
        .sdk_json(&python, "interop_sdk_writes.py", &[work.to_str().unwrap()])
        .await;

    let client = fixture.client.clone();
    let (entity, project) = (
        logged["entity"].as_str().unwrap(),
        logged["project"].as_str().unwrap(),
    );
    let run_id = logged["run_id"].as_str().unwrap();
    let run = client
        .run(entity, project, run_id)
        .await
        .expect("read run")
        .expect("run exists");
    assert_eq!(run.state, RunState::Finished);
    assert_eq!(run.tags, vec!["interop".to_string(), "sdk".to_string()]);
    for (key, value) in logged["config"].as_object().unwrap() {
        assert_same(run.config.get(key), value, &format!("config key {key}"));
    }
    for (key, value) in logged["summary"].as_object().unwrap() {
        assert_same(run.summary.get(key), value, &format!("summary key {key}"));
    }

    let history = client
        .history(entity, project, run_id)
        .await
        .expect("read history");
    let rows = logged["rows"].as_array().unwrap();
    assert_eq!(
        history.len(),
        rows.len(),
        "every logged row comes back once"
    );
    for (step, (got, want)) in history.iter().zip(rows).enumerate() {
        assert_eq!(got.get("_step"), Some(&json!(step)), "row order");
        for (key, value) in want.as_object().unwrap() {
            assert_same(got.get(key), value, &format!("step {step} key {key}"));
        }
    }
    let last_row = rows.last().unwrap().as_object().unwrap();
    for (key, value) in last_row {
        assert_same(
            run.summary.get(key),
            value,
            &format!("summary holds the last {key}"),
        );
    }

    let reference = logged["artifact"]
        .as_str()
        .unwrap()
        .parse()
        .expect("artifact ref");
    let download = fixture.dir.path().join("download");
    let downloaded = client
        .download_artifact(&reference, &download)
        .await
        .expect("download artifact");
    let file = downloaded.root.join(logged["file"].as_str().unwrap());
    assert_eq!(md5_base64(&file), logged["md5"].as_str().unwrap());
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlwf_run_reads_back_through_official_api() {
    let Some(python) = util::python() else {
        return;
    };
    let fixture = Fixture::start().await;
    let client = fixture.client.clone();
    let config =
        row!("branch": "feat-mlwf", "lr": 0.0003, "layers": 6, "nested": {"heads": [4, 8]});
    let run = client
        .start_run(RunSpec {
            config: config.clone(),
            tags: vec!["interop".into(), "mlwf".into()],
            name: Some("mlwf-writer".into()),
            ..RunSpec::default()
        })
        .await
        .expect("start run");
    let rows: Vec<_> = (0..500)
        .map(|step| row!("loss": 4.0 / (step as f64 + 1.0), "acc": step as f64 / 500.0, "lr": 0.0003, "tokens": step * 1024, "epoch": step / 100))
        .collect();
    for row in &rows {
        run.log(row.clone());
    }
    run.summary_update(row!("best/val_loss": 1.25));
    run.console("hello from mlwf", Stream::Stdout);
    run.console("a warning on stderr", Stream::Stderr);

    let weights: PathBuf = fixture.dir.path().join("weights.bin");
    std::fs::write(
        &weights,
        (0..4096u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let logged = run
        .log_artifact(ArtifactSpec {
            name: "mlwf-model".into(),
            artifact_type: "model".into(),
            files: vec![ArtifactFile {
                name: "weights.bin".into(),
                path: weights.clone(),
            }],
            metadata: row!("step": 500),
            aliases: vec!["best".into()],
            description: None,
        })
        .await
        .expect("log artifact");
    assert!(!logged.deduplicated);
    let path = format!("testent/proj/{}", run.id());
    run.finish(0).await.expect("finish");

    let download = fixture.dir.path().join("sdk-download");
    let seen = fixture
        .sdk_json(
            &python,
            "interop_sdk_reads.py",
            &[
                &path,
                "testent/proj/mlwf-model:best",
                download.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(seen["state"], "finished");
    assert_eq!(seen["tags"], json!(["interop", "mlwf"]));
    for (key, value) in &config {
        assert_same(seen["config"].get(key), value, &format!("config key {key}"));
    }
    assert_eq!(
        seen["listed_by_branch"],
        json!([path.rsplit('/').next().unwrap()])
    );
    assert_eq!(seen["summary"]["best/val_loss"], json!(1.25));
    assert_same(
        seen["summary"].get("loss"),
        &rows.last().unwrap()["loss"],
        "summary loss",
    );
    let read_rows = seen["rows"].as_array().unwrap();
    assert_eq!(read_rows.len(), rows.len());
    for (step, (got, want)) in read_rows.iter().zip(&rows).enumerate() {
        assert_eq!(got["_step"], json!(step));
        for (key, value) in want {
            assert_same(got.get(key), value, &format!("step {step} key {key}"));
        }
    }
    let log = seen["output_log"].as_str().unwrap();
    assert!(log.contains("hello from mlwf"), "output.log: {log}");
    // Like the official SDK's, the uploaded file holds the plain text; the `ERROR ` marks of
    // stderr lines live in the streamed console log.
    assert!(
        log.lines().any(|l| l == "a warning on stderr"),
        "output.log: {log}"
    );
    let file = Path::new(seen["artifact_dir"].as_str().unwrap()).join("weights.bin");
    assert_eq!(md5_base64(&file), md5_base64(&weights));
    assert_eq!(seen["artifact_metadata"]["step"], json!(500));
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_stream_rows_arrive_exactly_once_through_a_failing_proxy() {
    let fixture = Fixture::start().await;
    let (proxy_url, counts) = util::faulty_proxy::start(fixture.server.base_url(), 15, 15).await;
    let mut settings = util::settings(&proxy_url);
    // Small requests, so that 10,000 rows take many of them.
    settings.tuning.max_request_bytes = 16 << 10;
    let client = Client::new(settings).expect("client");
    let run = client
        .start_run(RunSpec::default())
        .await
        .expect("start run");
    for step in 0..10_000u64 {
        run.log(row!("step_value": step, "half": step as f64 / 2.0));
        if step % 1000 == 0 {
            // Let several requests go out (and fail) during logging, not only at finish.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    run.finish(0).await.expect("finish through faults");
    assert!(
        counts.refused.load(Ordering::Relaxed) > 0,
        "the proxy refused some requests"
    );
    assert!(
        counts.answer_lost.load(Ordering::Relaxed) > 0,
        "the proxy lost some answers"
    );

    let direct = fixture.client.clone();
    let history = direct
        .history(run.entity(), run.project(), run.id())
        .await
        .expect("history");
    assert_eq!(history.len(), 10_000, "no row lost or duplicated");
    for (step, row) in history.iter().enumerate() {
        assert_eq!(row.get("_step"), Some(&json!(step)));
        assert_eq!(row.get("step_value"), Some(&json!(step)));
    }
    let info = direct
        .run(run.entity(), run.project(), run.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.state, RunState::Finished);
    fixture.shutdown().await;
}
