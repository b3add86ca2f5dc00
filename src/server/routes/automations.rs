//! mlwf's own endpoints beside W&B's Automations API (not W&B endpoints):
//! - `POST /mlwf/v1/secrets/{entity}/{name}` (`{"value": "…"}`) and `GET /mlwf/v1/secrets/{entity}`
//!   (names only): the team secrets webhook integrations name, which W&B keeps in its team
//!   settings page and no public API sets.
//! - `GET /mlwf/v1/deliveries/{entity}`: each webhook delivery and how it went, newest first.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{store_error_response, AppState};
use crate::server::store::automations;

#[derive(Deserialize)]
pub struct SecretBody {
    value: String,
}

pub async fn set_secret(
    State(state): State<AppState>,
    Path((entity, name)): Path<(String, String)>,
    Json(body): Json<SecretBody>,
) -> Response {
    let result = state
        .store
        .write(move |conn| automations::set_secret(conn, &entity, &name, &body.value))
        .await;
    match result {
        Ok(changed) => Json(serde_json::json!({ "changed": changed })).into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}

pub async fn secret_names(State(state): State<AppState>, Path(entity): Path<String>) -> Response {
    let result = state
        .store
        .read(move |conn| automations::secret_names(conn, &entity))
        .await;
    match result {
        Ok(names) => Json(names).into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}

/// The 500 newest deliveries.
pub async fn deliveries(State(state): State<AppState>, Path(entity): Path<String>) -> Response {
    let result = state
        .store
        .read(move |conn| automations::deliveries(conn, &entity, 500))
        .await;
    match result {
        Ok(list) => Json(list).into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}
