//! `POST /graphql`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::Connection;

use super::storage::Urls;
use super::{base_url, store_error_response, AppState};
use crate::server::graphql::engine::{Request, RequestErrors};
use crate::server::graphql::{Ctx, Root};
use crate::server::store::StoreResult;

pub async fn graphql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return rejected(RequestErrors::message(format!(
                "the body must be a GraphQL request in JSON: {err}"
            )))
        }
    };
    let prepared = match state.engine.prepare(request) {
        Ok(prepared) => prepared,
        Err(errors) => {
            tracing::debug!("rejected GraphQL request: {:?}", errors.errors);
            return rejected(errors);
        }
    };
    tracing::debug!(operation = prepared.operation_name(), "GraphQL request");
    let urls = Urls::new(base_url(&headers), state.signer.clone());
    let engine = state.engine.clone();
    let files = state.store.files().clone();
    let tuning = state.tuning;
    let is_mutation = prepared.is_mutation;
    let execute = move |conn: &Connection| -> StoreResult<_> {
        let ctx = Ctx {
            conn,
            urls: &urls,
            files: &files,
            tuning,
        };
        Ok(engine.execute(&prepared, &Root::new(&ctx, is_mutation)))
    };
    // Queries read one consistent snapshot on a reader; mutations run on the single writer.
    let result = if is_mutation {
        state.store.write(execute).await
    } else {
        state.store.read(execute).await
    };
    match result {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(errors)) => rejected(errors),
        Err(err) => store_error_response(err).into_response(),
    }
}

/// Requests that cannot run at all (unparsable, invalid against the schema, bad variables) get
/// 400, which W&B clients do not retry.
fn rejected(errors: RequestErrors) -> Response {
    (StatusCode::BAD_REQUEST, Json(errors)).into_response()
}
