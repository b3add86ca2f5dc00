//! A loopback Anthropic Messages API for tests and benchmarks: answers every request with a
//! fixed text (after `fail_first` overloaded answers) and records what it was sent.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{bind_loopback, serve};

#[derive(Default)]
struct Inner {
    answer: String,
    fail_first: usize,
    calls: AtomicUsize,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

/// A running fake; its server lives as long as the runtime.
#[derive(Clone)]
pub struct FakeClaude {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeClaude {
    pub async fn start(answer: &str, fail_first: usize) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            answer: answer.to_owned(),
            fail_first,
            ..Default::default()
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(inner.clone());
        let (listener, url) = bind_loopback().await?;
        serve(listener, app);
        Ok(Self { url, inner })
    }

    /// Requests received: headers and JSON bodies.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.inner
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn messages(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    if let Ok(mut requests) = inner.requests.lock() {
        requests.push((headers, body));
    }
    if inner.calls.fetch_add(1, Ordering::SeqCst) < inner.fail_first {
        let overloaded = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (
            overloaded,
            Json(json!({"type": "error", "error": {"type": "overloaded_error"}})),
        )
            .into_response();
    }
    Json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake",
        "content": [{"type": "text", "text": inner.answer}],
        "stop_reason": "end_turn",
    }))
    .into_response()
}
