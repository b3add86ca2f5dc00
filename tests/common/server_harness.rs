//! Starts mlwf's W&B-compatible server on a loopback port with a scratch data directory and
//! talks to it over HTTP, as clients do.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::Path;

use mlwf::server::{start_with, RunningServer, ServerOptions, Tuning};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const KEY: &str = "local-TestKeyTestKeyTestKeyTestKeyTestKey0123456789";

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_tuned(Tuning::default()).await
    }

    pub async fn start_tuned(tuning: Tuning) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = launch(dir.path(), tuning).await;
        TestServer {
            server,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(self) -> TestServer {
        let TestServer { server, dir, http } = self;
        server.shutdown().await;
        let server = launch(dir.path(), Tuning::default()).await;
        TestServer { server, dir, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
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
    pub async fn run(&self, entity: &str, project: &str, name: &str, fields: &str) -> Value {
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
    start_with(
        ServerOptions {
            data_dir: dir.to_path_buf(),
            api_keys: vec![KEY.to_owned()],
        },
        "127.0.0.1:0".parse().expect("address"),
        tuning,
    )
    .await
    .expect("server starts")
}
