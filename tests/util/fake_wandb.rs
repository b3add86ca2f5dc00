//! An in-memory stand-in for a W&B server, just deep enough to check the client end to end:
//! GraphQL by operation name, a file_stream endpoint that stores lines by offset (so re-sent
//! chunks are idempotent, as on the real server) with injectable faults, and a signed-URL
//! object store that checks `Content-MD5` like S3.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::{serve, KEY};

/// What the file_stream endpoint does with request number `n` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Store the lines and answer 200.
    None,
    /// Answer 503 without storing anything.
    Reject,
    /// Store the lines, then answer 503 as if the answer got lost.
    Drop,
}

type FaultPlan = Box<dyn FnMut(usize) -> Fault + Send>;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// GraphQL operation name, if any.
    pub op: Option<String>,
    pub variables: Value,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Default, Clone)]
pub struct FakeRun {
    pub entity: String,
    pub project: String,
    pub storage_id: String,
    pub display_name: Option<String>,
    pub state: String,
    pub config: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub notes: Option<String>,
    /// file_stream files by name, one entry per line.
    pub files: BTreeMap<String, Vec<String>>,
    /// Run files: name → object key in storage.
    pub run_files: BTreeMap<String, String>,
    pub uploaded: Vec<String>,
    pub exitcode: Option<i64>,
    pub preempting: bool,
}

impl FakeRun {
    pub fn lines(&self, file: &str) -> &[String] {
        self.files.get(file).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn history(&self) -> Vec<Value> {
        self.lines("wandb-history.jsonl")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn summary(&self) -> Value {
        self.lines("wandb-summary.json")
            .first()
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone)]
pub struct FakeArtifact {
    pub id: String,
    pub collection: String,
    pub artifact_type: String,
    pub digest: String,
    pub state: String,
    pub version_index: Option<usize>,
    pub aliases: Vec<String>,
    pub metadata: String,
    /// File name → object key.
    pub files: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct FakeState {
    pub seen: Vec<Seen>,
    pub runs: BTreeMap<String, FakeRun>,
    pub storage: HashMap<String, Vec<u8>>,
    pub artifacts: Vec<FakeArtifact>,
    /// Every file_stream body that was processed (stored), in arrival order.
    pub stream_bodies: Vec<Value>,
    pub stream_requests: usize,
    pub faults_seen: Vec<Fault>,
    /// Protocol violations found while storing lines (gaps in offsets).
    pub violations: Vec<String>,
    pub stop_requested: bool,
    /// MD5s `RunFiles` reports instead of the stored bytes' own (to simulate corruption).
    pub reported_md5: HashMap<String, String>,
    fault_plan: Option<FaultPlan>,
}

impl FakeState {
    pub fn run(&self, id: &str) -> &FakeRun {
        self.runs.get(id).unwrap_or_else(|| panic!("no run {id}"))
    }
}

#[derive(Clone)]
pub struct FakeWandb {
    pub base_url: String,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeWandb {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = AppState {
            state: state.clone(),
            storage_base: Arc::new(Mutex::new(String::new())),
        };
        let router = Router::new()
            .route("/graphql", post(graphql))
            .route(
                "/files/{entity}/{project}/{run}/file_stream",
                post(file_stream),
            )
            .route("/storage/{*key}", put(store).get(fetch))
            // file_stream requests reach 10 MiB; axum's default limit is 2 MiB.
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(app.clone());
        let base_url = serve(router.clone()).await;
        // Signed storage URLs point at another origin, as on the real service, so the client
        // must not send the API key there.
        *app.storage_base.lock().unwrap() = serve(router).await;
        Self { base_url, state }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn set_faults(&self, plan: impl FnMut(usize) -> Fault + Send + 'static) {
        self.with(|s| s.fault_plan = Some(Box::new(plan)));
    }
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<FakeState>>,
    storage_base: Arc<Mutex<String>>,
}

impl AppState {
    fn url(&self, key: &str) -> String {
        format!("{}/storage/{key}", self.storage_base.lock().unwrap())
    }
}

fn expected_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"))
    )
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected_auth().as_str())
}

pub fn b64_md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

fn hex_of_b64(digest: &str) -> String {
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(digest)
            .unwrap(),
    )
}

async fn graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let op = body["operationName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let vars = body["variables"].clone();
    let mut state = app.state.lock().unwrap();
    state.seen.push(Seen {
        method: "POST".into(),
        path: "/graphql".into(),
        op: Some(op.clone()),
        variables: vars.clone(),
        headers: headers.clone(),
    });
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    match answer(&app, &mut state, &op, &vars) {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(message) => {
            Json(json!({"data": null, "errors": [{"message": message}]})).into_response()
        }
    }
}

fn answer(app: &AppState, state: &mut FakeState, op: &str, v: &Value) -> Result<Value, String> {
    let s = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
    Ok(match op {
        "Viewer" => json!({"viewer": {"id": "VXNlcjox", "entity": "testent", "username": "tester",
                                      "email": "t@example.invalid", "flags": "{}", "teams": {"edges": []}}}),
        "UpsertBucket" => {
            let id = s("name");
            let count = state.runs.len();
            let run = state.runs.entry(id.clone()).or_insert_with(|| FakeRun {
                entity: s("entity"),
                project: s("project"),
                storage_id: format!("UnVuOj{count}"),
                state: "running".into(),
                ..FakeRun::default()
            });
            let set = |field: &mut Option<String>, key: &str| {
                if let Some(value) = v[key].as_str() {
                    *field = Some(value.to_owned());
                }
            };
            set(&mut run.display_name, "displayName");
            set(&mut run.group, "groupName");
            set(&mut run.job_type, "jobType");
            set(&mut run.notes, "notes");
            if let Some(config) = v["config"].as_str() {
                run.config = config.to_owned();
            }
            if let Some(tags) = v["tags"].as_array() {
                run.tags = tags
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
            }
            let display = run
                .display_name
                .clone()
                .unwrap_or_else(|| "fake-name-1".into());
            json!({"upsertBucket": {"bucket": {
                "id": run.storage_id, "name": id, "displayName": display, "description": null,
                "config": run.config, "sweepName": null,
                "project": {"id": "UHJvajox", "name": run.project, "entity": {"id": "RW50OjE=", "name": run.entity}},
                "historyLineCount": run.lines("wandb-history.jsonl").len()},
                "inserted": count < state.runs.len()}})
        }
        "RunResumeStatus" => {
            let bucket = state.runs.get(&s("name")).map(|run| {
                let tail: Vec<&String> = run.lines("wandb-history.jsonl").iter().rev().take(1).collect();
                json!({"id": run.storage_id, "name": s("name"),
                       "summaryMetrics": run.lines("wandb-summary.json").first().cloned().unwrap_or("{}".into()),
                       "displayName": run.display_name, "logLineCount": run.lines("output.log").len(),
                       "historyLineCount": run.lines("wandb-history.jsonl").len(),
                       "eventsLineCount": run.lines("wandb-events.jsonl").len(),
                       "historyTail": serde_json::to_string(&tail).unwrap(), "eventsTail": "[]",
                       "config": run.config, "tags": run.tags})
            });
            json!({"model": {"id": "UHJvajox", "name": s("project"), "entity": {"id": "RW50OjE=", "name": s("entity")},
                             "bucket": bucket}})
        }
        "CreateRunFiles" => {
            let run_id = s("run");
            if !state.runs.contains_key(&run_id) {
                return Ok(
                    json!({"createRunFiles": {"runID": null, "uploadHeaders": [], "files": []}}),
                );
            }
            let files: Vec<Value> = v["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|name| {
                    let name = name.as_str().unwrap();
                    json!({"name": name, "uploadUrl": app.url(&format!("runs/{run_id}/{name}?X-Signature=sig"))})
                })
                .collect();
            json!({"createRunFiles": {"runID": "UnVuOjE=", "uploadHeaders": ["X-Upload-Kind: run-file"], "files": files}})
        }
        "NotifyScriptableRunAlert" => json!({"notifyScriptableRunAlert": {"success": true}}),
        "CreateArtifact" => create_artifact(state, &v["input"]),
        "CreateArtifactManifest" => {
            let id = s("artifactID");
            let file = if v["includeUpload"] == json!(true) {
                json!({"id": "RmlsZTox", "uploadUrl": app.url(&format!("manifests/{id}")), "uploadHeaders": []})
            } else {
                json!({"id": "RmlsZTox"})
            };
            json!({"createArtifactManifest": {"artifactManifest": {"id": format!("manifest-{id}"), "file": file}}})
        }
        "CreateArtifactFiles" => {
            let mut edges = Vec::new();
            for spec in v["input"]["artifactFiles"].as_array().unwrap() {
                let md5 = spec["md5"].as_str().unwrap();
                let key = format!("objects/{}", hex_of_b64(md5));
                let artifact_id = spec["artifactID"].as_str().unwrap();
                let artifact = state
                    .artifacts
                    .iter_mut()
                    .find(|a| a.id == artifact_id)
                    .ok_or("no such artifact")?;
                artifact
                    .files
                    .insert(spec["name"].as_str().unwrap().to_owned(), key.clone());
                let upload = if state.storage.contains_key(&key) {
                    Value::Null
                } else {
                    json!(app.url(&key))
                };
                edges.push(json!({"node": {"storagePath": key, "uploadUrl": upload,
                                           "uploadHeaders": [format!("Content-MD5:{md5}")],
                                           "uploadMultipartUrls": null, "artifact": {"id": artifact_id}}}));
            }
            json!({"createArtifactFiles": {"files": {"edges": edges}}})
        }
        "CommitArtifact" => {
            let id = s("artifactID");
            let collection = state
                .artifacts
                .iter()
                .find(|a| a.id == id)
                .ok_or("no such artifact")?
                .collection
                .clone();
            let index = state
                .artifacts
                .iter()
                .filter(|a| a.collection == collection && a.state == "COMMITTED")
                .count();
            let new_aliases = state
                .artifacts
                .iter()
                .find(|a| a.id == id)
                .unwrap()
                .aliases
                .clone();
            for other in state
                .artifacts
                .iter_mut()
                .filter(|a| a.collection == collection && a.id != id)
            {
                other.aliases.retain(|alias| !new_aliases.contains(alias));
            }
            let artifact = state.artifacts.iter_mut().find(|a| a.id == id).unwrap();
            artifact.state = "COMMITTED".into();
            artifact.version_index = Some(index);
            json!({"commitArtifact": {"artifact": {"id": id, "digest": artifact.digest, "versionIndex": index}}})
        }
        "UseArtifact" => json!({"useArtifact": {"artifact": {"id": v["input"]["artifactID"]}}}),
        "ArtifactMembershipByName" => {
            let name = s("name");
            let (collection, alias) = name.split_once(':').unwrap();
            let found = state.artifacts.iter().find(|a| {
                a.collection == collection
                    && a.state == "COMMITTED"
                    && (a.aliases.iter().any(|x| x == alias)
                        || a.version_index.map(|i| format!("v{i}")).as_deref() == Some(alias))
            });
            let membership = found.map(|a| {
                json!({"id": "TWVtOjE=", "versionIndex": a.version_index,
                       "aliases": a.aliases.iter().map(|x| json!({"alias": x})).collect::<Vec<_>>(),
                       "artifactCollection": {"name": a.collection, "project": {"name": s("project"), "entity": {"name": s("entity")}}},
                       "artifact": {"id": a.id, "digest": a.digest, "state": a.state, "size": 0, "fileCount": a.files.len(),
                                    "versionIndex": a.version_index, "createdAt": "2026-11-23T11:12:20",
                                    "description": null, "metadata": a.metadata, "artifactType": {"name": a.artifact_type}}})
            });
            json!({"project": {"artifactCollectionMembership": membership}})
        }
        "FetchArtifactManifest" => {
            let id = s("id");
            json!({"artifact": {"currentManifest": {"file": {"directUrl": app.url(&format!("manifests/{id}"))}}}})
        }
        "ArtifactFileURLs" => {
            let artifact = state
                .artifacts
                .iter()
                .find(|a| a.id == s("id"))
                .ok_or("no such artifact")?;
            let edges: Vec<Value> = artifact
                .files
                .iter()
                .map(|(name, key)| json!({"node": {"name": name, "directUrl": app.url(key)}}))
                .collect();
            json!({"artifact": {"files": {"pageInfo": {"hasNextPage": false, "endCursor": "end"}, "edges": edges}}})
        }
        "Runs" => runs_page(state, v),
        "Run" => {
            json!({"project": {"run": state.runs.get(&s("name")).map(|r| run_fields(&s("name"), r))}})
        }
        "RunHistoryKeys" => {
            let keys = state.runs.get(&s("name")).map(|run| {
                let last = run
                    .history()
                    .last()
                    .map(|row| row["_step"].clone())
                    .unwrap_or(json!(-1));
                json!({"historyKeys": {"lastStep": last, "keys": {}}})
            });
            json!({"project": {"run": keys}})
        }
        "HistoryPage" => {
            let run = state.runs.get(&s("run")).ok_or("no such run")?;
            let (min, max) = (
                v["minStep"].as_i64().unwrap(),
                v["maxStep"].as_i64().unwrap(),
            );
            let rows: Vec<String> = run
                .lines("wandb-history.jsonl")
                .iter()
                .filter(|l| {
                    let step = serde_json::from_str::<Value>(l).unwrap()["_step"]
                        .as_i64()
                        .unwrap();
                    step >= min && step < max
                })
                .take(v["pageSize"].as_u64().unwrap() as usize)
                .cloned()
                .collect();
            json!({"project": {"run": {"history": rows}}})
        }
        "RunFiles" => {
            let run = state.runs.get(&s("name"));
            let edges: Vec<Value> = run
                .into_iter()
                .flat_map(|r| r.run_files.iter())
                .filter(|(name, _)| v["fileNames"].as_array().unwrap().contains(&json!(name)))
                .map(|(name, key)| {
                    let md5 =
                        state.reported_md5.get(key).cloned().or_else(|| state.storage.get(key).map(|b| b64_md5(b)));
                    json!({"node": {"name": name, "directUrl": app.url(key), "md5": md5, "sizeBytes": 1}})
                })
                .collect();
            json!({"project": {"run": run.map(|_| json!({"files": {"edges": edges}}))}})
        }
        "RunConsoleLogTail" => {
            let run = state.runs.get(&s("runName"));
            let logs = run.map(|run| {
                let lines = run.lines("output.log");
                let last = v["last"].as_u64().unwrap() as usize;
                let edges: Vec<Value> = lines[lines.len().saturating_sub(last)..]
                    .iter()
                    .enumerate()
                    .map(|(i, line)| {
                        let (level, rest) = match line.strip_prefix("ERROR ") {
                            Some(rest) => ("error", rest),
                            None => ("info", line.as_str()),
                        };
                        let (stamp, text) = rest.split_once(' ').unwrap();
                        json!({"node": {"number": i, "timestamp": stamp, "level": level, "label": null, "line": text}})
                    })
                    .collect();
                json!({"logLineCount": lines.len(), "logLines": {"edges": edges}})
            });
            json!({"project": {"run": logs}})
        }
        other => return Err(format!("the fake does not know operation {other:?}")),
    })
}

fn create_artifact(state: &mut FakeState, input: &Value) -> Value {
    let collection = input["artifactCollectionName"].as_str().unwrap().to_owned();
    let digest = input["digest"].as_str().unwrap().to_owned();
    let latest = state
        .artifacts
        .iter()
        .rfind(|a| a.collection == collection && a.state == "COMMITTED")
        .map(|a| json!({"id": a.id}));
    if let Some(same) = state
        .artifacts
        .iter()
        .find(|a| a.collection == collection && a.digest == digest && a.state == "COMMITTED")
    {
        return json!({"createArtifact": {"artifact": {"id": same.id, "state": "COMMITTED", "digest": same.digest,
            "versionIndex": same.version_index, "artifactSequence": {"latestArtifact": latest}}}});
    }
    let id = format!("QXJ0aWZhY3Q6{}", state.artifacts.len() + 1);
    state.artifacts.push(FakeArtifact {
        id: id.clone(),
        collection,
        artifact_type: input["artifactTypeName"].as_str().unwrap().to_owned(),
        digest: digest.clone(),
        state: "PENDING".into(),
        version_index: None,
        aliases: input["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alias"].as_str().unwrap().to_owned())
            .collect(),
        metadata: input["metadata"].as_str().unwrap_or("{}").to_owned(),
        files: BTreeMap::new(),
    });
    json!({"createArtifact": {"artifact": {"id": id, "state": "PENDING", "digest": digest, "versionIndex": null,
        "artifactSequence": {"latestArtifact": latest}}}})
}

fn run_fields(id: &str, run: &FakeRun) -> Value {
    let last = run.history().last().map(|row| row["_step"].clone());
    json!({"id": run.storage_id, "name": id, "displayName": run.display_name, "state": run.state,
           "config": run.config, "summaryMetrics": run.lines("wandb-summary.json").first().cloned().unwrap_or("{}".into()),
           "tags": run.tags, "group": run.group, "jobType": run.job_type, "notes": run.notes, "commit": null,
           "createdAt": "2026-11-23T11:12:20", "heartbeatAt": "2026-11-23T11:13:31",
           "historyLineCount": run.lines("wandb-history.jsonl").len(),
           "historyKeys": last.map(|l| json!({"lastStep": l, "keys": {}}))})
}

/// Pages over all runs (filters are recorded, not applied) with integer cursors.
fn runs_page(state: &FakeState, v: &Value) -> Value {
    let start: usize = v["cursor"].as_str().map_or(0, |c| c.parse().unwrap());
    let per_page = v["perPage"].as_u64().unwrap() as usize;
    let all: Vec<(&String, &FakeRun)> = state.runs.iter().collect();
    let end = (start + per_page).min(all.len());
    let edges: Vec<Value> = all[start..end]
        .iter()
        .enumerate()
        .map(|(i, (id, run))| json!({"node": run_fields(id, run), "cursor": (start + i + 1).to_string()}))
        .collect();
    json!({"project": {"runs": {"edges": edges,
        "pageInfo": {"endCursor": end.to_string(), "hasNextPage": end < all.len()}}}})
}

async fn file_stream(
    State(app): State<AppState>,
    Path((entity, project, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = app.state.lock().unwrap();
    state.seen.push(Seen {
        method: "POST".into(),
        path: format!("/files/{entity}/{project}/{run_id}/file_stream"),
        op: None,
        variables: body.clone(),
        headers: headers.clone(),
    });
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    let n = state.stream_requests;
    state.stream_requests += 1;
    let fault = state
        .fault_plan
        .as_mut()
        .map_or(Fault::None, |plan| plan(n));
    state.faults_seen.push(fault);
    if fault == Fault::Reject {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    let Some(run) = state.runs.get_mut(&run_id) else {
        return (StatusCode::NOT_FOUND, "no such run").into_response();
    };
    let mut violations = Vec::new();
    if let Some(files) = body["files"].as_object() {
        for (name, chunk) in files {
            let offset = chunk["offset"].as_u64().unwrap() as usize;
            let content: Vec<String> = chunk["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            let lines = run.files.entry(name.clone()).or_default();
            if name == "wandb-summary.json" {
                *lines = content;
                continue;
            }
            if offset > lines.len() {
                violations.push(format!(
                    "{name}: offset {offset} leaves a gap after {} lines",
                    lines.len()
                ));
                continue;
            }
            let end = (offset + content.len()).min(lines.len());
            lines.splice(offset..end, content);
        }
    }
    if let Some(uploaded) = body["uploaded"].as_array() {
        run.uploaded.extend(
            uploaded
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned)),
        );
    }
    if body["preempting"] == json!(true) {
        run.preempting = true;
    }
    if body["complete"] == json!(true) {
        run.exitcode = body["exitcode"].as_i64();
        run.state = if run.exitcode == Some(0) {
            "finished".into()
        } else {
            "failed".into()
        };
    }
    state.violations.extend(violations);
    state.stream_bodies.push(body);
    if fault == Fault::Drop {
        return (StatusCode::SERVICE_UNAVAILABLE, "lost answer").into_response();
    }
    let mut answer = json!({"exitcode": null, "limits": {}});
    if state.stop_requested {
        answer["stopped"] = json!(true);
    }
    Json(answer).into_response()
}

async fn store(
    State(app): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = app.state.lock().unwrap();
    record_storage(&mut state, Method::PUT, &key, &headers);
    if let Some(expected) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        if expected != b64_md5(&body) {
            return (StatusCode::BAD_REQUEST, "Content-MD5 mismatch").into_response();
        }
    }
    if let Some(rest) = key.strip_prefix("runs/") {
        let (run_id, name) = rest.split_once('/').unwrap();
        if let Some(run) = state.runs.get_mut(run_id) {
            run.run_files.insert(name.to_owned(), key.clone());
        }
    }
    state.storage.insert(key, body.to_vec());
    StatusCode::OK.into_response()
}

async fn fetch(
    State(app): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = app.state.lock().unwrap();
    record_storage(&mut state, Method::GET, &key, &headers);
    match state.storage.get(&key) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn record_storage(state: &mut FakeState, method: Method, key: &str, headers: &HeaderMap) {
    state.seen.push(Seen {
        method: method.to_string(),
        path: format!("/storage/{key}"),
        op: None,
        variables: Value::Null,
        headers: headers.clone(),
    });
}
