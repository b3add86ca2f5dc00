//! Reading runs back from the in-memory fake: listing with filters and paging, one run,
//! full history scans, console logs, run files and alerts.

use std::time::Duration;

use mlwf::wandb::{AlertLevel, Client, Error, RunQuery, RunSpec, RunState, Stream};
use serde_json::json;

use crate::util::fake_wandb::{b64_md5, FakeWandb};
use crate::util::settings;

async fn logged_runs(fake: &FakeWandb, count: usize) -> Client {
    let client = Client::new(settings(&fake.base_url)).unwrap();
    for i in 0..count {
        let spec = RunSpec {
            id: Some(format!("run{i:05}")),
            config: row! {"branch": format!("b{i}"), "lr": 0.1},
            tags: vec!["probe".into()],
            ..RunSpec::default()
        };
        let run = client.start_run(spec).await.unwrap();
        run.log(row! {"loss": i});
        run.finish(0).await.unwrap();
    }
    client
}

#[tokio::test]
async fn runs_are_listed_with_filters_order_and_paging() {
    let fake = FakeWandb::start().await;
    let client = logged_runs(&fake, 7).await;
    let filters = json!({"$and": [{"config.branch.value": "feat-x"}, {"state": "finished"}, {"tags": {"$in": ["probe"]}}]});
    let query = RunQuery::new()
        .filters(filters.clone())
        .order("-created_at");
    let runs = client.runs("testent", "proj", &query).await.unwrap();
    assert_eq!(runs.len(), 7);
    let first = &runs[0];
    assert_eq!(first.id, "run00000");
    assert_eq!(first.state, RunState::Finished);
    assert_eq!(first.config, row! {"branch": "b0", "lr": 0.1});
    assert_eq!(first.tags, ["probe"]);
    assert_eq!(first.summary["loss"], json!(0));
    assert_eq!(first.last_step, Some(0));

    let calls = fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.op.as_deref() == Some("Runs"))
            .map(|r| r.variables.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["filters"], filters.to_string());
    assert_eq!(calls[0]["order"], "-created_at");
    assert_eq!(calls[0]["perPage"], 50);

    let limited = client
        .runs("testent", "proj", &RunQuery::new().limit(3))
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run00000", "run00001", "run00002"]
    );
}

#[tokio::test]
async fn runs_follow_cursors_across_pages() {
    let fake = FakeWandb::start().await;
    let client = logged_runs(&fake, 53).await;
    let runs = client
        .runs("testent", "proj", &RunQuery::new())
        .await
        .unwrap();
    assert_eq!(runs.len(), 53);
    assert_eq!(runs[52].id, "run00052");
    let cursors = fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.op.as_deref() == Some("Runs"))
            .map(|r| r.variables["cursor"].clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(cursors, [json!(null), json!("50")]);
}

#[tokio::test]
async fn one_run_history_and_console_read_back() {
    let fake = FakeWandb::start().await;
    let client = Client::new(settings(&fake.base_url)).unwrap();
    let run = client
        .start_run(RunSpec {
            id: Some("reader01".into()),
            name: Some("nice".into()),
            ..RunSpec::default()
        })
        .await
        .unwrap();
    for i in 0..2500u64 {
        run.log(row! {"loss": i as f64 / 2.0});
    }
    run.console("hello\nworld", Stream::Stdout);
    run.console("oops", Stream::Stderr);
    run.alert("probe alert", "something happened", AlertLevel::Warn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // While running, the console comes from the streamed lines.
    assert_eq!(
        client
            .output_log("testent", "proj", "reader01")
            .await
            .unwrap(),
        "hello\nworld\noops\n"
    );
    run.finish(0).await.unwrap();

    let info = client
        .run("testent", "proj", "reader01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            info.display_name.as_deref(),
            info.history_line_count,
            info.last_step
        ),
        (Some("nice"), 2500, Some(2499))
    );
    assert!(info.created_at.is_some() && info.heartbeat_at.is_some());
    assert!(client
        .run("testent", "proj", "absent00")
        .await
        .unwrap()
        .is_none());

    let history = client.history("testent", "proj", "reader01").await.unwrap();
    assert_eq!(history.len(), 2500);
    assert!(history
        .iter()
        .enumerate()
        .all(|(i, row)| row["_step"] == json!(i)));
    let pages = fake.with(|s| {
        s.seen
            .iter()
            .filter(|r| r.op.as_deref() == Some("HistoryPage"))
            .map(|r| {
                (
                    r.variables["minStep"].clone(),
                    r.variables["maxStep"].clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        pages,
        [
            (json!(0), json!(1000)),
            (json!(1000), json!(2000)),
            (json!(2000), json!(3000))
        ]
    );

    // Once finished, the uploaded output.log is read instead.
    let gets_before = fake.with(|s| s.seen.iter().filter(|r| r.method == "GET").count());
    assert_eq!(
        client
            .output_log("testent", "proj", "reader01")
            .await
            .unwrap(),
        "hello\nworld\noops\n"
    );
    assert_eq!(
        fake.with(|s| s.seen.iter().filter(|r| r.method == "GET").count()),
        gets_before + 1
    );
    assert_eq!(
        client
            .run_file("testent", "proj", "reader01", "missing.txt")
            .await
            .unwrap(),
        None
    );

    let alert = fake.with(|s| {
        s.seen
            .iter()
            .find(|r| r.op.as_deref() == Some("NotifyScriptableRunAlert"))
            .unwrap()
            .variables
            .clone()
    });
    assert_eq!(
        alert,
        json!({"entityName": "testent", "projectName": "proj", "runName": "reader01", "title": "probe alert",
               "text": "something happened", "severity": "WARN", "waitDuration": 60000})
    );
}

#[tokio::test]
async fn run_files_download_verified() {
    let fake = FakeWandb::start().await;
    let client = Client::new(settings(&fake.base_url)).unwrap();
    let run = client
        .start_run(RunSpec {
            id: Some("files001".into()),
            ..RunSpec::default()
        })
        .await
        .unwrap();
    run.save_bytes("notes/a.txt", b"payload".to_vec())
        .await
        .unwrap();
    run.finish(0).await.unwrap();
    assert_eq!(
        client
            .run_file("testent", "proj", "files001", "notes/a.txt")
            .await
            .unwrap()
            .unwrap(),
        b"payload"
    );
    let dest = tempfile::tempdir().unwrap();
    let path = dest.path().join("a.txt");
    assert!(client
        .download_run_file("testent", "proj", "files001", "notes/a.txt", &path)
        .await
        .unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"payload");

    // The server recorded the MD5 of the upload; different bytes on download must be refused.
    fake.with(|s| {
        s.reported_md5
            .insert("runs/files001/notes/a.txt".into(), b64_md5(b"payload"));
        s.storage
            .insert("runs/files001/notes/a.txt".into(), b"tampered".to_vec());
    });
    let err = client
        .run_file("testent", "proj", "files001", "notes/a.txt")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(matches!(
        client.history("testent", "proj", "nope0000").await,
        Err(Error::NotFound(_))
    ));
}
