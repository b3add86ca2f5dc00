//! `POST /files/{entity}/{project}/{run}/file_stream`: history, events, console output and
//! summary of a live run, plus its heartbeat and final state.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{error_response, store_error_response, AppState};
use crate::server::store::lines::{apply_file_stream, FileStreamRequest};
use crate::server::store::runs::require_run;

pub async fn file_stream(
    State(state): State<AppState>,
    Path((entity, project, run)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // FILESTREAM_GZIP is not advertised, so compressed bodies are a client error.
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    if !encoding.eq_ignore_ascii_case("identity") {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Encoding {encoding} is not supported"),
        )
        .into_response();
    }
    let request: FileStreamRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("invalid file_stream body: {err}"),
            )
            .into_response()
        }
    };
    let result = state
        .store
        .write(move |conn| {
            let run = require_run(conn, &entity, &project, &run)?;
            apply_file_stream(conn, &run, &request)
        })
        .await;
    match result {
        // wandb-core only reads `stopped`; the rest mirrors what older clients parsed.
        Ok(stopped) => Json(serde_json::json!({
            "exitcode": null,
            "limits": {},
            "stopped": stopped,
        }))
        .into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}
