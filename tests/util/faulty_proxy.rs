//! A loopback proxy in front of a real server that fails a share of `file_stream` requests:
//! some are refused with 503 before reaching the server, others reach it and have their answer
//! replaced by 503 (a lost response, so the client must re-send what the server already has).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// How many requests of each kind the proxy saw.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    pub answer_lost: AtomicU64,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Out of 100 file_stream requests: refused, then answer lost.
    refuse_pct: u64,
    lose_pct: u64,
    counts: Arc<FaultCounts>,
    /// file_stream requests seen so far.
    seq: AtomicU64,
}

/// Serves the proxy on a free loopback port; returns its base URL and the counters.
pub async fn start(upstream: &str, refuse_pct: u64, lose_pct: u64) -> (String, Arc<FaultCounts>) {
    let counts = Arc::new(FaultCounts::default());
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        refuse_pct,
        lose_pct,
        counts: counts.clone(),
        seq: AtomicU64::new(0),
    });
    let router = Router::new().fallback(forward).with_state(proxy);
    (super::serve(router).await, counts)
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let is_file_stream = request.uri().path().ends_with("/file_stream");
    // A fixed pseudo-random pattern (not a clock or RNG) keeps failures reproducible.
    let roll = proxy
        .seq
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(2_654_435_761)
        % 100;
    if is_file_stream && roll < proxy.refuse_pct {
        proxy.counts.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "injected: refused").into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = proxy
        .http
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    };
    if is_file_stream && roll < proxy.refuse_pct + proxy.lose_pct {
        proxy.counts.answer_lost.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "injected: answer lost").into_response();
    }
    proxy.counts.forwarded.fetch_add(1, Ordering::Relaxed);
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
