//! A loopback GitHub REST API for tests and `mlwf bench analyze`: pull requests by head,
//! paginated issue comments (with `Link` headers), comment create/update/delete, labels. It
//! checks the token and records every request, so tests assert on what was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{bind_loopback, serve};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
}

#[derive(Default)]
struct Repo {
    /// PR number → head branch.
    pulls: BTreeMap<u64, String>,
    comments: BTreeMap<u64, FakeComment>,
    next_comment: u64,
    labels: BTreeSet<String>,
    issue_labels: HashMap<u64, BTreeSet<String>>,
    requests: Vec<Recorded>,
}

struct Inner {
    owner: String,
    repo: String,
    token: String,
    url: String,
    /// Delay on every comment listing, to widen race windows in concurrency tests.
    list_latency: Mutex<Duration>,
    state: Mutex<Repo>,
}

/// A running fake GitHub for one repository.
#[derive(Clone)]
pub struct FakeGitHub {
    inner: Arc<Inner>,
}

impl FakeGitHub {
    /// Serves the fake for `owner/repo` on a loopback port; requests must carry `token`.
    pub async fn start(owner: &str, repo: &str, token: &str) -> std::io::Result<Self> {
        Self::start_under("", owner, repo, token).await
    }

    /// The same under a path prefix, as GitHub Enterprise serves its API (`/api/v3`).
    pub async fn start_under(
        prefix: &str,
        owner: &str,
        repo: &str,
        token: &str,
    ) -> std::io::Result<Self> {
        let (listener, base) = bind_loopback().await?;
        let url = format!("{base}{prefix}");
        let inner = Arc::new(Inner {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            token: token.to_owned(),
            url,
            list_latency: Mutex::new(Duration::ZERO),
            state: Mutex::new(Repo {
                next_comment: 1_000,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list_pulls))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                get(list_comments).post(create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                patch(update_comment).delete(delete_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels",
                get(issue_labels).post(add_labels),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels/{name}",
                delete(remove_label),
            )
            .route("/repos/{owner}/{repo}/labels", post(create_label))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(inner.clone(), guard))
            .with_state(inner.clone());
        let app = if prefix.is_empty() {
            app
        } else {
            Router::new().nest(prefix, app)
        };
        serve(listener, app);
        Ok(Self { inner })
    }

    /// The API base URL (`GITHUB_API_URL`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Opens PR `number` with head `branch`.
    pub fn open_pr(&self, number: u64, branch: &str) {
        self.state().pulls.insert(number, branch.to_owned());
    }

    /// Adds a comment as someone else would.
    pub fn add_comment(&self, issue: u64, body: &str) -> u64 {
        let mut state = self.state();
        state.next_comment += 1;
        let id = state.next_comment;
        state.comments.insert(
            id,
            FakeComment {
                id,
                issue,
                body: body.to_owned(),
            },
        );
        id
    }

    pub fn comments(&self, issue: u64) -> Vec<FakeComment> {
        self.state()
            .comments
            .values()
            .filter(|c| c.issue == issue)
            .cloned()
            .collect()
    }

    pub fn labels(&self, issue: u64) -> Vec<String> {
        self.state()
            .issue_labels
            .get(&issue)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn repo_labels(&self) -> Vec<String> {
        self.state().labels.iter().cloned().collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn set_list_latency(&self, latency: Duration) {
        *lock(&self.inner.list_latency) = latency;
    }

    fn state(&self) -> MutexGuard<'_, Repo> {
        lock(&self.inner.state)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

type Shared = State<Arc<Inner>>;

/// Records the request and checks the repository and the token, as GitHub would.
async fn guard(
    State(inner): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    lock(&inner.state).requests.push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "));
    if token != Some(inner.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let prefix = format!("/repos/{}/{}/", inner.owner, inner.repo);
    if !parts.uri.path().starts_with(&prefix) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn comment_json(inner: &Inner, c: &FakeComment) -> Value {
    json!({
        "id": c.id,
        "node_id": format!("IC_{}", c.id),
        "url": format!("{}/repos/{}/{}/issues/comments/{}", inner.url, inner.owner, inner.repo, c.id),
        "html_url": format!("https://github.test/{}/{}/pull/{}#issuecomment-{}", inner.owner, inner.repo, c.issue, c.id),
        "body": c.body,
        "user": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
    })
}

async fn list_pulls(
    State(inner): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let head = query.get("head").cloned().unwrap_or_default();
    let state = lock(&inner.state);
    let pulls: Vec<Value> = state
        .pulls
        .iter()
        .filter(|(_, branch)| head.is_empty() || head == format!("{}:{branch}", inner.owner))
        .map(|(number, branch)| {
            json!({
                "number": number,
                "state": "open",
                "html_url": format!("https://github.test/{}/{}/pull/{number}", inner.owner, inner.repo),
                "head": {"ref": branch, "label": format!("{}:{branch}", inner.owner)},
            })
        })
        .collect();
    Json(pulls).into_response()
}

async fn list_comments(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
    Query(query): Query<HashMap<String, String>>,
    uri: Uri,
) -> Response {
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let (items, count) = {
        let state = lock(&inner.state);
        let all: Vec<&FakeComment> = state
            .comments
            .values()
            .filter(|c| c.issue == number)
            .collect();
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|c| comment_json(&inner, c))
            .collect();
        (items, all.len())
    };
    // The answer shows the comments as they were when asked, however late it arrives.
    let latency = *lock(&inner.list_latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let last = count.div_ceil(per_page).max(1);
    let mut headers = HeaderMap::new();
    let link = |p: usize, rel: &str| {
        format!(
            "<{}{}?per_page={per_page}&page={p}>; rel=\"{rel}\"",
            inner.url,
            uri.path()
        )
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        if let Ok(value) = links.join(", ").parse() {
            headers.insert(header::LINK, value);
        }
    }
    (headers, Json(items)).into_response()
}

fn body_field(bytes: &Bytes) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get("body")?.as_str().map(str::to_owned)
}

/// A comment's body, or GitHub's message (a 422) for a missing or oversized one.
fn comment_body(bytes: &Bytes) -> Result<String, &'static str> {
    let body = body_field(bytes).ok_or("body is missing")?;
    if body.chars().count() > 65_536 {
        return Err("body is too long (maximum is 65536 characters)");
    }
    Ok(body)
}

async fn create_comment(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
    bytes: Bytes,
) -> Response {
    let body = match comment_body(&bytes) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let mut state = lock(&inner.state);
    if !state.pulls.contains_key(&number) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    state.next_comment += 1;
    let id = state.next_comment;
    let comment = FakeComment {
        id,
        issue: number,
        body,
    };
    let json = comment_json(&inner, &comment);
    state.comments.insert(id, comment);
    (StatusCode::CREATED, Json(json)).into_response()
}

async fn update_comment(
    State(inner): Shared,
    Path((_, _, id)): Path<(String, String, u64)>,
    bytes: Bytes,
) -> Response {
    let body = match comment_body(&bytes) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let mut state = lock(&inner.state);
    let Some(comment) = state.comments.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    comment.body = body;
    let comment = comment.clone();
    Json(comment_json(&inner, &comment)).into_response()
}

async fn delete_comment(
    State(inner): Shared,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    match lock(&inner.state).comments.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn labels_json(labels: &BTreeSet<String>) -> Value {
    json!(labels
        .iter()
        .map(|name| json!({"name": name, "color": "ededed"}))
        .collect::<Vec<_>>())
}

async fn issue_labels(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
) -> Response {
    let state = lock(&inner.state);
    let empty = BTreeSet::new();
    Json(labels_json(
        state.issue_labels.get(&number).unwrap_or(&empty),
    ))
    .into_response()
}

async fn add_labels(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let names: Vec<String> = body["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut state = lock(&inner.state);
    for name in &names {
        // GitHub creates unknown labels on the fly.
        state.labels.insert(name.clone());
    }
    let labels = state.issue_labels.entry(number).or_default();
    labels.extend(names);
    let labels = labels.clone();
    Json(labels_json(&labels)).into_response()
}

async fn remove_label(
    State(inner): Shared,
    Path((_, _, number, name)): Path<(String, String, u64, String)>,
) -> Response {
    let mut state = lock(&inner.state);
    let removed = state
        .issue_labels
        .get_mut(&number)
        .is_some_and(|l| l.remove(&name));
    if removed {
        Json(labels_json(&state.issue_labels[&number])).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "Label does not exist")
    }
}

async fn create_label(State(inner): Shared, Json(body): Json<Value>) -> Response {
    let Some(name) = body["name"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name is missing");
    };
    let mut state = lock(&inner.state);
    if !state.labels.insert(name.to_owned()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    (
        StatusCode::CREATED,
        Json(json!({"name": name, "color": body["color"], "description": body["description"]})),
    )
        .into_response()
}
