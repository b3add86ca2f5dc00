//! `GET /mlwf/v1/run-queue-items/{id}`: an item's age, failure and warnings. Not a W&B endpoint:
//! W&B's GraphQL exposes only an item's state and run, so `mlwf queue items` (and the tests)
//! read why an item failed here, and go without it on W&B.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{error_response, store_error_response, AppState};
use crate::server::graphql::launch::ITEM_KIND;
use crate::server::ids;
use crate::server::store::launch;

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
