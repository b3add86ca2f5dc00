//! The one fixture: mlwf's W&B-compatible server on a free loopback port over a scratch
//! directory, accepting [`KEY`], with mlwf's client of it and raw HTTP for what a client
//! would not send.

use std::path::{Path, PathBuf};

use mlwf::server::{start_with, RunningServer, ServerOptions, Tuning};
use mlwf::testkit::sdk::official_sdk_command;
use mlwf::wandb::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{settings, KEY};

/// The entity and project of [`Fixture::client`] (and of [`super::settings`]).
pub const ENTITY: &str = "testent";
pub const PROJECT: &str = "proj";

pub struct Fixture {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    /// mlwf's client: entity [`ENTITY`], project [`PROJECT`], downloads cached in the fixture.
    pub client: Client,
    pub http: reqwest::Client,
}

impl Fixture {
    pub async fn start() -> Fixture {
        Self::start_tuned(Tuning::default()).await
    }

    pub async fn start_tuned(tuning: Tuning) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = launch(dir.path(), tuning).await;
        Self::around(server, dir)
    }

    fn around(server: RunningServer, dir: tempfile::TempDir) -> Fixture {
        let mut settings = settings(server.base_url());
        settings.cache_dir = dir.path().join("wandb-cache");
        let client = Client::new(settings).expect("client");
        Fixture {
            server,
            dir,
            client,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(self) -> Fixture {
        let Fixture { server, dir, .. } = self;
        server.shutdown().await;
        let server = launch(dir.path(), Tuning::default()).await;
        Self::around(server, dir)
    }

    /// Stops the server after its in-flight requests.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// A scratch folder `name` inside the fixture, created.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    /// `python tests/python/<script>` with the official SDK pointed at this server (entity
    /// [`ENTITY`], project [`PROJECT`], every file under the fixture) and its timers short, so a
    /// script takes seconds.
    pub fn sdk(&self, python: &Path, script: &str) -> tokio::process::Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(script);
        let mut command = official_sdk_command(
            python,
            &script,
            self.server.base_url(),
            KEY,
            &self.path("sdk"),
        )
        .expect("the SDK's directories");
        command
            .env("WANDB_ENTITY", ENTITY)
            .env("WANDB_PROJECT", PROJECT)
            .env("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", "0.5")
            .env("WANDB_X_STATS_SAMPLING_INTERVAL", "1");
        command
    }

    /// Runs [`Fixture::sdk`] with `args`, which must succeed; its last stdout line, as JSON.
    pub async fn sdk_json(&self, python: &Path, script: &str, args: &[&str]) -> Value {
        let output = self
            .sdk(python, script)
            .args(args)
            .output()
            .await
            .expect("run python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
    }

    /// `GET path` with the key, which must succeed; its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .basic_auth("api", Some(KEY))
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("a JSON answer")
    }

    /// A GraphQL request with a chosen key (`None`: no Authorization header).
    pub async fn graphql_as(&self, key: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url("/graphql")).json(&body);
        if let Some(key) = key {
            request = request.basic_auth("api", Some(key));
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("JSON response"))
    }

    /// Runs a GraphQL operation and returns `data`, failing the test on any error.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .graphql_as(Some(KEY), json!({"query": query, "variables": variables}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
        body["data"].clone()
    }

    /// Runs a GraphQL operation that is expected to fail; returns the first error message.
    pub async fn gql_error(&self, query: &str, variables: Value) -> String {
        let (_, body) = self
            .graphql_as(Some(KEY), json!({"query": query, "variables": variables}))
            .await;
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error, got {body}"))
            .to_owned()
    }

    pub async fn file_stream(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/files/{entity}/{project}/{run}/file_stream")))
            .basic_auth("api", Some(KEY))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates (or updates) a run with `upsertBucket`; returns the bucket.
    pub async fn upsert_run(&self, entity: &str, project: &str, name: &str, extra: Value) -> Value {
        let mut input = json!({"entityName": entity, "modelName": project, "name": name});
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        let data = self
            .gql(
                "mutation($input: UpsertBucketInput!) { upsertBucket(input: $input) {
                    bucket { id name displayName state config tags historyLineCount
                             project { name entity { name } } }
                    inserted } }",
                json!({"input": input}),
            )
            .await;
        data["upsertBucket"].clone()
    }

    /// Reads a run's fields by GraphQL (`fields` is a selection set body).
    pub async fn run_fields(&self, entity: &str, project: &str, name: &str, fields: &str) -> Value {
        let data = self
            .gql(
                &format!(
                    "query($e: String, $p: String, $r: String!) {{
                        project(name: $p, entityName: $e) {{ run(name: $r) {{ {fields} }} }} }}"
                ),
                json!({"e": entity, "p": project, "r": name}),
            )
            .await;
        data["project"]["run"].clone()
    }
}

async fn launch(dir: &Path, tuning: Tuning) -> RunningServer {
    local_server(&dir.join("server"), tuning).await
}

/// The one way the suite starts mlwf's server: on a free loopback port over `data_dir`,
/// accepting [`KEY`].
pub async fn local_server(data_dir: &Path, tuning: Tuning) -> RunningServer {
    start_with(
        ServerOptions {
            data_dir: data_dir.to_owned(),
            api_keys: vec![KEY.to_owned()],
        },
        "127.0.0.1:0".parse().expect("address"),
        tuning,
    )
    .await
    .expect("server starts")
}
