//! `GET /mlwf/v1/alerts/{entity}/{project}/{run}`: the alerts a run raised, oldest first. Not a
//! W&B endpoint: W&B delivers alerts by Slack or email, which a local server cannot, so mlwf
//! (and its tests) read them here.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{store_error_response, AppState};
use crate::server::store::alerts::list_alerts;
use crate::server::store::runs::require_run;

pub async fn list(
    State(state): State<AppState>,
    Path((entity, project, run)): Path<(String, String, String)>,
) -> Response {
    let result = state
        .store
        .read(move |conn| {
            let run = require_run(conn, &entity, &project, &run)?;
            list_alerts(conn, run.id)
        })
        .await;
    match result {
        Ok(alerts) => Json(alerts).into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}
