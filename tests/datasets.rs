//! `mlwf datasets upload|download|list` against the fixture's server, and the trainer reading an
//! uploaded dataset exactly as it reads the file.

use serde_json::Value;

use crate::launch::{mlwf, output, text};
use crate::util::{Fixture, ENTITY, PROJECT};

/// Words in lines: a small char-level corpus.
fn corpus() -> String {
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    (0..300)
        .map(|i| {
            (0..8)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn run_ok(t: &Fixture, args: &[&str]) -> String {
    let out = output(&mut mlwf(t, t.dir.path(), args)).await;
    assert!(out.status.success(), "mlwf {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The first logged training loss of a run trained on `dataset` for two steps.
async fn first_loss(t: &Fixture, run_id: &str, dataset: &str) -> f64 {
    let set = format!("data.dataset={dataset}");
    let mut train = mlwf(
        t,
        t.dir.path(),
        &[
            "train",
            "--set",
            &set,
            "--set",
            "optim.max_iters=2",
            "--set",
            "optim.warmup_iters=1",
            "--set",
            "train.log_interval=1",
        ],
    );
    train.env("WANDB_RUN_ID", run_id);
    let out = output(&mut train).await;
    assert!(out.status.success(), "{}", text(&out));
    let history = t.client.history(ENTITY, PROJECT, run_id).await.unwrap();
    history
        .iter()
        .find_map(|row| row.get("train/loss").and_then(Value::as_f64))
        .unwrap_or_else(|| panic!("no train/loss in {history:?}"))
}

#[tokio::test]
async fn an_uploaded_dataset_is_listed_downloaded_intact_and_trains_like_its_file() {
    let t = Fixture::start().await;
    let file = t.dir.path().join("corpus.txt");
    std::fs::write(&file, corpus()).unwrap();
    let path = file.to_str().unwrap();

    let dry = run_ok(
        &t,
        &["datasets", "upload", path, "--name", "corpus", "--dry-run"],
    )
    .await;
    assert!(dry.starts_with("dry run"), "{dry}");
    let listed: Value =
        serde_json::from_str(&run_ok(&t, &["datasets", "list", "--json"]).await).unwrap();
    assert_eq!(listed, serde_json::json!([]), "a dry run uploads nothing");

    let up = |extra: &'static [&'static str]| {
        let mut args = vec!["datasets", "upload", path, "--name", "corpus", "--json"];
        args.extend_from_slice(extra);
        args
    };
    let first: Value = serde_json::from_str(&run_ok(&t, &up(&["--split", "train"])).await).unwrap();
    assert_eq!(first["reference"], format!("{ENTITY}/{PROJECT}/corpus:v0"));
    assert_eq!(first["metadata"]["lines"], 300);
    assert_eq!(first["metadata"]["split"], "train");
    let again: Value = serde_json::from_str(&run_ok(&t, &up(&[])).await).unwrap();
    assert_eq!(
        again["version"], "v0",
        "the same contents are the same version"
    );
    assert_eq!(again["unchanged"], true);

    let listed: Value =
        serde_json::from_str(&run_ok(&t, &["datasets", "list", "--json"]).await).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["size_bytes"], corpus().len());

    let into = t.dir.path().join("downloaded");
    run_ok(
        &t,
        &[
            "datasets",
            "download",
            "corpus:v0",
            "-o",
            into.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(into.join("corpus.txt")).unwrap(),
        corpus()
    );

    let from_file = first_loss(&t, "fromfile", &format!("file:{path}")).await;
    let from_artifact = first_loss(&t, "fromartf", "artifact:corpus:v0").await;
    assert_eq!(
        from_file, from_artifact,
        "the same data, the same first step"
    );

    // Bad input: one line that says what is wrong, nothing uploaded.
    for (args, said) in [
        (
            vec!["datasets", "upload", "missing.txt", "--name", "x"],
            "does not exist",
        ),
        (
            vec!["datasets", "upload", path, "--name", "bad name"],
            "not an artifact name",
        ),
        (vec!["datasets", "download", "nosuch:v0"], "no dataset"),
    ] {
        let out = output(&mut mlwf(&t, t.dir.path(), &args)).await;
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}

/// The versions of `name` that `mlwf artifacts list` shows, as `vN:alias,alias`.
async fn listed(t: &Fixture, name: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(
        &run_ok(t, &["artifacts", "list", "--type", "dataset", "--json"]).await,
    )
    .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == name)
        .map(|v| {
            let aliases: Vec<&str> = v["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            format!("{}:{}", v["version"].as_str().unwrap(), aliases.join(","))
        })
        .collect()
}

#[tokio::test]
async fn artifacts_are_aliased_pruned_keeping_aliases_and_the_last_n_and_deleted() {
    let t = Fixture::start().await;
    let file = t.dir.path().join("notes.txt");
    for version in 0..5 {
        std::fs::write(&file, format!("version {version}\n")).unwrap();
        run_ok(
            &t,
            &[
                "datasets",
                "upload",
                file.to_str().unwrap(),
                "--name",
                "notes",
            ],
        )
        .await;
    }
    run_ok(&t, &["artifacts", "alias", "notes:v1", "best"]).await;
    run_ok(&t, &["artifacts", "alias", "notes:v0", "old-favourite"]).await;
    assert_eq!(
        listed(&t, "notes").await,
        ["v4:latest", "v3:", "v2:", "v1:best", "v0:old-favourite"]
    );

    // The plan first, changing nothing; then the same deletions.
    let prune = [
        "artifacts",
        "prune",
        "--type",
        "dataset",
        "--keep-last",
        "2",
        "--keep-aliases",
        "best,latest",
        "--json",
    ];
    let mut dry = prune.to_vec();
    dry.push("--dry-run");
    let plan: Value = serde_json::from_str(&run_ok(&t, &dry).await).unwrap();
    let deleted = |plan: &Value| -> Vec<String> {
        plan["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(deleted(&plan), ["v2", "v0"]);
    assert_eq!(
        listed(&t, "notes").await.len(),
        5,
        "a dry run deletes nothing"
    );
    let done: Value = serde_json::from_str(&run_ok(&t, &prune).await).unwrap();
    assert_eq!(deleted(&done), deleted(&plan));
    assert_eq!(listed(&t, "notes").await, ["v4:latest", "v3:", "v1:best"]);

    // A kept version downloads intact; deleting an aliased one needs --force.
    let out_dir = t.dir.path().join("best");
    run_ok(
        &t,
        &[
            "artifacts",
            "get",
            "notes:best",
            "-o",
            out_dir.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(out_dir.join("notes.txt")).unwrap(),
        "version 1\n"
    );
    let out = output(&mut mlwf(
        &t,
        t.dir.path(),
        &["artifacts", "delete", "notes:v1"],
    ))
    .await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("--force"), "{said}");
    run_ok(&t, &["artifacts", "delete", "notes:v4", "--dry-run"]).await;
    run_ok(&t, &["artifacts", "delete", "notes:v4"]).await;
    run_ok(&t, &["artifacts", "delete", "notes:v1", "--force"]).await;
    assert_eq!(
        listed(&t, "notes").await,
        ["v3:latest"],
        "latest moves to the newest left"
    );
}
