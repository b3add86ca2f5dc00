//! File bodies: signed upload and download URLs, and the authenticated artifact download paths
//! the SDK builds itself when it has no URL.
//!
//! Layout: `{base}/storage/{kind}/{id}/{signature}` for PUT and
//! `{base}/storage/{kind}/{id}/{signature}/{file name}` for GET, where `kind` is `run-file`
//! (id: the file's number), `blob` (id: hex MD5 of the content; artifact files) or `manifest`
//! (id: the artifact version's number), and the signature is an HMAC of method, kind and id.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use tokio::io::AsyncWriteExt as _;

use super::{error_response, store_error_response, AppState};
use crate::server::signing::Signer;
use crate::server::store::{artifacts, files, StoreError};

const RUN_FILE: &str = "run-file";
const BLOB: &str = "blob";
const MANIFEST: &str = "manifest";

/// Builds the storage URLs handed out in GraphQL answers.
pub struct Urls {
    base: String,
    signer: Arc<Signer>,
}

impl Urls {
    pub fn new(base: String, signer: Arc<Signer>) -> Urls {
        Urls { base, signer }
    }

    fn url(&self, method: &str, kind: &str, id: &str, name: Option<&str>) -> String {
        let signature = self.signer.sign(&signed_message(method, kind, id));
        let mut url = format!("{}/storage/{kind}/{id}/{signature}", self.base);
        if let Some(name) = name {
            url.push('/');
            url.push_str(&url_safe_name(name));
        }
        url
    }

    pub fn run_file_upload(&self, file_id: i64) -> String {
        self.url("PUT", RUN_FILE, &file_id.to_string(), None)
    }

    pub fn run_file_download(&self, file_id: i64, name: &str) -> String {
        self.url("GET", RUN_FILE, &file_id.to_string(), Some(name))
    }

    pub fn blob_upload(&self, md5_hex: &str) -> String {
        self.url("PUT", BLOB, md5_hex, None)
    }

    pub fn blob_download(&self, md5_hex: &str, name: &str) -> String {
        self.url("GET", BLOB, md5_hex, Some(name))
    }

    pub fn manifest_upload(&self, artifact_id: i64) -> String {
        self.url("PUT", MANIFEST, &artifact_id.to_string(), None)
    }

    pub fn manifest_download(&self, artifact_id: i64) -> String {
        self.url(
            "GET",
            MANIFEST,
            &artifact_id.to_string(),
            Some("wandb_manifest.json"),
        )
    }
}

fn signed_message(method: &str, kind: &str, id: &str) -> String {
    format!("{method} {kind} {id}")
}

/// The file name at the end of download URLs only helps humans and `wget`; keep it to
/// characters that need no escaping.
fn url_safe_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn forbidden() -> Response {
    error_response(StatusCode::FORBIDDEN, "invalid or expired signed URL").into_response()
}

fn not_found(what: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, what).into_response()
}

/// A body streamed into a temporary file, with its MD5 and size.
struct Received {
    path: PathBuf,
    md5: [u8; 16],
    size: i64,
}

impl Received {
    fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    fn md5_base64(&self) -> String {
        STANDARD.encode(self.md5)
    }

    /// Moves the file into place, replacing what was there.
    async fn persist(self, target: &Path) -> std::io::Result<()> {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&self.path, target).await
    }

    async fn discard(self) {
        if let Err(err) = tokio::fs::remove_file(&self.path).await {
            tracing::warn!("cannot remove {}: {err}", self.path.display());
        }
    }
}

async fn receive(tmp_dir: &Path, body: Body) -> std::io::Result<Received> {
    let name: u128 = rand::random();
    let path = tmp_dir.join(format!("upload-{name:032x}"));
    let mut file = tokio::fs::File::create(&path).await?;
    let mut hasher = Md5::new();
    let mut size = 0i64;
    let mut stream = body.into_data_stream();
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            hasher.update(&chunk);
            size += chunk.len() as i64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await
    }
    .await;
    if let Err(err) = result {
        drop(file);
        let _ = tokio::fs::remove_file(&path).await;
        return Err(err);
    }
    Ok(Received {
        path,
        md5: hasher.finalize().into(),
        size,
    })
}

/// `PUT` of a run file, artifact blob or manifest to its signed URL.
pub async fn upload(
    State(state): State<AppState>,
    UrlPath((kind, id, signature)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state
        .signer
        .verify(&signed_message("PUT", &kind, &id), &signature)
    {
        return forbidden();
    }
    let received = match receive(&state.store.files().tmp(), body).await {
        Ok(received) => received,
        Err(err) => {
            tracing::warn!("upload failed: {err}");
            return error_response(StatusCode::BAD_REQUEST, &format!("upload failed: {err}"))
                .into_response();
        }
    };
    // Cloud storage rejects a body whose Content-MD5 does not match; so do we.
    let content_md5 = headers.get("content-md5").and_then(|v| v.to_str().ok());
    if content_md5.is_some_and(|expected| expected != received.md5_base64()) {
        received.discard().await;
        return error_response(
            StatusCode::BAD_REQUEST,
            "the body does not match its Content-MD5",
        )
        .into_response();
    }
    let result = match kind.as_str() {
        RUN_FILE => store_run_file(&state, &id, received).await,
        BLOB => store_blob(&state, &id, received).await,
        MANIFEST => store_manifest(&state, &id, received).await,
        _ => {
            received.discard().await;
            return not_found("unknown storage kind");
        }
    };
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => store_error_response(err).into_response(),
    }
}

fn parse_id(id: &str) -> Result<i64, StoreError> {
    id.parse()
        .map_err(|_| StoreError::Invalid(format!("{id:?} is not a storage id")))
}

async fn store_run_file(state: &AppState, id: &str, received: Received) -> Result<(), StoreError> {
    let file_id = parse_id(id)?;
    let md5 = received.md5_base64();
    let size = received.size;
    received
        .persist(&state.store.files().run_file(file_id))
        .await?;
    state
        .store
        .write(move |conn| files::mark_stored(conn, file_id, size, &md5))
        .await
}

async fn store_blob(state: &AppState, md5_hex: &str, received: Received) -> Result<(), StoreError> {
    if received.md5_hex() != md5_hex {
        received.discard().await;
        return Err(StoreError::Invalid(
            "the uploaded content does not match the MD5 it was announced with".into(),
        ));
    }
    write_blob(state, received).await.map(|_| ())
}

/// Stores content-addressed bytes; returns their hex MD5. A failed upload can leave an
/// unreferenced blob behind, which is harmless: blobs are only served through references.
async fn write_blob(state: &AppState, received: Received) -> Result<String, StoreError> {
    let hex = received.md5_hex();
    let size = received.size;
    received.persist(&state.store.files().blob(&hex)).await?;
    let key = hex.clone();
    state
        .store
        .write(move |conn| files::record_blob(conn, &key, size))
        .await?;
    Ok(hex)
}

async fn store_manifest(state: &AppState, id: &str, received: Received) -> Result<(), StoreError> {
    let artifact_id = parse_id(id)?;
    let base64 = received.md5_base64();
    let hex = write_blob(state, received).await?;
    state
        .store
        .write(move |conn| artifacts::manifest_uploaded(conn, artifact_id, &hex, &base64))
        .await
}

/// `GET` of a signed download URL.
pub async fn download(
    State(state): State<AppState>,
    UrlPath((kind, id, signature, _name)): UrlPath<(String, String, String, String)>,
) -> Response {
    if !state
        .signer
        .verify(&signed_message("GET", &kind, &id), &signature)
    {
        return forbidden();
    }
    let located = match kind.as_str() {
        RUN_FILE => locate_run_file(&state, &id).await,
        BLOB if is_md5_hex(&id) => Ok(Some((
            state.store.files().blob(&id),
            "application/octet-stream",
        ))),
        MANIFEST => locate_manifest(&state, &id).await,
        _ => Ok(None),
    };
    match located {
        Ok(Some((path, content_type))) => serve_file(&path, content_type).await,
        Ok(None) => not_found("no such file"),
        Err(err) => store_error_response(err).into_response(),
    }
}

async fn locate_run_file(
    state: &AppState,
    id: &str,
) -> Result<Option<(PathBuf, &'static str)>, StoreError> {
    let file_id = parse_id(id)?;
    let row = state
        .store
        .read(move |conn| files::run_file(conn, file_id))
        .await?;
    Ok(row.map(|row| {
        (
            state.store.files().run_file(row.id),
            files::guess_mimetype(&row.name),
        )
    }))
}

async fn locate_manifest(
    state: &AppState,
    id: &str,
) -> Result<Option<(PathBuf, &'static str)>, StoreError> {
    let artifact_id = parse_id(id)?;
    let artifact = state
        .store
        .read(move |conn| artifacts::artifact_by_id(conn, artifact_id))
        .await?;
    Ok(artifact
        .and_then(|a| a.manifest_md5)
        .map(|md5| (state.store.files().blob(&md5), "application/json")))
}

/// `GET {base}/artifactsV2/{region}/{entity}/{project}/{collection}/[{artifact id}/]{birth id}/{md5}/{name}`,
/// the URL the SDK builds for artifact files when it has no signed URL (authenticated).
pub async fn artifact_v2_download(
    State(state): State<AppState>,
    UrlPath((_region, _entity, _project, _collection, rest)): UrlPath<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> Response {
    let mut parts = rest.rsplit('/');
    let _name = parts.next();
    match parts.next() {
        Some(md5) => serve_blob(&state, md5).await,
        None => not_found("no such file"),
    }
}

/// `GET {base}/artifacts/{entity}/{md5}`, the V1 layout of the same (authenticated).
pub async fn artifact_v1_download(
    State(state): State<AppState>,
    UrlPath((_entity, md5)): UrlPath<(String, String)>,
) -> Response {
    serve_blob(&state, &md5).await
}

async fn serve_blob(state: &AppState, md5: &str) -> Response {
    if !is_md5_hex(md5) {
        return not_found("no such file");
    }
    let key = md5.to_owned();
    match state
        .store
        .read(move |conn| files::blob_exists(conn, &key))
        .await
    {
        Ok(true) => serve_file(&state.store.files().blob(md5), "application/octet-stream").await,
        Ok(false) => not_found("no such file"),
        Err(err) => store_error_response(err).into_response(),
    }
}

async fn serve_file(path: &Path, content_type: &'static str) -> Response {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return not_found("no such file"),
        Err(err) => {
            tracing::error!("cannot open {}: {err}", path.display());
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file")
                .into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(err) => {
            tracing::error!("cannot stat {}: {err}", path.display());
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file")
                .into_response();
        }
    };
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), file)))
    });
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_url_safe() {
        assert_eq!(url_safe_name("media/images/a b.png"), "a_b.png");
        assert_eq!(url_safe_name("model.pt"), "model.pt");
        assert_eq!(url_safe_name("%%"), "__");
    }

    #[test]
    fn md5_ids_are_checked() {
        assert!(is_md5_hex("0f343b0931126a20f133d67c2b018a3b"));
        assert!(!is_md5_hex("0F343B0931126A20F133D67C2B018A3B"));
        assert!(!is_md5_hex("../../etc/passwd"));
    }
}
