//! The trainer's data and tracking pieces against mlwf's W&B-compatible server on loopback:
//! dataset artifacts, Tiny Shakespeare from a local cache, prediction tables, checkpoints, system
//! metrics, console capture and the run guard.

mod common;

use std::path::{Path, PathBuf};

use mlwf::server::{self, RunningServer, ServerOptions};
use mlwf::train::config::DatasetSpec;
use mlwf::train::data::{self, Kind, SHAKESPEARE_FILE, SHAKESPEARE_SHA256};
use mlwf::train::tracking::table::{predictions_table, Prediction};
use mlwf::wandb::{ArtifactSpec, Client, Run, RunSpec};
use serde_json::{json, Value};

const ENTITY: &str = "testent";
const PROJECT: &str = "proj";

struct Fixture {
    server: RunningServer,
    dir: tempfile::TempDir,
    client: Client,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = server::start(
            ServerOptions {
                data_dir: dir.path().join("server"),
                api_keys: vec![common::KEY.into()],
            },
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .expect("start server");
        let mut settings = common::settings(server.base_url());
        settings.cache_dir = dir.path().join("wandb-cache");
        let client = Client::new(settings).expect("client");
        Fixture {
            server,
            dir,
            client,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    /// Runs `tests/python/<script>` with the official SDK pointed at this server; its last
    /// stdout line, as JSON. Asynchronous, since the server answers on this test's runtime.
    async fn python(&self, python: &Path, script: &str, args: &[&str]) -> Value {
        let home = self.path("python-home");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(script);
        let mut command = tokio::process::Command::new(python);
        command.arg(&script).args(args).env_remove("WANDB_MODE");
        let home = home.to_str().unwrap();
        for (name, value) in [
            ("WANDB_BASE_URL", self.server.base_url()),
            ("WANDB_API_KEY", common::KEY),
            ("WANDB_ENTITY", ENTITY),
            ("WANDB_PROJECT", PROJECT),
            ("WANDB_SILENT", "true"),
            ("WANDB_ERROR_REPORTING", "false"),
            ("WANDB_DIR", home),
            ("WANDB_CACHE_DIR", home),
            ("WANDB_CONFIG_DIR", home),
            ("WANDB_DATA_DIR", home),
            ("WANDB_ARTIFACT_DIR", home),
        ] {
            command.env(name, value);
        }
        let output = command.output().await.expect("run python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} failed ({}):\n{stdout}\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
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
    let data = data::load(name, &spec, 0.2, &cache, Some(&fx.client))
        .await
        .unwrap();
    assert_eq!(data.kind, Kind::Text);
    assert_eq!(
        data.sha256,
        data::sha256_hex("abcabc\n".repeat(50).as_bytes())
    );
    assert_eq!(data.tokenizer.vocab_size(), 4);

    let name = "artifact:proj/pair:v0";
    let err = data::load(name, &name.parse().unwrap(), 0.2, &cache, Some(&fx.client))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a.txt, b.txt") && err.to_string().contains("exactly one"),
        "{err}"
    );
    let name = "artifact:proj/absent:v0";
    let err = data::load(name, &name.parse().unwrap(), 0.2, &cache, Some(&fx.client))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("proj/absent:v0"), "{err:#}");
    fx.server.shutdown().await;
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
    let data = data::load(
        "shakespeare",
        &DatasetSpec::Shakespeare,
        0.1,
        cache.path(),
        None,
    )
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

    let Some(python) = common::python() else {
        return;
    };
    let rows: Vec<Value> = predictions
        .iter()
        .map(|p| json!([p.prompt, p.prediction, p.target, p.correct]))
        .collect();
    let scratch = fx.path("table-scratch");
    let seen = fx
        .python(
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
    fx.server.shutdown().await;
}
