//! Automations on mlwf's server: set up through the GraphQL W&B's SDK uses, they fire when a
//! run ends, sign and authorize their requests, retry a target that is down and record it as
//! failed, and the official SDK reads and writes them too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use mlwf::secrets::Secret;
use mlwf::server::Tuning;
use mlwf::wandb::AutomationSpec;
use serde_json::{json, Value};

use crate::util;
use crate::util::{Fixture, ENTITY, PROJECT};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook target that records each request and answers 204.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    (format!("{}/hook", util::serve(router).await), seen)
}

fn quick() -> Tuning {
    Tuning {
        webhook_attempts: 3,
        webhook_backoff: Duration::from_millis(50),
        ..Tuning::default()
    }
}

async fn deliveries(t: &Fixture) -> Vec<Value> {
    let list = t.get_json(&format!("/mlwf/v1/deliveries/{ENTITY}")).await;
    serde_json::from_value(list).unwrap()
}

/// Waits until `done` holds for the deliveries (newest first), or fails after 20 s.
async fn wait_for(t: &Fixture, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..200 {
        let list = deliveries(t).await;
        if done(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: deliveries are {:#?}", deliveries(t).await);
}

/// A run that starts and then ends with `exit_code`.
async fn run_that_ends(t: &Fixture, name: &str, exit_code: i64) {
    t.upsert_run(ENTITY, PROJECT, name, json!({})).await;
    let (status, _) = t
        .file_stream(
            ENTITY,
            PROJECT,
            name,
            json!({"complete": true, "exitcode": exit_code}),
        )
        .await;
    assert!(status.is_success());
}

const PAYLOAD: &str = r#"{"event_type": "wandb_run_finished", "client_payload": {
    "event_type": "${event_type}", "event_author": "${event_author}",
    "entity_name": "${entity_name}", "project_name": "${project_name}",
    "run_id": "${run_id}", "run_state": "${run_state}", "token": "${ACCESS_TOKEN}"}}"#;

async fn automation(
    t: &Fixture,
    name: &str,
    integration: &str,
    states: &[&str],
) -> mlwf::wandb::Automation {
    let project = t.client.ensure_project(ENTITY, PROJECT).await.unwrap();
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let spec = AutomationSpec::on_run_state(name, "test", &project, states, integration, &payload);
    t.client.create_automation(&spec).await.unwrap()
}

#[tokio::test]
async fn a_run_that_ends_fires_its_automation_signed_and_authorized() {
    let t = Fixture::start_tuned(quick()).await;
    let (url, seen) = receiver().await;
    let c = &t.client;
    assert_eq!(
        c.set_team_secret(ENTITY, "HOOK_TOKEN", &Secret::new("tok-123"))
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        c.set_team_secret(ENTITY, "HOOK_TOKEN", &Secret::new("tok-123"))
            .await
            .unwrap(),
        Some(false),
        "setting the same value again changes nothing"
    );
    c.set_team_secret(ENTITY, "HOOK_SIGNING", &Secret::new("sign-456"))
        .await
        .unwrap();
    assert_eq!(
        c.team_secret_names(ENTITY).await.unwrap().unwrap(),
        ["HOOK_SIGNING", "HOOK_TOKEN"],
        "names only, never values"
    );
    let hook = c
        .create_webhook_integration(
            ENTITY,
            "test hook",
            &url,
            Some("HOOK_TOKEN"),
            Some("HOOK_SIGNING"),
        )
        .await
        .unwrap();
    assert_eq!(
        c.webhook_integrations(ENTITY).await.unwrap(),
        std::slice::from_ref(&hook)
    );
    let made = automation(&t, "on end", &hook.id, &["FINISHED", "CRASHED"]).await;
    let listed = c.automations(ENTITY).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].spec.same_as(&made.spec), "{listed:?} vs {made:?}");

    // Starting a run is no end; finishing and failing are.
    t.upsert_run(ENTITY, PROJECT, "started", json!({})).await;
    run_that_ends(&t, "good", 0).await;
    run_that_ends(&t, "crashed", 1).await;
    let list = wait_for(&t, "two deliveries", |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(list[0]["run_id"], "crashed");
    assert_eq!(list[0]["event_state"], "FAILED");
    assert_eq!(list[1]["event_state"], "FINISHED");
    assert_eq!(list[1]["attempts"], 1);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let bodies: Vec<Value> = seen
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect();
    let good = bodies
        .iter()
        .find(|b| b["client_payload"]["run_id"] == "good")
        .expect("the finished run's delivery");
    assert_eq!(
        good["client_payload"],
        json!({"event_type": "RUN_STATE", "event_author": "local", "entity_name": ENTITY,
               "project_name": PROJECT, "run_id": "good", "run_state": "FINISHED",
               "token": "tok-123"})
    );
    for (headers, body) in &seen {
        assert_eq!(headers["authorization"], "Bearer tok-123");
        assert_eq!(headers["content-type"], "application/json");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"sign-456");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(headers["x-wandb-signature"].to_str().unwrap())
            .unwrap();
        ring::hmac::verify(&key, body.as_bytes(), &signature).expect("a valid signature");
    }
    // The stored record never holds the secrets it was sent with.
    assert!(!deliveries(&t)
        .await
        .iter()
        .any(|d| d.to_string().contains("tok-123")));

    // Updated to watch FINISHED only, it lets a failure pass; deleted, it fires no more.
    let mut spec = made.spec.clone();
    spec.event_filter =
        AutomationSpec::on_run_state("x", "x", "x", &["FINISHED"], "x", &json!({})).event_filter;
    c.update_automation(&made.id, &spec).await.unwrap();
    run_that_ends(&t, "failed-unwatched", 1).await;
    assert!(c.delete_automation(&made.id).await.unwrap());
    run_that_ends(&t, "after-delete", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deliveries(&t).await.len(), 2);
    t.shutdown().await;
}

#[tokio::test]
async fn a_target_that_is_down_is_retried_then_recorded_failed_and_nothing_else_waits() {
    let t = Fixture::start_tuned(quick()).await;
    let (url, seen) = receiver().await;
    let c = &t.client;
    let down = c
        .create_webhook_integration(ENTITY, "down", &util::closed_port_url().await, None, None)
        .await
        .unwrap();
    let up = c
        .create_webhook_integration(ENTITY, "up", &url, None, None)
        .await
        .unwrap();
    automation(&t, "to the down one", &down.id, &["FINISHED"]).await;
    automation(&t, "to the up one", &up.id, &["FINISHED"]).await;
    run_that_ends(&t, "done", 0).await;
    let list = wait_for(&t, "one failed, one delivered", |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] != "pending")
    })
    .await;
    let failed = list.iter().find(|d| d["integration"] == "down").unwrap();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert!(failed["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    let delivered = list.iter().find(|d| d["integration"] == "up").unwrap();
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The run itself is untouched by its webhooks.
    assert_eq!(
        t.run_fields(ENTITY, PROJECT, "done", "state").await["state"],
        "finished"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn bad_automations_are_refused_with_the_reason() {
    let t = Fixture::start().await;
    let c = &t.client;
    let bad_name = c
        .create_webhook_integration(ENTITY, "no/slashes", "https://x.test/", None, None)
        .await
        .unwrap_err();
    assert!(
        bad_name.to_string().contains("words of letters"),
        "{bad_name}"
    );
    let bad_url = c
        .create_webhook_integration(ENTITY, "ok", "file:///etc/passwd", None, None)
        .await
        .unwrap_err();
    assert!(bad_url.to_string().contains("http(s)"), "{bad_url}");
    let hook = c
        .create_webhook_integration(ENTITY, "ok", "https://x.test/", None, None)
        .await
        .unwrap();
    let project = c.ensure_project(ENTITY, PROJECT).await.unwrap();
    let mut spec =
        AutomationSpec::on_run_state("a", "d", &project, &["DONE"], &hook.id, &json!({}));
    let err = c.create_automation(&spec).await.unwrap_err();
    assert!(err.to_string().contains("unknown run state"), "{err}");
    spec = AutomationSpec::on_run_state("a", "d", &project, &["FINISHED"], &hook.id, &json!({}));
    spec.request_payload = Some("{not json".into());
    let err = c.create_automation(&spec).await.unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    spec.request_payload = Some("{}".into());
    c.create_automation(&spec).await.unwrap();
    let err = c.create_automation(&spec).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    t.shutdown().await;
}

#[tokio::test]
async fn the_official_sdk_lists_and_makes_automations_on_this_server() {
    let Some(python) = util::python() else {
        return;
    };
    let t = Fixture::start().await;
    let hook = t
        .client
        .create_webhook_integration(ENTITY, "sdk hook", "https://x.test/hook", None, None)
        .await
        .unwrap();
    automation(&t, "made by mlwf", &hook.id, &["FINISHED", "FAILED"]).await;
    let out = t
        .sdk_json(
            &python,
            "automations_sdk.py",
            &[ENTITY, PROJECT, "sdk hook", "made by mlwf"],
        )
        .await;
    assert_eq!(out["hooks"], 1, "{out}");
    t.shutdown().await;
}

#[tokio::test]
async fn a_run_that_goes_silent_has_crashed_and_fires_failed_once() {
    let t = Fixture::start_tuned(Tuning {
        run_timeout: Duration::from_secs(1),
        ..quick()
    })
    .await;
    let (url, seen) = receiver().await;
    let hook = t
        .client
        .create_webhook_integration(ENTITY, "hook", &url, None, None)
        .await
        .unwrap();
    automation(&t, "on failure", &hook.id, &["FAILED"]).await;
    // Killed without a word: started, then nothing.
    t.upsert_run(ENTITY, PROJECT, "vanished", json!({})).await;
    let list = wait_for(&t, "the crash reported", |d| {
        d.iter().any(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(list[0]["run_id"], "vanished");
    assert_eq!(list[0]["event_state"], "FAILED");
    let body: Value = serde_json::from_str(&seen.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["client_payload"]["run_state"], "FAILED");
    // Later sweeps say nothing more about it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(deliveries(&t).await.len(), 1);
    assert_eq!(
        t.run_fields(ENTITY, PROJECT, "vanished", "state").await["state"],
        "crashed"
    );
    t.shutdown().await;
}
