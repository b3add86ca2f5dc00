//! Transport behaviour against small loopback servers: retries, Retry-After, auth failures,
//! unreachable servers and GraphQL errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use mlwf::wandb::{Client, Error};
use serde_json::json;

use crate::util::{closed_port_url, serve, settings, KEY};

fn viewer_data() -> Json<serde_json::Value> {
    Json(
        json!({"data": {"viewer": {"id": "VXNlcjox", "entity": "testent", "username": "u", "email": null,
                                    "flags": "{}", "teams": {"edges": [{"node": {"name": "team-a"}}]}}}}),
    )
}

/// A `/graphql` endpoint that answers request `n` with `reply(n)`; returns its base URL and
/// the request counter.
async fn graphql_server(
    reply: impl Fn(usize) -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = Router::new().route(
        "/graphql",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            async move { reply(n) }
        }),
    );
    (serve(router).await, hits)
}

fn client(base: &str) -> Client {
    Client::new(settings(base)).unwrap()
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let (base, hits) = graphql_server(|n| {
        if n < 2 {
            (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
        } else {
            viewer_data().into_response()
        }
    })
    .await;
    let viewer = client(&base).viewer().await.unwrap();
    assert_eq!(viewer.entity.as_deref(), Some("testent"));
    assert_eq!(viewer.teams, ["team-a"]);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let (base, hits) = graphql_server(|n| {
        if n == 0 {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", "1".parse().unwrap());
            (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response()
        } else {
            viewer_data().into_response()
        }
    })
    .await;
    let started = Instant::now();
    client(&base).viewer().await.unwrap();
    // The backoff alone would be a few milliseconds.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn gives_up_on_persistent_5xx_naming_the_url() {
    let (base, hits) =
        graphql_server(|_| (StatusCode::BAD_GATEWAY, "upstream down").into_response()).await;
    let err = client(&base).viewer().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Http {
                status: 502,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("{base}/graphql")) && text.contains("upstream down"),
        "{text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn final_client_errors_are_not_retried() {
    for status in [400, 403, 404, 409, 410, 413, 422, 501] {
        let code = StatusCode::from_u16(status).unwrap();
        let (base, hits) = graphql_server(move |_| (code, "nope").into_response()).await;
        let err = client(&base).viewer().await.unwrap_err();
        assert!(
            matches!(err, Error::Http { status: s, attempts: 1, .. } if s == status),
            "{status}: {err:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{status}");
    }
}

#[tokio::test]
async fn rejected_key_gives_a_clear_error_without_the_key() {
    let (base, hits) =
        graphql_server(|_| (StatusCode::UNAUTHORIZED, "invalid api key").into_response()).await;
    let err = client(&base).viewer().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(text.contains(&format!("{base}/graphql")), "{text}");
    assert!(
        text.contains("WANDB_API_KEY") && text.contains("rejected the API key"),
        "{text}"
    );
    assert!(
        !text.contains(KEY) && !format!("{err:?}").contains(KEY),
        "{text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_server_is_retried_then_named() {
    let base = closed_port_url().await;
    let err = client(&base).viewer().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Network { attempts: 4, .. }), "{err:?}");
    assert!(
        text.contains(&format!("{base}/graphql")) && text.contains("Viewer"),
        "{text}"
    );
    assert!(!text.contains(KEY));
}

#[tokio::test]
async fn graphql_errors_are_surfaced_with_the_operation() {
    let (base, hits) = graphql_server(|_| {
        Json(
            json!({"data": null, "errors": [{"message": "permission denied", "path": ["viewer"]}]}),
        )
        .into_response()
    })
    .await;
    let err = client(&base).viewer().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::GraphQl { .. }), "{err:?}");
    assert!(
        text.contains("Viewer") && text.contains("permission denied (at viewer)"),
        "{text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_carry_basic_auth_user_agent_and_operation_name() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let router = Router::new().route(
        "/graphql",
        post(
            move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
                *record.lock().unwrap() = Some((headers, body));
                async { viewer_data() }
            },
        ),
    );
    let base = serve(router).await;
    client(&base).viewer().await.unwrap();
    let (headers, body) = seen.lock().unwrap().take().unwrap();
    let auth = headers["authorization"].to_str().unwrap();
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        auth.strip_prefix("Basic ").unwrap(),
    );
    assert_eq!(decoded.unwrap(), format!("api:{KEY}").into_bytes());
    assert_eq!(
        headers["user-agent"],
        concat!("mlwf/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(body["operationName"], "Viewer");
    assert!(body["query"].as_str().unwrap().starts_with("query Viewer"));
}
