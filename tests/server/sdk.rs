//! The official `wandb` SDK (a client nobody here wrote) logs to and reads from mlwf's
//! W&B-compatible server: `tests/python/server_sdk_roundtrip.py` does the work and checks what it
//! reads back. Skipped, with a message, when no Python with `wandb` is available
//! (`MLWF_PYTHON`, else `.venv/bin/python` in the crate), unless `MLWF_REQUIRE_PYTHON` is set
//! (as `scripts/test.sh` does), where that fails the test.

use std::time::Duration;

use serde_json::Value;

use crate::util::{self, Fixture, KEY};

#[tokio::test]
async fn official_sdk_logs_and_reads_back_a_run() {
    let Some(python) = util::python() else {
        return;
    };
    let t = Fixture::start().await;
    let mut command = t.sdk(&python, "server_sdk_roundtrip.py");
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the SDK script finishes within 3 minutes")
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let run_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("OK "))
        .unwrap_or_else(|| panic!("no OK line in:\n{stdout}"));

    // The alert the SDK raised is stored.
    let alerts: Value = t
        .http
        .get(t.url(&format!("/mlwf/v1/alerts/sdk-ent/sdk-proj/{run_id}")))
        .basic_auth("api", Some(KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts[0]["title"], "sdk alert", "{alerts}");
    assert_eq!(alerts[0]["severity"], "WARN");
    assert_eq!(alerts[0]["waitDurationMs"], 60_000);

    // The job the SDK pushed reaches an agent with the queue's defaults filled in.
    let popped = t
        .gql(
            "mutation { popFromRunQueue(input: {entityName: \"sdk-ent\", projectName: \"model-registry\",
                queueName: \"sdk-queue\"}) { runQueueItemId runSpec } }",
            Value::Null,
        )
        .await;
    let spec = &popped["popFromRunQueue"]["runSpec"];
    assert_eq!(spec["docker"]["docker_image"], "python:3.12", "{spec}");
    assert_eq!(spec["resource"], "local-process", "{spec}");
    assert_eq!(
        spec["resource_args"]["local-process"]["env"],
        serde_json::json!(["A=x"]),
        "{spec}"
    );

    // And everything it wrote survives a restart.
    let t = t.restart().await;
    let run = t
        .run_fields(
            "sdk-ent",
            "sdk-proj",
            run_id,
            "state historyLineCount fileCount",
        )
        .await;
    assert_eq!(run["state"], "finished");
    assert_eq!(run["historyLineCount"], 500);
    assert!(run["fileCount"].as_i64().unwrap() >= 4, "{run}");
}
