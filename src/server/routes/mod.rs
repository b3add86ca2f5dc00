//! HTTP routes. Everything requires an API key except `/healthz` and the signed storage URLs,
//! which carry their own authorization.

mod alerts;
mod automations;
mod file_stream;
mod graphql;
mod launch;
pub mod storage;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::graphql::engine::Engine;
use super::signing::Signer;
use super::store::{Store, StoreError};

/// Largest GraphQL or file_stream body accepted. The SDK caps a file_stream request near 10 MiB.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: Engine,
    pub signer: Arc<Signer>,
    pub api_keys: Arc<Vec<String>>,
    pub tuning: crate::server::Tuning,
}

pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/graphql", post(graphql::graphql))
        .route(
            "/files/{entity}/{project}/{run}/file_stream",
            post(file_stream::file_stream),
        )
        .route(
            "/mlwf/v1/alerts/{entity}/{project}/{run}",
            get(alerts::list),
        )
        .route("/mlwf/v1/run-queue-items/{item}", get(launch::item_details))
        .route("/mlwf/v1/secrets/{entity}", get(automations::secret_names))
        .route(
            "/mlwf/v1/secrets/{entity}/{name}",
            post(automations::set_secret),
        )
        .route("/mlwf/v1/deliveries/{entity}", get(automations::deliveries))
        .route(
            "/mlwf/v1/launch-agents/{entity}/{project}",
            get(launch::agents),
        )
        .route(
            "/artifactsV2/{region}/{entity}/{project}/{collection}/{*rest}",
            get(storage::artifact_v2_download),
        )
        .route(
            "/artifacts/{entity}/{md5}",
            get(storage::artifact_v1_download),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::require_key,
        ));
    let signed = Router::new()
        .route("/storage/{kind}/{id}/{signature}", put(storage::upload))
        .route(
            "/storage/{kind}/{id}/{signature}/{*name}",
            get(storage::download),
        )
        // Uploads are streamed to disk, so no size limit applies.
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authenticated)
        .merge(signed)
        .with_state(state)
}

/// The JSON error body of every non-GraphQL failure, shaped like a GraphQL error so clients
/// that only know GraphQL errors still show the message.
pub fn error_response(status: StatusCode, message: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        status,
        Json(serde_json::json!({"errors": [{"message": message}], "error": message})),
    )
}

pub fn store_error_response(err: StoreError) -> (StatusCode, Json<serde_json::Value>) {
    let status = match &err {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!("request failed: {err}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error_response(status, &err.to_string())
}

/// The URL clients reached us at, so that URLs we hand out work on any port or host name.
pub fn base_url(headers: &HeaderMap) -> String {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = value("x-forwarded-proto").unwrap_or("http");
    let host = value("x-forwarded-host")
        .or_else(|| value(header::HOST.as_str()))
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}
