//! Artifacts against the in-memory fake: the official call order, manifest and digests,
//! deduplication, use, and verified, cached downloads.

use std::path::Path;

use mlwf::wandb::{ArtifactRef, ArtifactSpec, Client, Error, Manifest, RunSpec};
use serde_json::{json, Value};

use crate::util::fake_wandb::{b64_md5, FakeWandb};
use crate::util::settings;

struct Setup {
    fake: FakeWandb,
    client: Client,
    _cache: tempfile::TempDir,
    files: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = FakeWandb::start().await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&fake.base_url);
    settings.cache_dir = cache.path().to_path_buf();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("model.pt"), vec![7u8; 1024]).unwrap();
    std::fs::create_dir(files.path().join("tok")).unwrap();
    std::fs::write(files.path().join("tok/vocab.txt"), b"a\nb\n").unwrap();
    Setup {
        fake,
        client: Client::new(settings).unwrap(),
        _cache: cache,
        files,
    }
}

fn model_spec(dir: &Path) -> ArtifactSpec {
    ArtifactSpec::new("probe-model", "model")
        .dir(dir)
        .unwrap()
        .alias("best")
        .metadata(row! {"k": "v"})
}

fn storage_gets(fake: &FakeWandb, prefix: &str) -> usize {
    fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(prefix))
            .count()
    })
}

#[tokio::test]
async fn logs_in_the_official_order_and_downloads_verified_copies() {
    let Setup {
        fake,
        client,
        files,
        ..
    } = setup().await;
    let run = client
        .start_run(RunSpec {
            id: Some("artrun01".into()),
            ..RunSpec::default()
        })
        .await
        .unwrap();
    run.log(row! {"loss": 1});
    let logged = run.log_artifact(model_spec(files.path())).await.unwrap();
    assert_eq!(logged.version.as_deref(), Some("v0"));
    assert!(!logged.deduplicated);

    fake.with(|state| {
        let sequence: Vec<String> = state
            .seen
            .iter()
            .filter(|s| {
                s.op.as_deref().is_some_and(|op| op.contains("Artifact")) || s.method == "PUT"
            })
            .map(|s| {
                s.op.clone()
                    .unwrap_or_else(|| format!("PUT {}", s.path.split('/').nth(2).unwrap()))
            })
            .collect();
        assert_eq!(
            sequence,
            [
                "CreateArtifact",
                "CreateArtifactManifest",
                "CreateArtifactFiles",
                "PUT objects",
                "PUT objects",
                "CreateArtifactManifest",
                "PUT manifests",
                "CommitArtifact"
            ]
        );
        let create = state
            .seen
            .iter()
            .find(|s| s.op.as_deref() == Some("CreateArtifact"))
            .unwrap();
        let input = &create.variables["input"];
        assert_eq!(input["digestAlgorithm"], "MANIFEST_MD5");
        assert_eq!(input["artifactTypeName"], "model");
        assert_eq!(input["runName"], "artrun01");
        assert_eq!(input["historyStep"], 1);
        assert_eq!(input["metadata"], "{\"k\":\"v\"}");
        assert_eq!(
            input["aliases"],
            json!([{"alias": "latest", "artifactCollectionName": "probe-model"},
                   {"alias": "best", "artifactCollectionName": "probe-model"}])
        );
        assert_eq!(input["clientID"].as_str().unwrap().len(), 128);
        assert_eq!(input["digest"], logged.digest.as_str());

        let files_call = state
            .seen
            .iter()
            .find(|s| s.op.as_deref() == Some("CreateArtifactFiles"))
            .unwrap();
        let names: Vec<&Value> = files_call.variables["input"]["artifactFiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["name"])
            .collect();
        assert_eq!(names, [&json!("model.pt"), &json!("tok/vocab.txt")]);
        assert_eq!(files_call.variables["input"]["storageLayout"], "V2");

        let manifests: Vec<&Value> = state
            .seen
            .iter()
            .filter(|s| s.op.as_deref() == Some("CreateArtifactManifest"))
            .map(|s| &s.variables)
            .collect();
        assert_eq!(
            (&manifests[0]["digest"], &manifests[0]["includeUpload"]),
            (&json!(""), &json!(false))
        );
        let manifest_bytes = state
            .storage
            .iter()
            .find(|(k, _)| k.starts_with("manifests/"))
            .unwrap()
            .1;
        assert_eq!(manifests[1]["digest"], b64_md5(manifest_bytes));
        assert_eq!(manifests[1]["includeUpload"], true);

        let manifest: Manifest = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest.digest(), logged.digest);
        let entry = &manifest.contents["model.pt"];
        assert_eq!(entry.digest, b64_md5(&[7u8; 1024]));
        assert_eq!(entry.size, Some(1024));
        assert_eq!(entry.birth_artifact_id.as_deref(), Some(logged.id.as_str()));

        for put in state.seen.iter().filter(|s| s.method == "PUT") {
            assert_eq!(put.authorization(), None);
        }
        let object_put = state
            .seen
            .iter()
            .find(|s| s.path.starts_with("/storage/objects/"))
            .unwrap();
        assert!(
            object_put.headers.contains_key("content-md5"),
            "upload headers are passed through"
        );
    });

    let reference: ArtifactRef = "testent/proj/probe-model:best".parse().unwrap();
    let used = run.use_artifact(&reference).await.unwrap();
    assert_eq!(
        (used.id.as_str(), used.version().as_deref()),
        (logged.id.as_str(), Some("v0"))
    );
    assert_eq!(used.artifact_type.as_deref(), Some("model"));
    assert_eq!(used.metadata, row! {"k": "v"});
    let use_call = fake.with(|s| {
        s.seen
            .iter()
            .rfind(|r| r.op.as_deref() == Some("UseArtifact"))
            .unwrap()
            .variables
            .clone()
    });
    assert_eq!(
        use_call["input"],
        json!({"entityName": "testent", "projectName": "proj", "runName": "artrun01", "artifactID": logged.id})
    );
    run.finish(0).await.unwrap();

    let out = tempfile::tempdir().unwrap();
    let downloaded = client
        .download_artifact(&"probe-model:v0".parse().unwrap(), out.path())
        .await
        .unwrap();
    assert_eq!(downloaded.files.len(), 2);
    assert_eq!(
        std::fs::read(out.path().join("model.pt")).unwrap(),
        vec![7u8; 1024]
    );
    assert_eq!(
        std::fs::read(out.path().join("tok/vocab.txt")).unwrap(),
        b"a\nb\n"
    );
    assert_eq!(storage_gets(&fake, "/storage/objects/"), 2);

    // A second copy comes from the cache, a repeated one is left alone: no more file GETs.
    let again = tempfile::tempdir().unwrap();
    client
        .download_artifact(&"probe-model".parse().unwrap(), again.path())
        .await
        .unwrap();
    client
        .download_artifact(&"probe-model".parse().unwrap(), again.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(again.path().join("tok/vocab.txt")).unwrap(),
        b"a\nb\n"
    );
    assert_eq!(storage_gets(&fake, "/storage/objects/"), 2);
}

#[tokio::test]
async fn identical_contents_are_deduplicated_and_unchanged_files_not_reuploaded() {
    let Setup {
        fake,
        client,
        files,
        ..
    } = setup().await;
    let run = client
        .start_run(RunSpec {
            id: Some("artrun02".into()),
            ..RunSpec::default()
        })
        .await
        .unwrap();
    let first = run.log_artifact(model_spec(files.path())).await.unwrap();
    let puts_before = fake.with(|s| s.seen.iter().filter(|r| r.method == "PUT").count());
    let second = run.log_artifact(model_spec(files.path())).await.unwrap();
    assert!(second.deduplicated);
    assert_eq!((&second.id, &second.digest), (&first.id, &first.digest));
    assert_eq!(
        fake.with(|s| s.seen.iter().filter(|r| r.method == "PUT").count()),
        puts_before
    );

    // A changed file makes v1; the unchanged file is already stored (null uploadUrl).
    std::fs::write(files.path().join("tok/vocab.txt"), b"a\nb\nc\n").unwrap();
    let third = run.log_artifact(model_spec(files.path())).await.unwrap();
    assert_eq!(third.version.as_deref(), Some("v1"));
    assert_ne!(third.digest, first.digest);
    let object_puts = fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/storage/objects/"))
            .count()
    });
    assert_eq!(object_puts, 3, "only the changed file is uploaded again");
    let base = fake.with(|s| {
        s.seen
            .iter()
            .rfind(|r| r.op.as_deref() == Some("CreateArtifactManifest"))
            .unwrap()
            .variables
            .clone()
    });
    assert_eq!(
        base["baseArtifactID"],
        json!(first.id),
        "the previous version is the base"
    );
    run.finish(0).await.unwrap();
}

#[tokio::test]
async fn corrupted_downloads_are_rejected() {
    let Setup {
        fake,
        client,
        files,
        ..
    } = setup().await;
    let run = client
        .start_run(RunSpec {
            id: Some("artrun03".into()),
            ..RunSpec::default()
        })
        .await
        .unwrap();
    run.log_artifact(model_spec(files.path())).await.unwrap();
    run.finish(0).await.unwrap();
    fake.with(|state| {
        let key = state
            .storage
            .keys()
            .find(|k| k.starts_with("objects/") && state.storage[*k].len() == 1024)
            .unwrap()
            .clone();
        state.storage.insert(key, vec![8u8; 1024]);
    });
    let out = tempfile::tempdir().unwrap();
    let err = client
        .download_artifact(&"probe-model:latest".parse().unwrap(), out.path())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { name, .. } if name == "model.pt"),
        "{err:?}"
    );
    assert!(
        !out.path().join("model.pt").exists(),
        "a corrupt file must not be left behind"
    );

    let missing = client
        .artifact(&"probe-model:nope".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
}
