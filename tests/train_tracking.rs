//! The trainer's data and tracking pieces against mlwf's W&B-compatible server on loopback:
//! dataset artifacts, Tiny Shakespeare from a local cache, prediction tables, checkpoints, system
//! metrics, console capture and the run guard.

mod common;

use std::path::{Path, PathBuf};

use mlwf::server::{self, RunningServer, ServerOptions};
use mlwf::train::config::DatasetSpec;
use mlwf::train::data::{self, Kind, SHAKESPEARE_FILE, SHAKESPEARE_SHA256};
use mlwf::wandb::{ArtifactSpec, Client, Run, RunSpec};

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
    let path = Path::new("/work/shared/data/tinyshakespeare.txt");
    if path.exists() {
        return Some(path.to_path_buf());
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
