//! A loopback GitHub REST API for tests and `mlwf bench analyze`: pull requests (list by head,
//! create, read with mergeability, squash-merge, mark ready through GraphQL), issues, paginated
//! issue comments (with `Link` headers), comment create/update/delete, labels, check runs and
//! releases. Given a bare git repository (`with_git`) it is that repository's GitHub: heads and
//! mergeability come from it, and a merge writes the squash commit into it. Actions settings:
//! sealed secrets (the fake holds the private key, so tests read them back), variables, labels,
//! `repository_dispatch` (recorded) and the workflow runs a dispatch may start. It checks the
//! token and records every request, so tests assert on what was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
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

/// A pull request as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakePull {
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
    pub open: bool,
    pub merged: bool,
}

impl FakePull {
    fn new(head: &str, base: &str, title: &str) -> Self {
        Self {
            head: head.to_owned(),
            base: base.to_owned(),
            title: title.to_owned(),
            body: String::new(),
            draft: false,
            open: true,
            merged: false,
        }
    }
}

/// A release as it was published.
#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub tag: String,
    pub name: String,
    pub body: String,
}

#[derive(Default)]
struct Repo {
    pulls: BTreeMap<u64, FakePull>,
    /// Issue number → (title, body); issues and PRs share one numbering, as on GitHub.
    issues: BTreeMap<u64, (String, String)>,
    next_number: u64,
    /// Commit → check runs `(name, status, conclusion)`.
    checks: HashMap<String, Vec<(String, String, Option<String>)>>,
    releases: Vec<FakeRelease>,
    comments: BTreeMap<u64, FakeComment>,
    next_comment: u64,
    /// Label → (colour, description).
    labels: BTreeMap<String, (String, String)>,
    issue_labels: HashMap<u64, BTreeSet<String>>,
    requests: Vec<Recorded>,
    /// Actions secret → its sealed value as sent.
    secrets: BTreeMap<String, String>,
    variables: BTreeMap<String, String>,
    dispatches: Vec<Value>,
    /// Conclusion of the completed workflow run each dispatch starts; `None`: no run starts.
    dispatch_conclusion: Option<String>,
    workflow_runs: Vec<Value>,
}

struct Inner {
    owner: String,
    repo: String,
    token: String,
    url: String,
    /// Delay on every comment listing, to widen race windows in concurrency tests.
    list_latency: Mutex<Duration>,
    /// The bare repository this fake is the GitHub of, if any.
    git: Mutex<Option<std::path::PathBuf>>,
    /// The repository's Actions key pair: secrets are sealed to its public half.
    actions_key: crypto_box::SecretKey,
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
            git: Mutex::new(None),
            actions_key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
            state: Mutex::new(Repo {
                next_comment: 1_000,
                next_number: 1,
                ..Default::default()
            }),
        });
        let app = Router::new()
            .route(
                "/repos/{owner}/{repo}/pulls",
                get(list_pulls).post(create_pull),
            )
            .route("/repos/{owner}/{repo}/pulls/{number}", get(read_pull))
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/merge",
                put(merge_pull),
            )
            .route("/repos/{owner}/{repo}/issues/{number}", get(read_issue))
            .route(
                "/repos/{owner}/{repo}/commits/{commit}/check-runs",
                get(check_runs),
            )
            .route("/repos/{owner}/{repo}/releases", post(create_release))
            .route("/graphql", post(graphql))
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
            .route(
                "/repos/{owner}/{repo}/labels/{name}",
                get(read_label).patch(update_label),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets/public-key",
                get(public_key),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets/{name}",
                get(read_secret).put(put_secret),
            )
            .route(
                "/repos/{owner}/{repo}/actions/variables",
                post(create_variable),
            )
            .route(
                "/repos/{owner}/{repo}/actions/variables/{name}",
                get(read_variable).patch(update_variable),
            )
            .route("/repos/{owner}/{repo}/dispatches", post(dispatch))
            .route("/repos/{owner}/{repo}/actions/runs", get(workflow_runs))
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

    /// Makes this fake the GitHub of the bare repository `bare`: PR heads, mergeability and
    /// merges are that repository's.
    pub fn with_git(self, bare: &std::path::Path) -> Self {
        *lock(&self.inner.git) = Some(bare.to_owned());
        self
    }

    /// Opens PR `number` with head `branch` into `main`.
    pub fn open_pr(&self, number: u64, branch: &str) {
        let mut state = self.state();
        state
            .pulls
            .insert(number, FakePull::new(branch, "main", branch));
        state.next_number = state.next_number.max(number + 1);
    }

    /// Opens an issue as someone else would; returns its number.
    pub fn open_issue(&self, title: &str, body: &str) -> u64 {
        let mut state = self.state();
        let number = state.next_number;
        state.next_number += 1;
        state
            .issues
            .insert(number, (title.to_owned(), body.to_owned()));
        number
    }

    /// Every PR, by number.
    pub fn pulls(&self) -> BTreeMap<u64, FakePull> {
        self.state().pulls.clone()
    }

    pub fn releases(&self) -> Vec<FakeRelease> {
        self.state().releases.clone()
    }

    /// Records a check run on `commit`, as a CI app would.
    pub fn add_check(&self, commit: &str, name: &str, status: &str, conclusion: Option<&str>) {
        self.state()
            .checks
            .entry(commit.to_owned())
            .or_default()
            .push((
                name.to_owned(),
                status.to_owned(),
                conclusion.map(str::to_owned),
            ));
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
        self.state().labels.keys().cloned().collect()
    }

    /// An Actions secret, opened with the repository's private key; `None` if unset.
    pub fn secret(&self, name: &str) -> Option<String> {
        use base64::Engine as _;
        let sealed = self.state().secrets.get(name)?.clone();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        let open = self.inner.actions_key.unseal(&bytes).ok()?;
        String::from_utf8(open).ok()
    }

    pub fn variables(&self) -> BTreeMap<String, String> {
        self.state().variables.clone()
    }

    /// Every `repository_dispatch` body received, oldest first.
    pub fn dispatches(&self) -> Vec<Value> {
        self.state().dispatches.clone()
    }

    /// From now on each dispatch starts a workflow run that completes with `conclusion`.
    pub fn complete_dispatched_runs(&self, conclusion: &str) {
        self.state().dispatch_conclusion = Some(conclusion.to_owned());
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
    let path = parts.uri.path();
    if !path.starts_with(&prefix) && !path.ends_with("/graphql") {
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
    let wanted = query.get("state").map(String::as_str).unwrap_or("open");
    let state = lock(&inner.state);
    let pulls: Vec<Value> = state
        .pulls
        .iter()
        .filter(|(_, pull)| head.is_empty() || head == format!("{}:{}", inner.owner, pull.head))
        .filter(|(_, pull)| wanted == "all" || (wanted == "open") == pull.open)
        .map(|(number, pull)| pull_json(&inner, *number, pull, None))
        .collect();
    Json(pulls).into_response()
}

/// A PR as GitHub shows it; `mergeable` only in single-PR reads.
fn pull_json(inner: &Inner, number: u64, pull: &FakePull, mergeable: Option<Value>) -> Value {
    let sha = |branch: &str| {
        git_of(inner)
            .and_then(|bare| git(&bare, &["rev-parse", &format!("refs/heads/{branch}")]).ok())
            .unwrap_or_else(|| format!("{:0>40}", number))
    };
    let mut value = json!({
        "number": number,
        "node_id": format!("PR_{number}"),
        "state": if pull.open { "open" } else { "closed" },
        "title": pull.title,
        "body": pull.body,
        "draft": pull.draft,
        "merged": pull.merged,
        "html_url": format!("https://github.test/{}/{}/pull/{number}", inner.owner, inner.repo),
        "head": {"ref": pull.head, "sha": sha(&pull.head), "label": format!("{}:{}", inner.owner, pull.head)},
        "base": {"ref": pull.base, "sha": sha(&pull.base), "label": format!("{}:{}", inner.owner, pull.base)},
    });
    if let Some(mergeable) = mergeable {
        value["mergeable"] = mergeable;
    }
    value
}

fn git_of(inner: &Inner) -> Option<std::path::PathBuf> {
    lock(&inner.git).clone()
}

/// `git args` in the bare repository; stdout, or stderr as the error.
fn git(bare: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(bare)
        .env("GIT_AUTHOR_NAME", "GitHub")
        .env("GIT_AUTHOR_EMAIL", "noreply@github.test")
        .env("GIT_COMMITTER_NAME", "GitHub")
        .env("GIT_COMMITTER_EMAIL", "noreply@github.test")
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The tree of `head` merged into `base`, `None` when they conflict.
fn merged_tree(bare: &std::path::Path, base: &str, head: &str) -> Option<String> {
    let out = git(
        bare,
        &[
            "merge-tree",
            "--write-tree",
            &format!("refs/heads/{base}"),
            &format!("refs/heads/{head}"),
        ],
    )
    .ok()?;
    out.lines().next().map(str::to_owned)
}

fn json_body(bytes: &Bytes) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

async fn create_pull(State(inner): Shared, bytes: Bytes) -> Response {
    let Some(body) = json_body(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let (head, base, title) = (field("head"), field("base"), field("title"));
    if head.is_empty() || base.is_empty() || title.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    if let Some(bare) = git_of(&inner) {
        for branch in [&head, &base] {
            if git(
                &bare,
                &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
            )
            .is_err()
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: head or base does not exist",
                );
            }
        }
    }
    let mut state = lock(&inner.state);
    if state.pulls.values().any(|p| p.open && p.head == head) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("A pull request already exists for {}:{head}.", inner.owner),
        );
    }
    let number = state.next_number;
    state.next_number += 1;
    let pull = FakePull {
        body: field("body"),
        draft: body["draft"].as_bool().unwrap_or(false),
        ..FakePull::new(&head, &base, &title)
    };
    let json = pull_json(&inner, number, &pull, None);
    state.pulls.insert(number, pull);
    (StatusCode::CREATED, Json(json)).into_response()
}

async fn read_pull(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
) -> Response {
    let Some(pull) = lock(&inner.state).pulls.get(&number).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mergeable = match git_of(&inner) {
        Some(bare) if pull.open => json!(merged_tree(&bare, &pull.base, &pull.head).is_some()),
        Some(_) => Value::Null,
        None => json!(true),
    };
    Json(pull_json(&inner, number, &pull, Some(mergeable))).into_response()
}

async fn merge_pull(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
    bytes: Bytes,
) -> Response {
    let body = json_body(&bytes).unwrap_or_default();
    let Some(pull) = lock(&inner.state).pulls.get(&number).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if !pull.open || pull.draft {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        );
    }
    let sha = match git_of(&inner) {
        Some(bare) => {
            let head = git(&bare, &["rev-parse", &format!("refs/heads/{}", pull.head)])
                .unwrap_or_default();
            if body["sha"].as_str().is_some_and(|wanted| wanted != head) {
                return error(
                    StatusCode::CONFLICT,
                    "Head branch was modified. Review and try the merge again.",
                );
            }
            let Some(tree) = merged_tree(&bare, &pull.base, &pull.head) else {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable",
                );
            };
            let base_ref = format!("refs/heads/{}", pull.base);
            let Ok(base) = git(&bare, &["rev-parse", &base_ref]) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "base branch is gone");
            };
            let title = body["commit_title"]
                .as_str()
                .unwrap_or(&pull.title)
                .to_owned();
            let commit = match git(&bare, &["commit-tree", &tree, "-p", &base, "-m", &title]) {
                Ok(commit) => commit,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            };
            if let Err(e) = git(&bare, &["update-ref", &base_ref, &commit, &base]) {
                return error(StatusCode::CONFLICT, &e);
            }
            commit
        }
        None => format!("{:0>40}", number),
    };
    if let Some(pull) = lock(&inner.state).pulls.get_mut(&number) {
        pull.open = false;
        pull.merged = true;
    }
    Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
        .into_response()
}

async fn read_issue(
    State(inner): Shared,
    Path((_, _, number)): Path<(String, String, u64)>,
) -> Response {
    let state = lock(&inner.state);
    let url = format!(
        "https://github.test/{}/{}/issues/{number}",
        inner.owner, inner.repo
    );
    if let Some((title, body)) = state.issues.get(&number) {
        return Json(json!({"number": number, "title": title, "body": body, "state": "open", "html_url": url})).into_response();
    }
    match state.pulls.get(&number) {
        Some(pull) => Json(json!({"number": number, "title": pull.title, "body": pull.body, "html_url": url, "pull_request": {"url": url}})).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn check_runs(
    State(inner): Shared,
    Path((_, _, commit)): Path<(String, String, String)>,
) -> Response {
    let state = lock(&inner.state);
    let runs: Vec<Value> = state
        .checks
        .get(&commit)
        .into_iter()
        .flatten()
        .map(|(name, status, conclusion)| json!({"name": name, "status": status, "conclusion": conclusion}))
        .collect();
    Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

async fn create_release(State(inner): Shared, bytes: Bytes) -> Response {
    let body = json_body(&bytes).unwrap_or_default();
    let Some(tag) = body["tag_name"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let mut state = lock(&inner.state);
    if state.releases.iter().any(|r| r.tag == tag) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: already_exists",
        );
    }
    let release = FakeRelease {
        tag: tag.to_owned(),
        name: body["name"].as_str().unwrap_or(tag).to_owned(),
        body: body["body"].as_str().unwrap_or_default().to_owned(),
    };
    state.releases.push(release);
    let id = state.releases.len() as u64;
    let url = format!(
        "https://github.test/{}/{}/releases/tag/{tag}",
        inner.owner, inner.repo
    );
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "tag_name": tag, "html_url": url})),
    )
        .into_response()
}

/// GraphQL, as far as the loop needs it: `markPullRequestReadyForReview`.
async fn graphql(State(inner): Shared, bytes: Bytes) -> Response {
    let body = json_body(&bytes).unwrap_or_default();
    let query = body["query"].as_str().unwrap_or_default();
    let id = body["variables"]["id"].as_str().unwrap_or_default();
    let number = id.strip_prefix("PR_").and_then(|n| n.parse::<u64>().ok());
    if !query.contains("markPullRequestReadyForReview") {
        return Json(
            json!({"errors": [{"message": "the fake answers markPullRequestReadyForReview only"}]}),
        )
        .into_response();
    }
    let mut state = lock(&inner.state);
    match number.and_then(|n| state.pulls.get_mut(&n)) {
        Some(pull) => {
            pull.draft = false;
            Json(json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}})).into_response()
        }
        None => Json(json!({"errors": [{"message": format!("Could not resolve to a node with the global id of '{id}'")}]})).into_response(),
    }
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
        state
            .labels
            .entry(name.clone())
            .or_insert_with(|| ("ededed".to_owned(), String::new()));
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
    if state.labels.contains_key(name) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let color = body["color"].as_str().unwrap_or("ededed").to_owned();
    let description = body["description"].as_str().unwrap_or("").to_owned();
    state
        .labels
        .insert(name.to_owned(), (color.clone(), description.clone()));
    (
        StatusCode::CREATED,
        Json(json!({"name": name, "color": color, "description": description})),
    )
        .into_response()
}

async fn read_label(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    match lock(&inner.state).labels.get(&name) {
        Some((color, description)) => {
            Json(json!({"name": name, "color": color, "description": description})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn update_label(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&inner.state);
    let Some(label) = state.labels.get_mut(&name) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(color) = body["color"].as_str() {
        label.0 = color.to_owned();
    }
    if let Some(description) = body["description"].as_str() {
        label.1 = description.to_owned();
    }
    let (color, description) = label.clone();
    Json(json!({"name": name, "color": color, "description": description})).into_response()
}

async fn public_key(State(inner): Shared) -> Response {
    use base64::Engine as _;
    let key =
        base64::engine::general_purpose::STANDARD.encode(inner.actions_key.public_key().as_bytes());
    Json(json!({"key_id": ACTIONS_KEY_ID, "key": key})).into_response()
}

/// The id of the fake's one Actions key.
const ACTIONS_KEY_ID: &str = "568250167242549743";

async fn read_secret(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    if name == "public-key" || !lock(&inner.state).secrets.contains_key(&name) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(json!({"name": name, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}))
        .into_response()
}

async fn put_secret(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let (Some(value), Some(key_id)) = (body["encrypted_value"].as_str(), body["key_id"].as_str())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "encrypted_value and key_id are required",
        );
    };
    if key_id != ACTIONS_KEY_ID {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Bad key_id");
    }
    let existed = lock(&inner.state)
        .secrets
        .insert(name, value.to_owned())
        .is_some();
    if existed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::CREATED.into_response()
    }
}

async fn read_variable(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    match lock(&inner.state).variables.get(&name) {
        Some(value) => Json(json!({"name": name, "value": value})).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn create_variable(State(inner): Shared, Json(body): Json<Value>) -> Response {
    let (Some(name), Some(value)) = (body["name"].as_str(), body["value"].as_str()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name and value are required",
        );
    };
    let mut state = lock(&inner.state);
    if state.variables.contains_key(name) {
        return error(StatusCode::CONFLICT, "Already exists");
    }
    state.variables.insert(name.to_owned(), value.to_owned());
    StatusCode::CREATED.into_response()
}

async fn update_variable(
    State(inner): Shared,
    Path((_, _, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&inner.state);
    let Some(slot) = state.variables.get_mut(&name) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(value) = body["value"].as_str() {
        *slot = value.to_owned();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn dispatch(State(inner): Shared, Json(body): Json<Value>) -> Response {
    if body["event_type"].as_str().is_none_or(str::is_empty) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "event_type is required");
    }
    if !body["client_payload"].is_null() && !body["client_payload"].is_object() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "client_payload must be an object",
        );
    }
    let mut state = lock(&inner.state);
    state.dispatches.push(body);
    if let Some(conclusion) = state.dispatch_conclusion.clone() {
        let id = 9_000 + state.workflow_runs.len() as u64;
        let url = format!(
            "https://github.com/{}/{}/actions/runs/{id}",
            inner.owner, inner.repo
        );
        state.workflow_runs.insert(
            0,
            json!({"id": id, "event": "repository_dispatch", "status": "completed",
                   "conclusion": conclusion, "created_at": "2026-01-01T00:00:00Z", "html_url": url}),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn workflow_runs(
    State(inner): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let state = lock(&inner.state);
    let runs: Vec<&Value> = state
        .workflow_runs
        .iter()
        .filter(|r| query.get("event").is_none_or(|e| r["event"] == e.as_str()))
        .collect();
    Json(json!({"total_count": runs.len(), "workflow_runs": runs})).into_response()
}
