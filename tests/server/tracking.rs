//! Run tracking against mlwf's W&B-compatible server over HTTP: auth, request validation,
//! runs, file_stream semantics, run files, reads with filters, persistence.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::util::{Fixture, KEY};

const VIEWER: &str =
    "query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }";

fn history_line(step: i64) -> String {
    json!({"_step": step, "loss": 1.0 / (step as f64 + 1.0), "_runtime": step}).to_string()
}

#[tokio::test]
async fn wrong_or_missing_keys_get_401_and_write_nothing() {
    let t = Fixture::start().await;
    let upsert = json!({
        "query": "mutation { upsertBucket(input: {name: \"r1\", modelName: \"p\", entityName: \"e\"}) { inserted } }"
    });
    let wrong = "local-WrongKeyWrongKeyWrongKeyWrongKeyWrong99";
    for key in [Some(wrong), None] {
        let (status, body) = t.graphql_as(key, upsert.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("API key"),
            "{body}"
        );
    }
    let response = t
        .http
        .post(t.url("/files/e/p/r1/file_stream"))
        .basic_auth("api", Some(wrong))
        .json(&json!({"complete": true, "exitcode": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let data = t
        .gql(
            "query { project(name: \"p\", entityName: \"e\") { id } }",
            json!({}),
        )
        .await;
    assert!(data["project"].is_null(), "nothing may be written: {data}");

    let viewer = t.gql(VIEWER, Value::Null).await;
    assert_eq!(viewer["viewer"]["entity"], "local");
    assert_eq!(viewer["viewer"]["flags"], "{}");
}

#[tokio::test]
async fn malformed_requests_get_errors_and_the_server_keeps_answering() {
    let t = Fixture::start().await;
    let cases = [
        json!({"query": "query {"}),
        json!({"query": "query { nosuch }"}),
        json!({"query": "query($x: Int!) { viewer { id } }"}),
        json!({"query": "query($x: Int!) { viewer { id } }", "variables": {"x": "nope"}}),
        json!({"query": "query A { viewer { id } } query B { viewer { id } }"}),
        json!({"nope": 1}),
    ];
    for body in cases {
        let (status, response) = t.graphql_as(Some(KEY), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {response}");
        assert!(response["errors"][0]["message"].is_string(), "{response}");
    }
    let raw = t
        .http
        .post(t.url("/graphql"))
        .basic_auth("api", Some(KEY))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);

    // graphql-js wording, which the SDK matches on to detect older servers.
    let (_, response) = t
        .graphql_as(Some(KEY), json!({"query": "{ serverInfo { nosuch } }"}))
        .await;
    let messages: Vec<&str> = response["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"Cannot query field \"nosuch\" on type \"ServerInfo\"."),
        "{messages:?}"
    );
    // Field errors come back next to partial data.
    let message = t
        .gql_error(
            "mutation { stopRun(input: {id: \"bogus\"}) { success } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("not a run id"), "{message}");

    let viewer = t.gql(VIEWER, Value::Null).await;
    assert_eq!(viewer["viewer"]["username"], "local");
}

#[tokio::test]
async fn graphql_features_aliases_fragments_typename_and_defaults() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({"displayName": "first"}))
        .await;
    let data = t
        .gql(
            "query Q($p: String = \"p\", $withName: Boolean = false) {
                a: project(name: $p, entityName: \"e\") { ...P }
                b: project(name: \"missing\", entityName: \"e\") { id }
                serverInfo { features { name isEnabled } }
             }
             fragment P on Project { __typename name r: run(name: \"r1\") { __typename
                 ... on Run { displayName name @include(if: $withName) } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["a"]["__typename"], "Project");
    assert_eq!(data["a"]["r"]["__typename"], "Run");
    assert_eq!(data["a"]["r"]["displayName"], "first");
    assert!(data["a"]["r"].get("name").is_none());
    assert!(data["b"].is_null());
    assert_eq!(data["serverInfo"]["features"], json!([]));
}

#[tokio::test]
async fn upsert_creates_then_updates_only_given_fields() {
    let t = Fixture::start().await;
    let created = t
        .upsert_run(
            "e",
            "p",
            "r1",
            json!({"tags": ["a", "b"], "config": "{\"lr\": {\"value\": 0.1}}", "groupName": "g", "notes": "n"}),
        )
        .await;
    assert_eq!(created["inserted"], true);
    let bucket = &created["bucket"];
    assert_eq!(bucket["name"], "r1");
    assert_eq!(bucket["state"], "running");
    assert_eq!(bucket["project"]["entity"]["name"], "e");
    assert!(
        bucket["displayName"].as_str().unwrap().contains('-'),
        "generated display name"
    );

    // The SDK's debounced second upsert sends null for everything but the config.
    let updated = t
        .upsert_run(
            "e",
            "p",
            "r1",
            json!({"tags": null, "notes": null, "config": "{\"lr\": {\"value\": 0.2}}"}),
        )
        .await;
    assert_eq!(updated["inserted"], false);
    assert_eq!(updated["bucket"]["tags"], json!(["a", "b"]));
    let run = t.run_fields("e", "p", "r1", "notes group config").await;
    assert_eq!(run["notes"], "n");
    assert_eq!(run["group"], "g");
    assert_eq!(run["config"], "{\"lr\":{\"value\":0.2}}");

    // A public-API style update by storage id, including the summary.
    let id = updated["bucket"]["id"].as_str().unwrap();
    t.gql(
        "mutation($id: String, $s: JSONString, $t: [String!]) {
            upsertBucket(input: {id: $id, summaryMetrics: $s, tags: $t}) { bucket { id } } }",
        json!({"id": id, "s": "{\"best\": 1}", "t": ["c"]}),
    )
    .await;
    let run = t.run_fields("e", "p", "r1", "summaryMetrics tags").await;
    assert_eq!(run["summaryMetrics"], "{\"best\":1}");
    assert_eq!(run["tags"], json!(["c"]));

    let message = t
        .gql_error(
            "mutation { upsertBucket(input: {name: \"bad/name\", modelName: \"p\", entityName: \"e\"}) { inserted } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("invalid run id"), "{message}");
}

#[tokio::test]
async fn file_stream_is_idempotent_by_offset() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let chunk = json!({"files": {
        "wandb-history.jsonl": {"offset": 0, "content": [history_line(0), history_line(1)]},
        "wandb-events.jsonl": {"offset": 0, "content": ["{\"system.cpu\": 1}"]},
        "output.log": {"offset": 0, "content": ["2026-01-01T00:00:00.000001 hello", "ERROR 2026-01-01T00:00:01.000001 oops"]}
    }});
    // A client that lost the response sends the same request again.
    for _ in 0..2 {
        let (status, body) = t.file_stream("e", "p", "r1", chunk.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["stopped"], false);
    }
    let next = json!({"files": {
        "wandb-history.jsonl": {"offset": 2, "content": [history_line(2)]},
        "output.log": {"offset": 1, "content": ["ERROR 2026-01-01T00:00:02.000001 oops, rewritten", "2026-01-01T00:00:03.000001 [w1] third"]},
        "wandb-summary.json": {"offset": 0, "content": ["{\"loss\": 0.33, \"_step\": 2}"]}
    }});
    t.file_stream("e", "p", "r1", next).await;

    let run = t
        .run_fields(
            "e",
            "p",
            "r1",
            "historyLineCount eventsLineCount logLineCount summaryMetrics systemMetrics historyKeys
             history(samples: 100)
             logLines(last: 10) { edges { node { number timestamp level label line } } }",
        )
        .await;
    assert_eq!(run["historyLineCount"], 3);
    assert_eq!(run["eventsLineCount"], 1);
    assert_eq!(run["logLineCount"], 3);
    assert_eq!(run["history"].as_array().unwrap().len(), 3);
    assert_eq!(run["historyKeys"]["lastStep"], 2);
    assert_eq!(
        run["historyKeys"]["keys"]["loss"]["typeCounts"][0]["count"],
        3
    );
    assert_eq!(run["summaryMetrics"], "{\"_step\":2,\"loss\":0.33}");
    assert_eq!(run["systemMetrics"], "{\"system.cpu\": 1}");
    let lines: Vec<&Value> = run["logLines"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["line"], "hello");
    assert_eq!(lines[0]["level"], "");
    assert_eq!(lines[1]["line"], "oops, rewritten");
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[2]["label"], "w1");
    assert_eq!(lines[2]["timestamp"], "2026-01-01T00:00:03.000001");

    // Forward paging over the console log.
    let page = t
        .run_fields(
            "e",
            "p",
            "r1",
            "logLines(first: 2) { edges { node { number } } pageInfo { endCursor hasNextPage } }",
        )
        .await;
    assert_eq!(page["logLines"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["logLines"]["pageInfo"]["endCursor"].clone();
    let rest = t
        .gql(
            "query($c: String) { project(name: \"p\", entityName: \"e\") { run(name: \"r1\") {
                logLines(first: 2, after: $c, useImprovedPagination: true) { edges { node { number } } pageInfo { hasNextPage } } } } }",
            json!({"c": cursor}),
        )
        .await;
    let rest = &rest["project"]["run"]["logLines"];
    assert_eq!(rest["edges"][0]["node"]["number"], 2);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn history_reads_page_sample_and_filter_by_step() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let mut content: Vec<String> = (0..100).map(history_line).collect();
    content[50] = json!({"_step": 50, "other": true}).to_string();
    t.file_stream(
        "e",
        "p",
        "r1",
        json!({"files": {"wandb-history.jsonl": {"offset": 0, "content": content}}}),
    )
    .await;
    let run = t
        .run_fields(
            "e",
            "p",
            "r1",
            "page: history(minStep: 10, maxStep: 20, samples: 1000)
             sampled: history(samples: 5)
             keyed: sampledHistory(specs: [\"{\\\"keys\\\": [\\\"_step\\\", \\\"loss\\\", \\\"_step\\\"], \\\"minStep\\\": 40, \\\"maxStep\\\": 59, \\\"samples\\\": 100}\"])
             parquetHistory(liveKeys: [\"_step\"]) { parquetUrls liveData }
             historyTail",
        )
        .await;
    let page: Vec<Value> = run["page"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        page.iter()
            .map(|r| r["_step"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    let sampled = run["sampled"].as_array().unwrap();
    assert_eq!(sampled.len(), 5);
    assert!(sampled[0].as_str().unwrap().contains("\"_step\":0"));
    assert!(sampled[4].as_str().unwrap().contains("\"_step\":99"));
    // maxStep is inclusive in sampledHistory; rows without `loss` (step 50) are left out.
    let keyed = run["keyed"][0].as_array().unwrap();
    assert_eq!(keyed.len(), 19);
    assert_eq!(keyed[0], json!({"_step": 40, "loss": 1.0 / 41.0}));
    assert!(keyed.iter().all(|r| r["_step"] != 50));
    assert_eq!(run["parquetHistory"]["parquetUrls"], json!([]));
    assert_eq!(
        run["parquetHistory"]["liveData"].as_array().unwrap().len(),
        100
    );
    let tail: Vec<String> = serde_json::from_str(run["historyTail"].as_str().unwrap()).unwrap();
    assert_eq!(tail.len(), 10);
    assert!(tail[9].contains("\"_step\":99"));
}

#[tokio::test]
async fn run_states_follow_the_stream() {
    let t = Fixture::start().await;
    for (name, exit) in [("ok", 0), ("bad", 1)] {
        t.upsert_run("e", "p", name, json!({})).await;
        let (status, _) = t
            .file_stream("e", "p", name, json!({"complete": true, "exitcode": exit}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        t.run_fields("e", "p", "ok", "state exitcode").await,
        json!({"state": "finished", "exitcode": 0})
    );
    assert_eq!(
        t.run_fields("e", "p", "bad", "state").await["state"],
        "failed"
    );

    t.upsert_run("e", "p", "pre", json!({})).await;
    t.file_stream("e", "p", "pre", json!({"preempting": true}))
        .await;
    assert_eq!(
        t.run_fields("e", "p", "pre", "state").await["state"],
        "preempting"
    );
    // A resumed run that streams again is running.
    t.file_stream("e", "p", "ok", json!({})).await;
    assert_eq!(
        t.run_fields("e", "p", "ok", "state").await["state"],
        "running"
    );

    // Stop: the flag is polled, answered in the stream, and the run ends killed.
    let run = t.upsert_run("e", "p", "stop-me", json!({})).await;
    let id = run["bucket"]["id"].as_str().unwrap();
    assert_eq!(
        t.run_fields("e", "p", "stop-me", "stopped").await["stopped"],
        false
    );
    t.gql(
        "mutation($id: ID!) { stopRun(input: {id: $id}) { success } }",
        json!({"id": id}),
    )
    .await;
    let stop_status = t
        .gql(
            "query RunStoppedStatus($entityName: String, $projectName: String, $runId: String!) {
                project(name: $projectName, entityName: $entityName) { run(name: $runId) { stopped } } }",
            json!({"entityName": "e", "projectName": "p", "runId": "stop-me"}),
        )
        .await;
    assert_eq!(stop_status["project"]["run"]["stopped"], true);
    let (_, body) = t.file_stream("e", "p", "stop-me", json!({})).await;
    assert_eq!(body["stopped"], true);
    t.file_stream(
        "e",
        "p",
        "stop-me",
        json!({"complete": true, "exitcode": 255}),
    )
    .await;
    assert_eq!(
        t.run_fields("e", "p", "stop-me", "state").await["state"],
        "killed"
    );

    // The public API's state changes.
    t.gql(
        "mutation($input: UpdateRunStateInput!) { updateRunState(input: $input) { success } }",
        json!({"input": {"id": id, "state": "pending"}}),
    )
    .await;
    assert_eq!(
        t.run_fields("e", "p", "stop-me", "state").await["state"],
        "pending"
    );

    let (status, body) = t.file_stream("e", "p", "nosuch", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = t
        .file_stream(
            "e",
            "p",
            "ok",
            json!({"files": {"output.log": {"offset": -1, "content": ["x"]}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resume_status_reports_offsets_and_config() {
    let t = Fixture::start().await;
    let query = "query RunResumeStatus($project: String, $entity: String, $name: String!) {
        model(name: $project, entityName: $entity) { id name entity { id name }
          bucket(name: $name, missingOk: true) { id name summaryMetrics displayName logLineCount
            historyLineCount eventsLineCount historyTail eventsTail config tags notes wandbConfig(keys: [\"t\"]) } } }";
    let vars = json!({"project": "p", "entity": "e", "name": "r1"});
    assert!(t.gql(query, vars.clone()).await["model"].is_null());
    t.upsert_run(
        "e",
        "p",
        "r1",
        json!({"config": "{\"_wandb\": {\"value\": {\"t\": {\"1\": 2}, \"e\": {}}}, \"lr\": {\"value\": 1}}"}),
    )
    .await;
    t.file_stream(
        "e",
        "p",
        "r1",
        json!({"files": {"wandb-history.jsonl": {"offset": 0, "content": [history_line(0)]}}}),
    )
    .await;
    let bucket = t.gql(query, vars).await["model"]["bucket"].clone();
    assert_eq!(bucket["historyLineCount"], 1);
    assert_eq!(bucket["eventsLineCount"], 0);
    assert_eq!(bucket["logLineCount"], 0);
    assert_eq!(bucket["wandbConfig"], "{\"t\":{\"1\":2}}");
    assert_eq!(bucket["eventsTail"], "[]");
}

#[tokio::test]
async fn run_files_upload_and_download_through_signed_urls() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let created = t
        .gql(
            "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
                createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
                    runID uploadHeaders files { name uploadUrl } } }",
            json!({"entity": "e", "project": "p", "run": "r1", "files": ["model.pt", "ckpt/e1.json"]}),
        )
        .await;
    let files = created["createRunFiles"]["files"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(files[0]["name"], "model.pt");
    for (file, body) in files.iter().zip(["binary\u{0}bytes", "{\"a\": 1}"]) {
        let url = file["uploadUrl"].as_str().unwrap();
        assert!(url.starts_with(t.server.base_url()), "{url}");
        // Uploads carry no credentials, like the SDK's PUTs to cloud storage.
        let put = t.http.put(url).body(body).send().await.unwrap();
        assert_eq!(put.status(), StatusCode::OK);
    }
    let forged = files[0]["uploadUrl"]
        .as_str()
        .unwrap()
        .replace("/run-file/", "/blob/");
    assert_eq!(
        t.http.put(forged).body("x").send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let listing = t
        .run_fields(
            "e",
            "p",
            "r1",
            "fileCount files(names: [\"model.pt\"]) { edges { node { id name directUrl sizeBytes md5 mimetype } } }
             json: files(pattern: \"%.json\") { edges { node { name } } }",
        )
        .await;
    assert_eq!(listing["fileCount"], 2);
    let node = &listing["files"]["edges"][0]["node"];
    assert_eq!(node["sizeBytes"], 12);
    assert_eq!(node["md5"], "YHWPuU0vtYLeH9ttxOvLmA==");
    assert_eq!(listing["json"]["edges"][0]["node"]["name"], "ckpt/e1.json");
    let url = node["directUrl"].as_str().unwrap();
    let got = t.http.get(url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"binary\0bytes");
    let tampered = format!("{}x/model.pt", url.rsplit_once('/').unwrap().0);
    assert_eq!(
        t.http.get(tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let marked = t
        .gql(
            "mutation { markRunFilesUploaded(input: {entityName: \"e\", projectName: \"p\", runName: \"r1\", files: [\"model.pt\"]}) { success } }",
            Value::Null,
        )
        .await;
    assert_eq!(marked["markRunFilesUploaded"]["success"], true);

    let message = t
        .gql_error(
            "mutation { createRunFiles(input: {entityName: \"e\", projectName: \"p\", runName: \"r1\", files: [\"../x\"]}) { runID } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("invalid run file name"), "{message}");
}

async fn make_runs(t: &Fixture) {
    let runs = [
        (
            "a",
            "{\"branch\": {\"value\": \"main\"}, \"lr\": {\"value\": 0.1}}",
            vec!["x"],
            "{\"loss\": 3}",
            0,
        ),
        (
            "b",
            "{\"branch\": {\"value\": \"feat-x\"}, \"lr\": {\"value\": 0.01}}",
            vec!["x", "probe"],
            "{\"loss\": 1}",
            0,
        ),
        (
            "c",
            "{\"branch\": {\"value\": \"feat-x\"}, \"lr\": {\"value\": 0.001}}",
            vec!["probe"],
            "{\"loss\": 2}",
            1,
        ),
        ("d", "{\"lr\": {\"value\": 0.0001}}", vec![], "{}", -1),
    ];
    for (name, config, tags, summary, exit) in runs {
        t.upsert_run(
            "e",
            "p",
            name,
            json!({"config": config, "tags": tags, "summaryMetrics": summary, "displayName": format!("run-{name}")}),
        )
        .await;
        if exit >= 0 {
            t.file_stream("e", "p", name, json!({"complete": true, "exitcode": exit}))
                .await;
        }
    }
}

async fn run_names(t: &Fixture, filters: Value, order: &str) -> Vec<String> {
    let data = t
        .gql(
            "query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString) {
                project(name: $project, entityName: $entity) {
                    runCount(filters: $filters)
                    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
                        edges { node { name } cursor } pageInfo { endCursor hasNextPage } } } }",
            json!({"project": "p", "entity": "e", "order": order, "filters": filters.to_string()}),
        )
        .await;
    let names: Vec<String> = data["project"]["runs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(data["project"]["runCount"], names.len());
    names
}

#[tokio::test]
async fn runs_filter_order_and_page() {
    let t = Fixture::start().await;
    make_runs(&t).await;
    let cases = [
        (
            json!({"$and": [{"config.branch.value": "feat-x"}, {"state": "finished"}, {"tags": {"$in": ["probe"]}}]}),
            vec!["b"],
        ),
        (json!({"config.branch": "feat-x"}), vec!["b", "c"]),
        (json!({"state": {"$ne": "finished"}}), vec!["c", "d"]),
        (json!({"config.lr": {"$gte": 0.01}}), vec!["a", "b"]),
        (
            json!({"config.lr.value": {"$lt": 0.01, "$gt": 0.0005}}),
            vec!["c"],
        ),
        (json!({"summary_metrics.loss": {"$lte": 2}}), vec!["b", "c"]),
        (json!({"tags": {"$nin": ["x"]}}), vec!["c", "d"]),
        (json!({"config.branch": {"$exists": false}}), vec!["d"]),
        (
            json!({"displayName": {"$regex": "^run-[ab]$"}}),
            vec!["a", "b"],
        ),
        (
            json!({"$or": [{"name": "a"}, {"jobType": "nope"}, {"name": {"$in": ["d"]}}]}),
            vec!["a", "d"],
        ),
        (
            json!({"$nor": [{"name": "a"}, {"name": "b"}]}),
            vec!["c", "d"],
        ),
        (json!({"group": {"$eq": null}}), vec!["a", "b", "c", "d"]),
        (
            json!({"createdAt": {"$gt": "2000-01-01T00:00:00"}}),
            vec!["a", "b", "c", "d"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            run_names(&t, filter.clone(), "+created_at").await,
            expected,
            "{filter}"
        );
    }
    assert_eq!(
        run_names(&t, json!({}), "-created_at").await,
        ["d", "c", "b", "a"]
    );
    assert_eq!(
        run_names(&t, json!({}), "+config.lr.value").await,
        ["d", "c", "b", "a"]
    );
    assert_eq!(
        run_names(&t, json!({}), "-summary_metrics.loss").await,
        ["a", "c", "b", "d"]
    );
    assert_eq!(run_names(&t, json!({}), "+heartbeat_at").await.len(), 4);

    let message = t
        .gql_error(
            "{ project(name: \"p\", entityName: \"e\") { runs(filters: \"{\\\"$bogus\\\": 1}\") { edges { cursor } } } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("invalid run filter"), "{message}");

    // Paging: two at a time, newest first, until hasNextPage is false.
    let mut cursor = Value::Null;
    let mut seen = Vec::new();
    loop {
        let data = t
            .gql(
                "query($c: String) { project(name: \"p\", entityName: \"e\") {
                    runs(first: 2, after: $c, order: \"-created_at\") {
                        edges { node { name } } pageInfo { endCursor hasNextPage } } } }",
                json!({"c": cursor}),
            )
            .await;
        let runs = &data["project"]["runs"];
        seen.extend(
            runs["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["name"].as_str().unwrap().to_owned()),
        );
        if runs["pageInfo"]["hasNextPage"] == false {
            break;
        }
        cursor = runs["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["d", "c", "b", "a"]);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({"tags": ["keep"]}))
        .await;
    t.file_stream(
        "e",
        "p",
        "r1",
        json!({"files": {"wandb-history.jsonl": {"offset": 0, "content": [history_line(0), history_line(1)]}},
               "complete": true, "exitcode": 0}),
    )
    .await;
    let created = t
        .gql(
            "mutation { createRunFiles(input: {entityName: \"e\", projectName: \"p\", runName: \"r1\", files: [\"f.txt\"]}) { files { uploadUrl } } }",
            Value::Null,
        )
        .await;
    let upload = created["createRunFiles"]["files"][0]["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    t.http.put(&upload).body("kept").send().await.unwrap();

    let t = t.restart().await;
    let run = t
        .run_fields(
            "e",
            "p",
            "r1",
            "state tags historyLineCount files { edges { node { directUrl } } }",
        )
        .await;
    assert_eq!(run["state"], "finished");
    assert_eq!(run["tags"], json!(["keep"]));
    assert_eq!(run["historyLineCount"], 2);
    let url = run["files"]["edges"][0]["node"]["directUrl"]
        .as_str()
        .unwrap();
    assert_eq!(
        t.http.get(url).send().await.unwrap().text().await.unwrap(),
        "kept"
    );
}

#[tokio::test]
async fn alerts_are_stored_and_repeats_inside_the_window_suppressed() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let alert = "mutation NotifyScriptableRunAlert($title: String!, $wait: Duration) {
        notifyScriptableRunAlert(input: {entityName: \"e\", projectName: \"p\", runName: \"r1\", title: $title,
            text: \"t\", severity: WARN, waitDuration: $wait}) { success } }";
    for (title, wait) in [("a", 60_000), ("a", 60_000), ("b", 0), ("b", 0)] {
        let data = t.gql(alert, json!({"title": title, "wait": wait})).await;
        assert_eq!(data["notifyScriptableRunAlert"]["success"], true);
    }
    let alerts: Value = t
        .http
        .get(t.url("/mlwf/v1/alerts/e/p/r1"))
        .basic_auth("api", Some(KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let suppressed: Vec<bool> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["suppressed"].as_bool().unwrap())
        .collect();
    assert_eq!(suppressed, [false, true, false, false]);
    assert_eq!(alerts[0]["severity"], "WARN");
    let unauth = t
        .http
        .get(t.url("/mlwf/v1/alerts/e/p/r1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), StatusCode::UNAUTHORIZED);
}
