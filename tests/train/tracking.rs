//! The trainer's data and tracking pieces against mlwf's W&B-compatible server on loopback:
//! dataset artifacts, Tiny Shakespeare from a local cache, prediction tables, checkpoints, system
//! metrics, console capture and the run guard.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlwf::train::backend::MetricSource;
use mlwf::train::config::ResumeFrom;
use mlwf::train::config::{DatasetSpec, TrainConfig};
use mlwf::train::cpu::CpuBackend;
use mlwf::train::data::{self, CharTokenizer, Kind, SHAKESPEARE_FILE, SHAKESPEARE_SHA256};
use mlwf::train::model::{Gpt, ModelConfig};
use mlwf::train::tracking::checkpoint::{self, Checkpoint, Progress};
use mlwf::train::tracking::console::Console;
use mlwf::train::tracking::guard::{self, Outcome, StopReason, Stopped};
use mlwf::train::tracking::sysmetrics::{ProcessMetrics, Sampler};
use mlwf::train::tracking::table::{predictions_table, Prediction};
use mlwf::wandb::{ArtifactSpec, Row, Run, RunSpec, RunState};
use serde_json::{json, Value};

use crate::util::{self, Fixture, ENTITY, PROJECT};

/// What this area asks of the shared fixture: reads of what the tracking pieces left on the server.
trait Reads {
    /// Sends `path` (a GET, or a POST of `body`) to the server with the test key; the JSON
    /// answer.
    async fn call(&self, path: &str, body: Option<Value>) -> Value;

    /// The run's stored system-metrics rows.
    async fn events(&self, run_id: &str) -> Vec<Value>;

    async fn alerts(&self, run_id: &str) -> Value;

    async fn state(&self, run_id: &str) -> RunState;

    async fn run(&self, id: &str) -> Run;
}

impl Reads for Fixture {
    async fn call(&self, path: &str, body: Option<Value>) -> Value {
        let url = self.url(path);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let response = request.basic_auth("api", Some(util::KEY)).send().await;
        response.unwrap().json().await.unwrap()
    }

    async fn events(&self, run_id: &str) -> Vec<Value> {
        let data = self
            .gql(
                "query($e: String, $p: String, $r: String!) {
                    project(name: $p, entityName: $e) { run(name: $r) { events(samples: 1000) } } }",
                json!({"e": ENTITY, "p": PROJECT, "r": run_id}),
            )
            .await;
        data["project"]["run"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line.as_str().unwrap()).unwrap())
            .collect()
    }

    async fn alerts(&self, run_id: &str) -> Value {
        let path = format!("/mlwf/v1/alerts/{ENTITY}/{PROJECT}/{run_id}");
        self.call(&path, None).await
    }

    async fn state(&self, run_id: &str) -> RunState {
        let info = self.client.run(ENTITY, PROJECT, run_id).await.unwrap();
        info.expect("the run exists").state
    }

    async fn run(&self, id: &str) -> Run {
        self.client
            .start_run(RunSpec {
                id: Some(id.into()),
                ..RunSpec::default()
            })
            .await
            .expect("start run")
    }
}

#[tokio::test]
async fn dataset_artifacts_download_verified_and_pick_their_text_file() {
    let fx = Fixture::start().await;
    let files = fx.path("files");
    std::fs::write(files.join("corpus.txt"), "abcabc\n".repeat(50)).unwrap();
    std::fs::write(files.join("README.md"), "about the corpus").unwrap();
    let producer = fx.run("datamake").await;
    let one_text = ArtifactSpec::new("corpus", "dataset")
        .file("corpus.txt", files.join("corpus.txt"))
        .file("README.md", files.join("README.md"));
    producer.log_artifact(one_text).await.unwrap();
    let two_texts = ArtifactSpec::new("pair", "dataset")
        .file("a.txt", files.join("corpus.txt"))
        .file("b.txt", files.join("README.md"));
    producer.log_artifact(two_texts).await.unwrap();
    producer.finish(0).await.unwrap();

    let cache = fx.path("data-cache");
    let name = "artifact:testent/proj/corpus:latest";
    let spec: DatasetSpec = name.parse().unwrap();
    let data = data::load(&spec, 0.2, &cache, Some(&fx.client))
        .await
        .unwrap();
    assert_eq!(data.kind, Kind::Text);
    assert_eq!(
        data.sha256,
        data::sha256_hex("abcabc\n".repeat(50).as_bytes())
    );
    assert_eq!(data.tokenizer.vocab_size(), 4);

    let name = "artifact:proj/pair:v0";
    let err = data::load(&name.parse().unwrap(), 0.2, &cache, Some(&fx.client))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a.txt, b.txt") && err.to_string().contains("exactly one"),
        "{err}"
    );
    let name = "artifact:proj/absent:v0";
    let err = data::load(&name.parse().unwrap(), 0.2, &cache, Some(&fx.client))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("proj/absent:v0"), "{err:#}");
    fx.shutdown().await;
}

/// The shared copy of Tiny Shakespeare, when this machine has one.
fn shared_shakespeare() -> Option<PathBuf> {
    // `shared/` sits beside the checkout, for developers and CI alike.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinyshakespeare.txt");
    if path.exists() {
        return Some(path);
    }
    eprintln!(
        "skipped: no shared copy of Tiny Shakespeare at {}",
        path.display()
    );
    None
}

#[tokio::test]
async fn shakespeare_loads_from_a_cached_copy_without_network() {
    let Some(shared) = shared_shakespeare() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(&shared, cache.path().join(SHAKESPEARE_FILE)).unwrap();
    let data = data::load(&DatasetSpec::Shakespeare, 0.1, cache.path(), None)
        .await
        .unwrap();
    assert_eq!(data.sha256, SHAKESPEARE_SHA256);
    assert_eq!(data.tokenizer.vocab_size(), 65);
    assert_eq!(data.train.len() + data.val.len(), 1_115_394);
    assert_eq!(data.val.len(), 111_540);
}

#[tokio::test]
async fn prediction_tables_are_what_the_official_sdk_writes_and_reads() {
    let fx = Fixture::start().await;
    let run = fx.run("tablerun").await;
    run.log(row! {"train/loss": 2.5});
    let predictions = [
        ("12+7=", "910", "910", true),
        ("47+85=", "231", "132", false),
        ("Thou art ", "thé ☃\n", "the \"king\"", false),
    ]
    .map(|(prompt, prediction, target, correct)| Prediction {
        prompt: prompt.into(),
        prediction: prediction.into(),
        target: target.into(),
        correct,
    });
    let table = predictions_table(&predictions);
    let step = run.step();
    let value = table.save(&run, "val/predictions", step).await.unwrap();
    run.log_at(step, row! {"val/predictions": value.clone()})
        .unwrap();
    run.finish(0).await.unwrap();

    let path = value["path"].as_str().unwrap();
    let bytes = table.to_file_bytes();
    assert_eq!(value["sha256"], json!(data::sha256_hex(&bytes)));
    assert_eq!(value["size"], json!(bytes.len()));
    assert_eq!(
        (value["ncols"].clone(), value["nrows"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(
        path,
        format!(
            "media/table/val/predictions_1_{}.table.json",
            &data::sha256_hex(&bytes)[..20]
        )
    );
    let stored = fx
        .client
        .run_file(ENTITY, PROJECT, "tablerun", path)
        .await
        .unwrap()
        .expect("the table file is stored");
    assert_eq!(stored, bytes);

    let Some(python) = util::python() else {
        return;
    };
    let rows: Vec<Value> = predictions
        .iter()
        .map(|p| json!([p.prompt, p.prediction, p.target, p.correct]))
        .collect();
    let scratch = fx.path("table-scratch");
    let seen = fx
        .sdk_json(
            &python,
            "train_table.py",
            &[
                &format!("{ENTITY}/{PROJECT}/tablerun"),
                "val/predictions",
                &step.to_string(),
                r#"["prompt", "prediction", "target", "correct"]"#,
                &Value::from(rows).to_string(),
                scratch.to_str().unwrap(),
            ],
        )
        .await;
    let text = String::from_utf8(bytes).unwrap();
    // The SDK encodes the same rows to the same file and the same history value...
    assert_eq!(seen["sdk"]["value"], value);
    assert_eq!(seen["sdk"]["file"], json!(text));
    // ...and reads mlwf's table back from the server.
    assert_eq!(seen["read"]["value"], value);
    assert_eq!(seen["read"]["summary"], value);
    assert_eq!(seen["read"]["file"], json!(text));
    assert_eq!(seen["read"]["table"]["nrows"], json!(3));
    fx.shutdown().await;
}

/// Adds what a GPU source would, to show that extra sources join each sample.
struct FakeGpu;

impl MetricSource for FakeGpu {
    fn sample(&mut self, row: &mut Row) {
        row.insert("gpu.0.gpu".into(), json!(42.0));
    }
}

#[tokio::test]
async fn system_metrics_are_sampled_in_the_background_and_stop_at_once() {
    let fx = Fixture::start().await;
    let run = Arc::new(fx.run("sysmet01").await);
    let sources: Vec<Box<dyn MetricSource>> =
        vec![Box::new(ProcessMetrics::new().unwrap()), Box::new(FakeGpu)];
    let sampler = Sampler::start(run.clone(), Duration::from_millis(50), sources).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    sampler.stop();
    run.finish(0).await.unwrap();

    let events = fx.events("sysmet01").await;
    assert!(events.len() >= 3, "{events:?}");
    for event in &events {
        for key in [
            "system.cpu",
            "system.memory_percent",
            "system.proc.memory.rssMB",
            "system.proc.memory.percent",
            "system.proc.cpu.threads",
        ] {
            assert!(event[key].is_number(), "{key} missing in {event}");
        }
        assert_eq!(event["system.gpu.0.gpu"], json!(42.0));
        assert_eq!(event["_wandb"], json!(true));
    }

    // Stopping does not wait for the next sample.
    let run = Arc::new(fx.run("sysmet02").await);
    let sampler = Sampler::start(
        run.clone(),
        Duration::from_secs(30),
        vec![Box::new(FakeGpu)],
    )
    .unwrap();
    let started = Instant::now();
    sampler.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    run.finish(0).await.unwrap();
    assert!(fx.events("sysmet02").await.is_empty());
    fx.shutdown().await;
}

#[tokio::test]
async fn console_lines_reach_the_run_log_and_progress_redraws_do_not() {
    let fx = Fixture::start().await;
    let console = Console::new();
    console.out("config: tiny preset");
    let run = Arc::new(fx.run("console1").await);
    console.attach(run.clone());
    let bar = console.progress(2000, 0);
    for step in 1..=2000u64 {
        bar.inc(1);
        bar.set_message(format!("loss {:.3}", 3.0 / step as f64));
        if step % 1000 == 0 {
            console.out(format!("step {step} loss {:.3}", 3.0 / step as f64));
        }
    }
    console.err("warning: something to note");
    console.finish_progress();
    console.out("done");
    run.finish(0).await.unwrap();

    let log = fx
        .client
        .output_log(ENTITY, PROJECT, "console1")
        .await
        .unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let expected = [
        "config: tiny preset",
        "step 1000 loss 0.003",
        "step 2000 loss 0.002",
        "warning: something to note",
        "done",
    ];
    assert_eq!(lines.len(), expected.len(), "{log}");
    for (line, text) in lines.iter().zip(expected) {
        assert!(line.ends_with(text), "{line:?} should end with {text:?}");
    }
    fx.shutdown().await;
}

/// A real model's state in a checkpoint.
fn model_checkpoint(seed: u64, step: u64) -> Checkpoint {
    let tokenizer = CharTokenizer::from_text("0123456789+=\n");
    let model = ModelConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        tied_head: true,
    };
    let gpt = Gpt::new(model.clone(), CpuBackend::new(), seed).unwrap();
    let mut state = gpt.state().unwrap();
    state.step = step;
    Checkpoint {
        model,
        config: TrainConfig::preset("tiny").unwrap(),
        tokenizer,
        state,
        progress: Progress {
            sampler_draws: step * 32,
            val_loss: Some(2.0 / step as f32),
            best_val_loss: Some(2.0 / step as f32),
            run_id: Some("ckptrun1".into()),
        },
    }
}

#[tokio::test]
async fn checkpoints_are_logged_as_model_artifacts_and_resume_from_them() {
    let fx = Fixture::start().await;
    let run = fx.run("ckptrun1").await;
    let local = fx.path("ckpt").join("latest");
    let first = model_checkpoint(1, 100);
    first.write(&local).unwrap();
    let meta = Row::from_iter([("branch".to_owned(), json!("feat-x"))]);
    let logged = checkpoint::log_artifact(&run, &local, &["best"], meta.clone())
        .await
        .unwrap();
    assert_eq!(logged.version.as_deref(), Some("v0"));
    let second = model_checkpoint(2, 200);
    second.write(&local).unwrap();
    checkpoint::log_artifact(&run, &local, &[], meta)
        .await
        .unwrap();
    run.finish(0).await.unwrap();

    let best = format!("artifact:{ENTITY}/{PROJECT}/model-ckptrun1:best");
    let info = fx
        .client
        .artifact(&best["artifact:".len()..].parse().unwrap())
        .await
        .unwrap();
    assert_eq!(info.artifact_type.as_deref(), Some("model"));
    assert_eq!(info.metadata["step"], json!(100));
    assert_eq!(info.metadata["val_loss"], json!(0.02));
    assert_eq!(info.metadata["branch"], json!("feat-x"));

    let downloads = fx.path("downloads");
    let from: ResumeFrom = best.parse().unwrap();
    let restored = checkpoint::load(&from, Some(&fx.client), &downloads)
        .await
        .unwrap();
    assert_eq!(restored, first);
    let latest: ResumeFrom = format!("artifact:{PROJECT}/model-ckptrun1:latest")
        .parse()
        .unwrap();
    let restored = checkpoint::load(&latest, Some(&fx.client), &downloads)
        .await
        .unwrap();
    assert_eq!(restored, second);
    // The model takes the restored state back.
    let mut gpt = Gpt::new(restored.model.clone(), CpuBackend::new(), 9).unwrap();
    gpt.load_state(&restored.state).unwrap();
    assert_eq!(gpt.state().unwrap().params, second.state.params);

    let err = checkpoint::load(&from, None, &downloads).await.unwrap_err();
    assert!(err.to_string().contains("needs a W&B connection"), "{err}");
    let local_again = checkpoint::load(&ResumeFrom::Dir(local), None, &downloads)
        .await
        .unwrap();
    assert_eq!(local_again, second);
    fx.shutdown().await;
}

/// Guard tests install signal handlers for the whole process, and one sends SIGTERM to it:
/// they take turns.
static GUARD_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This test's turn, a server, and a console.
async fn guard_setup() -> (tokio::sync::MutexGuard<'static, ()>, Fixture, Arc<Console>) {
    let turn = GUARD_TURN.lock().await;
    (turn, Fixture::start().await, Arc::new(Console::new()))
}

#[tokio::test]
async fn every_ending_finishes_the_run_with_its_exit_code_and_an_alert() {
    let (_turn, fx, console) = guard_setup().await;

    let run = Arc::new(fx.run("guardok1").await);
    let end = guard::supervise(run, console.clone(), |_| async {
        Ok(Row::from_iter([("val/loss".to_owned(), json!(1.25))]))
    })
    .await;
    assert_eq!(end.exit_code, 0);
    assert!(matches!(end.outcome, Outcome::Finished(_)));
    end.into_result().unwrap();
    assert_eq!(fx.state("guardok1").await, RunState::Finished);
    let alerts = fx.alerts("guardok1").await;
    assert_eq!(alerts[0]["severity"], "INFO", "{alerts}");
    assert!(
        alerts[0]["text"]
            .as_str()
            .unwrap()
            .contains("val/loss=1.2500"),
        "{alerts}"
    );

    let run = Arc::new(fx.run("guarder1").await);
    let end = guard::supervise(run, console.clone(), |_| async {
        Err(anyhow::anyhow!("loss is NaN at step 7"))
    })
    .await;
    assert_eq!(end.exit_code, 1);
    assert!(end.into_result().unwrap_err().to_string().contains("NaN"));
    assert_eq!(fx.state("guarder1").await, RunState::Failed);
    let alerts = fx.alerts("guarder1").await;
    assert_eq!(alerts[0]["severity"], "ERROR", "{alerts}");
    assert!(alerts[0]["text"]
        .as_str()
        .unwrap()
        .contains("NaN at step 7"));

    let run = Arc::new(fx.run("guardpan").await);
    let end = guard::supervise(run, console.clone(), |_| async { explode() }).await;
    assert_eq!(end.exit_code, 101);
    assert!(format!("{:#}", end.into_result().unwrap_err()).contains("kaboom"));
    assert_eq!(fx.state("guardpan").await, RunState::Failed);
    assert!(fx.alerts("guardpan").await[0]["text"]
        .as_str()
        .unwrap()
        .contains("kaboom"));
    fx.shutdown().await;
}

fn explode() -> anyhow::Result<Row> {
    panic!("kaboom in the training loop")
}

/// Polls the stop flag as the training loop does, logging a row per step; returns what it
/// saw, after "saving a checkpoint".
async fn train_until_stopped(run: &Run, cancel: &guard::Cancel) -> anyhow::Result<Row> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(reason) = cancel.requested() {
            let saw = format!("{reason:?}");
            return Ok(Row::from_iter([("stopped_by".to_owned(), json!(saw))]));
        }
        run.log(Row::from_iter([("train/loss".to_owned(), json!(1.0))]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no stop request arrived")
}

#[tokio::test]
async fn sigterm_and_the_ui_stop_button_let_the_loop_save_then_finish() {
    let (_turn, fx, console) = guard_setup().await;

    let run = Arc::new(fx.run("guardsig").await);
    let inner = run.clone();
    let end = guard::supervise(run, console.clone(), |cancel| async move {
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill failed");
        train_until_stopped(&inner, &cancel).await
    })
    .await;
    assert_eq!(end.exit_code, 143);
    match &end.outcome {
        Outcome::Stopped(StopReason::Terminate, metrics) => {
            assert_eq!(metrics["stopped_by"], json!("Terminate"))
        }
        other => panic!("{other:?}"),
    }
    let err = end.into_result().unwrap_err();
    let stopped = err.downcast_ref::<Stopped>().expect("a Stopped error");
    assert_eq!(stopped.exit_code, 143);
    assert_eq!(fx.state("guardsig").await, RunState::Failed);
    assert_eq!(fx.alerts("guardsig").await[0]["severity"], "WARN");

    let run = Arc::new(fx.run("guardui1").await);
    let storage_id = run.storage_id().to_owned();
    let inner = run.clone();
    let stopper = fx.gql(
        "mutation($id: ID!) { stopRun(input: {id: $id}) { success } }",
        json!({"id": storage_id}),
    );
    stopper.await;
    let end = guard::supervise(run, console, |cancel| async move {
        train_until_stopped(&inner, &cancel).await
    })
    .await;
    assert_eq!(end.exit_code, 130);
    assert!(matches!(
        end.outcome,
        Outcome::Stopped(StopReason::Remote, _)
    ));
    assert_eq!(fx.state("guardui1").await, RunState::Killed);
    fx.shutdown().await;
}
