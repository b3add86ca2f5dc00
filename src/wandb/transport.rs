//! HTTP transport: GraphQL, file_stream posts and signed-URL transfers, with the official
//! client's retry policy.
//!
//! Two HTTP clients: one sends `Authorization: Basic api:<key>` and is used only for URLs under
//! the base URL; the other sends no credentials and serves signed storage URLs, which must not
//! see the key (and whose signature would be broken by an extra auth header on some stores).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use md5::{Digest, Md5};
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER,
};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{Error, Result};
use super::graphql::{Operation, UPSERT_BUCKET};
use super::settings::{ApiKey, Settings, Tuning};
use crate::retry::{is_retryable_status, parse_retry_after, RetryPolicy};

pub(crate) const USER_AGENT: &str = concat!("mlwf/", env!("CARGO_PKG_VERSION"));

/// Longest server error body quoted in an error message.
const MAX_ERROR_BODY: usize = 500;
/// Read size when streaming a file into an upload.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// What a PUT sends: bytes in memory, or a file streamed from disk on every attempt.
pub(crate) enum UploadBody<'a> {
    Bytes(&'a [u8]),
    File { path: &'a Path, len: u64 },
}

/// Why one attempt failed, before the retry loop decides whether to try again.
enum Failure {
    Network(reqwest::Error),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    Fatal(Error),
}

pub(crate) struct Transport {
    base: Url,
    authed: reqwest::Client,
    plain: reqwest::Client,
    tuning: Tuning,
}

impl Transport {
    pub(crate) fn new(settings: &Settings) -> Result<Self> {
        let mut auth_headers = HeaderMap::new();
        if let Some(key) = &settings.api_key {
            auth_headers.insert(AUTHORIZATION, basic_auth(key)?);
        }
        let build = |headers: HeaderMap| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .default_headers(headers)
                .connect_timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| Error::Settings(format!("cannot build the HTTP client: {e}")))
        };
        Ok(Self {
            base: settings.base_url.clone(),
            authed: build(auth_headers)?,
            plain: build(HeaderMap::new())?,
            tuning: settings.tuning.clone(),
        })
    }

    pub(crate) fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// `{base}/seg1/seg2/...`, each segment percent-encoded.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// An error for a GraphQL answer that lacks what the operation needs.
    pub(crate) fn unexpected(&self, op: &Operation, reason: impl Into<String>) -> Error {
        Error::Protocol {
            op: op.name.into(),
            url: redact(&self.endpoint(&["graphql"])),
            reason: reason.into(),
        }
    }

    /// Same origin and under the base path: the only URLs that may see the API key.
    fn is_under_base(&self, url: &Url) -> bool {
        let prefix = self.base.path().trim_end_matches('/');
        let path = url.path();
        url.origin() == self.base.origin()
            && (path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    fn request(&self, method: Method, url: &Url, policy: &RetryPolicy) -> RequestBuilder {
        let client = if self.is_under_base(url) {
            &self.authed
        } else {
            &self.plain
        };
        let builder = client.request(method, url.clone());
        match policy.attempt_timeout {
            Some(timeout) => builder.timeout(timeout),
            None => builder,
        }
    }

    /// Runs a GraphQL operation and decodes its `data`. GraphQL `errors` become an error even
    /// when they come with HTTP 200.
    pub(crate) async fn graphql<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: Value,
    ) -> Result<T> {
        let url = self.endpoint(&["graphql"]);
        let body = serde_json::to_vec(&serde_json::json!({
            "query": op.document,
            "variables": variables,
            "operationName": op.name,
        }))
        .map_err(|e| Error::InvalidInput(format!("{}: cannot encode variables: {e}", op.name)))?;
        let policy = &self.tuning.graphql_retry;
        // wandb-core retries 409 for UpsertBucket only: two upserts of one run may race.
        let retry_conflict = op.name == UPSERT_BUCKET.name;
        tracing::debug!(operation = op.name, "graphql request");
        let (url_ref, body) = (&url, &body);
        let bytes = self
            .with_retries(op.name, &url, policy, retry_conflict, move || async move {
                let request = self
                    .request(Method::POST, url_ref, policy)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                read_body(send(request).await?).await
            })
            .await?;
        decode_graphql(op.name, &url, &bytes)
    }

    /// Posts a JSON body and returns the response parsed leniently: a body that is not JSON
    /// gives `Value::Null` (the file_stream answer carries nothing essential).
    pub(crate) async fn post_json(
        &self,
        op: &str,
        url: &Url,
        body: &[u8],
        policy: &RetryPolicy,
    ) -> Result<Value> {
        let bytes = self
            .with_retries(op, url, policy, false, move || async move {
                let request = self
                    .request(Method::POST, url, policy)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
                read_body(send(request).await?).await
            })
            .await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::debug!(op, error = %e, "response body is not JSON; ignored");
            Value::Null
        }))
    }

    /// PUTs to a (usually signed) upload URL with the headers the server asked for.
    pub(crate) async fn put(
        &self,
        op: &str,
        url: &Url,
        headers: &[(String, String)],
        body: UploadBody<'_>,
    ) -> Result<()> {
        let policy = &self.tuning.transfer_retry;
        let headers = &header_map(op, url, headers)?;
        let body = &body;
        self.with_retries(op, url, policy, false, move || async move {
            let request = self
                .request(Method::PUT, url, policy)
                .headers(headers.clone());
            let request = match body {
                UploadBody::Bytes(bytes) => request.body(bytes.to_vec()),
                UploadBody::File { path, len } => {
                    let file = tokio::fs::File::open(path).await.map_err(|e| {
                        Failure::Fatal(Error::io("cannot open file to upload", *path, e))
                    })?;
                    // Signed PUT URLs (S3, GCS) refuse chunked bodies, so the length is explicit.
                    request.header(CONTENT_LENGTH, *len).body(file_body(file))
                }
            };
            send(request).await.map(drop)
        })
        .await
    }

    /// GETs a URL into memory.
    pub(crate) async fn get_bytes(&self, op: &str, url: &Url) -> Result<Vec<u8>> {
        let policy = &self.tuning.transfer_retry;
        self.with_retries(op, url, policy, false, move || async move {
            read_body(send(self.request(Method::GET, url, policy)).await?).await
        })
        .await
    }

    /// GETs a URL into `dest` (created or truncated) and returns the base64 MD5 of the bytes.
    pub(crate) async fn download(&self, op: &str, url: &Url, dest: &Path) -> Result<String> {
        let policy = &self.tuning.transfer_retry;
        self.with_retries(op, url, policy, false, move || async move {
            let mut response = send(self.request(Method::GET, url, policy)).await?;
            let io_err = |e| Failure::Fatal(Error::io("cannot write download", dest, e));
            let mut file = tokio::fs::File::create(dest).await.map_err(io_err)?;
            let mut hasher = Md5::new();
            while let Some(chunk) = response.chunk().await.map_err(Failure::Network)? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io_err)?;
            }
            file.flush().await.map_err(io_err)?;
            Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's attempts run out.
    async fn with_retries<T, F, Fut>(
        &self,
        op: &str,
        url: &Url,
        policy: &RetryPolicy,
        retry_conflict: bool,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let last = attempts >= policy.max_attempts;
            let (retry_after, reason) = match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Network(source) => {
                    if last {
                        let source = source.without_url();
                        return Err(Error::Network {
                            op: op.into(),
                            url: redact(url),
                            attempts,
                            source,
                        });
                    }
                    (None, source.without_url().to_string())
                }
                Failure::Status { status: 401, .. } => {
                    return Err(Error::Unauthorized {
                        op: op.into(),
                        url: redact(url),
                    })
                }
                Failure::Status {
                    status,
                    retry_after,
                    body,
                } => {
                    if last || !is_retryable_status(status, retry_conflict) {
                        return Err(Error::Http {
                            op: op.into(),
                            url: redact(url),
                            status,
                            attempts,
                            body,
                        });
                    }
                    (retry_after, format!("HTTP {status}"))
                }
            };
            let wait = policy.wait_before(attempts - 1, retry_after);
            tracing::warn!(
                op,
                url = %redact(url),
                attempt = attempts,
                of = policy.max_attempts,
                wait_ms = wait.as_millis() as u64,
                %reason,
                "W&B request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn basic_auth(key: &ApiKey) -> Result<HeaderValue> {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("api:{}", key.expose_secret()));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
        Error::Settings("the API key contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn header_map(op: &str, url: &Url, headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = || Error::Protocol {
            op: op.into(),
            url: redact(url),
            reason: format!("the server sent an unusable upload header {name:?}"),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

/// Splits the server's `"Key:Value"` upload headers at the first colon, trimming the value.
pub(crate) fn parse_upload_headers(raw: &[String]) -> Vec<(String, String)> {
    raw.iter()
        .filter_map(|h| {
            let (name, value) = h.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

async fn send(request: RequestBuilder) -> Result<Response, Failure> {
    let response = request.send().await.map_err(Failure::Network)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = response.text().await.unwrap_or_default();
    Err(Failure::Status {
        status: status.as_u16(),
        retry_after,
        body: truncate(body.trim()),
    })
}

async fn read_body(response: Response) -> Result<Vec<u8>, Failure> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(Failure::Network)
}

fn file_body(file: tokio::fs::File) -> reqwest::Body {
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((buf, file)))
    });
    reqwest::Body::wrap_stream(chunks)
}

fn decode_graphql<T: DeserializeOwned>(op: &str, url: &Url, bytes: &[u8]) -> Result<T> {
    let protocol = |reason: String| Error::Protocol {
        op: op.into(),
        url: redact(url),
        reason,
    };
    let mut response: serde_json::Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|e| protocol(format!("the body is not a GraphQL JSON response: {e}")))?;
    if let Some(errors) = response
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        return Err(Error::GraphQl {
            op: op.into(),
            url: redact(url),
            messages: graphql_messages(errors),
        });
    }
    match response.remove("data") {
        None | Some(Value::Null) => Err(protocol("no data and no errors".into())),
        Some(data) => {
            serde_json::from_value(data).map_err(|e| protocol(format!("cannot decode data: {e}")))
        }
    }
}

fn graphql_messages(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|error| {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)");
            match error.get("path").and_then(Value::as_array) {
                Some(path) if !path.is_empty() => {
                    let path: Vec<String> = path
                        .iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect();
                    format!("{message} (at {})", path.join("."))
                }
                _ => message.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The URL without credentials, query string or fragment: signed URLs carry secrets there.
pub(crate) fn redact(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(base: &str) -> Transport {
        Transport::new(&Settings::new(base, Some(ApiKey::new("k"))).unwrap()).unwrap()
    }

    #[test]
    fn credentials_go_only_under_the_base_url() {
        let t = transport("http://host:8080/wandb");
        let yes = [
            "http://host:8080/wandb/graphql",
            "http://host:8080/wandb/files/e/p/r/file_stream",
        ];
        let no = [
            "https://host:8080/wandb/graphql",
            "http://host:8081/wandb/graphql",
            "http://other:8080/wandb/graphql",
            "http://host:8080/elsewhere/x",
            "https://storage.googleapis.com/bucket/x?X-Goog-Signature=s",
        ];
        for url in yes {
            assert!(t.is_under_base(&Url::parse(url).unwrap()), "{url}");
        }
        for url in no {
            assert!(!t.is_under_base(&Url::parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn endpoints_extend_the_base_path_and_escape_segments() {
        let t = transport("http://host/base/");
        assert_eq!(
            t.endpoint(&["graphql"]).as_str(),
            "http://host/base/graphql"
        );
        assert_eq!(
            t.endpoint(&["files", "my team", "p", "r1", "file_stream"])
                .as_str(),
            "http://host/base/files/my%20team/p/r1/file_stream"
        );
    }

    #[test]
    fn redaction_drops_query_and_userinfo() {
        let url = Url::parse("https://u:pw@s3.example/bucket/obj?X-Amz-Signature=abc#f").unwrap();
        assert_eq!(redact(&url), "https://s3.example/bucket/obj");
    }

    #[test]
    fn upload_headers_split_at_the_first_colon() {
        let raw = vec![
            "Content-MD5:DzQ7CTESaiDxM9Z8KwGKOw==".to_owned(),
            "x-amz-meta: a:b ".into(),
            "junk".into(),
        ];
        assert_eq!(
            parse_upload_headers(&raw),
            [
                (
                    "Content-MD5".to_owned(),
                    "DzQ7CTESaiDxM9Z8KwGKOw==".to_owned()
                ),
                ("x-amz-meta".into(), "a:b".into())
            ]
        );
    }

    #[test]
    fn graphql_errors_are_surfaced_with_paths() {
        let url = Url::parse("http://h/graphql").unwrap();
        let body = br#"{"data":null,"errors":[{"message":"boom","path":["project","run",0]},{"message":"two"}]}"#;
        let err = decode_graphql::<Value>("Run", &url, body).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Run") && text.contains("boom (at project.run.0); two"),
            "{text}"
        );
        let err = decode_graphql::<Value>("Run", &url, br#"{"data":null}"#).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
        let ok: Value = decode_graphql("Run", &url, br#"{"data":{"a":1},"errors":[]}"#).unwrap();
        assert_eq!(ok["a"], 1);
    }
}
