//! What W&B's GraphQL does not expose of Launch, read by `mlwf queue` (and the tests), which go
//! without it on W&B. Not W&B endpoints:
//! - `GET /mlwf/v1/run-queue-items/{id}`: an item's age, failure and warnings (W&B exposes only
//!   its state and run);
//! - `GET /mlwf/v1/launch-agents/{entity}/{project}`: the agents registered there and their
//!   status (W&B reads agents only one by one, by id).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{error_response, store_error_response, AppState};
use crate::server::graphql::launch::{AGENT_KIND, ITEM_KIND};
use crate::server::ids;
use crate::server::store::{find_project, launch};

pub async fn item_details(State(state): State<AppState>, Path(item): Path<String>) -> Response {
    let Some(id) = ids::decode(ITEM_KIND, &item) else {
        return error_response(
            axum::http::StatusCode::NOT_FOUND,
            &format!("{item:?} is not a run queue item id"),
        )
        .into_response();
    };
    match state
        .store
        .read(move |conn| launch::item_details(conn, id))
        .await
    {
        Ok(details) => Json(details).into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}

/// Agents seen at most: the newest.
const AGENTS_LISTED: i64 = 50;

pub async fn agents(
    State(state): State<AppState>,
    Path((entity, project)): Path<(String, String)>,
) -> Response {
    let result = state
        .store
        .read(move |conn| match find_project(conn, &entity, &project)? {
            Some(project) => launch::agents(conn, project.id, AGENTS_LISTED),
            None => Ok(Vec::new()),
        })
        .await;
    match result {
        Ok(agents) => {
            let agents: Vec<_> = agents
                .into_iter()
                .map(|a| {
                    serde_json::json!({
                        "id": ids::encode(AGENT_KIND, a.id),
                        "name": a.name,
                        "hostname": a.hostname,
                        "status": a.status,
                        "heartbeatAt": a.heartbeat_at,
                        "version": a.version,
                    })
                })
                .collect();
            Json(agents).into_response()
        }
        Err(err) => store_error_response(err).into_response(),
    }
}
