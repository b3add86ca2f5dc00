//! Artifacts against mlwf's W&B-compatible server, in the order the SDK logs them: create,
//! manifest, files, PUT, manifest with digest, PUT, commit; then reads, aliases and downloads.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::util::{Fixture, KEY};

fn md5_base64(bytes: &[u8]) -> String {
    STANDARD.encode(Md5::digest(bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

const CREATE: &str = "mutation CreateArtifact($input: CreateArtifactInput!) {
    createArtifact(input: $input) { artifact { id state artifactSequence { latestArtifact { id } } } } }";
const MANIFEST: &str = "mutation CreateArtifactManifest($artifactID: ID!, $digest: String!, $includeUpload: Boolean!) {
    createArtifactManifest(input: {artifactID: $artifactID, baseArtifactID: null, name: \"wandb_manifest.json\",
        digest: $digest, entityName: \"e\", projectName: \"p\", runName: \"r1\", type: FULL}) {
      artifactManifest { id file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) } } } }";
const FILES: &str = "mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) {
    createArtifactFiles(input: $input) { files { edges { node { storagePath uploadUrl uploadHeaders
        uploadMultipartUrls { uploadID } artifact { id } } } } } }";
const COMMIT: &str = "mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest state versionIndex } } }";
const MEMBERSHIP: &str = "query($name: String!) { project(name: \"p\", entityName: \"e\") {
    artifactCollectionMembership(name: $name) { __typename id versionIndex aliases { __typename alias }
      artifactCollection { __typename name project { name entity { name } } }
      artifact { __typename id digest state size fileCount metadata versionIndex artifactType { name }
                 ttlDurationSeconds ttlIsInherited tags { name } } } } }";

fn create_input(digest: &str, aliases: &[&str]) -> Value {
    json!({"input": {
        "entityName": "e", "projectName": "p", "runName": "r1", "artifactTypeName": "model",
        "artifactCollectionName": "m", "digest": digest, "digestAlgorithm": "MANIFEST_MD5",
        "aliases": aliases.iter().map(|a| json!({"alias": a, "artifactCollectionName": "m"})).collect::<Vec<_>>(),
        "metadata": "{\"k\": \"v\"}", "enableDigestDeduplication": true, "clientID": "c1", "sequenceClientID": "s1",
        "historyStep": 3
    }})
}

/// Logs one version holding `files` like the SDK does; returns its id.
async fn log_version(
    t: &Fixture,
    digest: &str,
    aliases: &[&str],
    files: &[(&str, &[u8])],
) -> String {
    let created = t.gql(CREATE, create_input(digest, aliases)).await;
    let artifact = &created["createArtifact"]["artifact"];
    assert_eq!(artifact["state"], "PENDING");
    let id = artifact["id"].as_str().unwrap().to_owned();
    let manifest = t
        .gql(
            MANIFEST,
            json!({"artifactID": id, "digest": "", "includeUpload": false}),
        )
        .await;
    let manifest_id = manifest["createArtifactManifest"]["artifactManifest"]["id"].clone();

    let specs: Vec<Value> = files
        .iter()
        .map(|(name, body)| {
            json!({"artifactID": id, "artifactManifestID": manifest_id, "name": name,
                   "md5": md5_base64(body), "mimetype": null, "uploadPartsInput": null})
        })
        .collect();
    let uploads = t
        .gql(FILES, json!({"input": {"artifactFiles": specs, "storageLayout": "V2", "cloudRegionID": null, "clientMutationId": null}}))
        .await;
    let edges = uploads["createArtifactFiles"]["files"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), files.len());
    for (edge, (_, body)) in edges.iter().zip(files) {
        let node = &edge["node"];
        assert_eq!(node["artifact"]["id"], id.as_str());
        // Content stored before needs no upload.
        let Some(url) = node["uploadUrl"].as_str() else {
            continue;
        };
        let header = node["uploadHeaders"][0].as_str().unwrap();
        let (name, value) = header.split_once(':').unwrap();
        let put = t
            .http
            .put(url)
            .header(name, value)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK);
    }

    let contents: serde_json::Map<String, Value> = files
        .iter()
        .map(|(name, body)| {
            (
                name.to_string(),
                json!({"digest": md5_base64(body), "size": body.len(), "birthArtifactID": id}),
            )
        })
        .collect();
    let manifest_bytes = serde_json::to_vec(&json!({
        "version": 1, "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents
    }))
    .unwrap();
    let manifest = t
        .gql(
            MANIFEST,
            json!({"artifactID": id, "digest": md5_base64(&manifest_bytes), "includeUpload": true}),
        )
        .await;
    let file = &manifest["createArtifactManifest"]["artifactManifest"]["file"];
    let put = t
        .http
        .put(file["uploadUrl"].as_str().unwrap())
        .body(manifest_bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let committed = t.gql(COMMIT, json!({"artifactID": id})).await;
    assert_eq!(
        committed["commitArtifact"]["artifact"]["state"],
        "COMMITTED"
    );
    id
}

async fn membership(t: &Fixture, name: &str) -> Value {
    t.gql(MEMBERSHIP, json!({"name": name})).await["project"]["artifactCollectionMembership"]
        .clone()
}

fn aliases(m: &Value) -> Vec<String> {
    let mut a: Vec<String> = m["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap().to_owned())
        .collect();
    a.sort();
    a
}

#[tokio::test]
async fn log_commit_read_and_download_an_artifact() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let body: &[u8] = b"model weights v0";
    let id = log_version(
        &t,
        "digest-0",
        &["latest", "best"],
        &[("model.pt", body), ("sub/cfg.json", b"{}")],
    )
    .await;

    let m = membership(&t, "m:latest").await;
    assert_eq!(m["__typename"], "ArtifactCollectionMembership");
    assert_eq!(m["versionIndex"], 0);
    assert_eq!(aliases(&m), ["best", "latest", "v0"]);
    assert_eq!(m["artifactCollection"]["__typename"], "ArtifactSequence");
    assert_eq!(m["artifactCollection"]["project"]["entity"]["name"], "e");
    let artifact = &m["artifact"];
    assert_eq!(artifact["__typename"], "Artifact");
    assert_eq!(artifact["id"], id.as_str());
    assert_eq!(artifact["size"], body.len() + 2);
    assert_eq!(artifact["fileCount"], 2);
    assert_eq!(artifact["artifactType"]["name"], "model");
    assert_eq!(artifact["metadata"], "{\"k\": \"v\"}");
    assert_eq!(artifact["ttlDurationSeconds"], -2);
    assert_eq!(artifact["ttlIsInherited"], true);
    assert_eq!(membership(&t, "m:v0").await["artifact"]["id"], id.as_str());
    assert_eq!(
        membership(&t, "m:best").await["artifact"]["id"],
        id.as_str()
    );
    assert!(membership(&t, "m:v7").await.is_null());
    assert!(membership(&t, "nope:latest").await.is_null());

    // The manifest is fetched without credentials, like the SDK does.
    let manifest = t
        .gql(
            "query FetchArtifactManifest($id: ID!) { artifact(id: $id) { currentManifest { file { directUrl } } } }",
            json!({"id": id}),
        )
        .await;
    let url = manifest["artifact"]["currentManifest"]["file"]["directUrl"]
        .as_str()
        .unwrap();
    let manifest: Value = t.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(manifest["contents"]["model.pt"]["digest"], md5_base64(body));

    let files = t
        .gql(
            "query GetArtifactMembershipFileUrls($entity: String!, $project: String!, $collection: String!, $alias: String!, $cursor: String, $perPage: Int) {
                project(name: $project, entityName: $entity) { artifactCollection(name: $collection) { __typename
                    artifactMembership(aliasName: $alias) { files(after: $cursor, first: $perPage) {
                        pageInfo { __typename endCursor hasNextPage } edges { node { __typename name directUrl } } } } } } }",
            json!({"entity": "e", "project": "p", "collection": "m", "alias": "v0", "cursor": null, "perPage": 1}),
        )
        .await;
    let page = &files["project"]["artifactCollection"]["artifactMembership"]["files"];
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["edges"][0]["node"]["name"], "model.pt");
    let url = page["edges"][0]["node"]["directUrl"].as_str().unwrap();
    assert_eq!(
        t.http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        body
    );

    // The URLs the SDK builds itself when it has none (authenticated).
    let v2 = t.url(&format!(
        "/artifactsV2/default/e/p/m/{id}/{}/model.pt",
        md5_hex(body)
    ));
    let got = t
        .http
        .get(&v2)
        .basic_auth("api", Some(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), body);
    assert_eq!(
        t.http.get(&v2).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let v1 = t.url(&format!("/artifacts/e/{}", md5_hex(body)));
    let got = t
        .http
        .get(&v1)
        .basic_auth("api", Some(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), body);

    // Type lookup (the SDK checks it before logging) and listings.
    let ty = t
        .gql(
            "query ArtifactType($entity: String, $project: String, $name: String!) {
                project(name: $project, entityName: $entity) { artifact(name: $name) { artifactType { name } } } }",
            json!({"entity": "e", "project": "p", "name": "m:latest"}),
        )
        .await;
    assert_eq!(ty["project"]["artifact"]["artifactType"]["name"], "model");
    let by_type = t
        .gql(
            "{ project(name: \"p\", entityName: \"e\") { artifactType(name: \"model\") {
                artifactCollections { edges { node { name ... on ArtifactSequence { latestArtifact { versionIndex } } } } } } } }",
            Value::Null,
        )
        .await;
    assert_eq!(
        by_type["project"]["artifactType"]["artifactCollections"]["edges"][0]["node"]["name"],
        "m"
    );
}

#[tokio::test]
async fn versions_aliases_move_and_identical_content_dedups() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let v0 = log_version(&t, "digest-0", &["latest", "best"], &[("a.txt", b"zero")]).await;
    // The second version shares a file with the first: no upload URL for it.
    let v1 = log_version(
        &t,
        "digest-1",
        &["latest"],
        &[("a.txt", b"zero"), ("b.txt", b"one")],
    )
    .await;
    let m1 = membership(&t, "m:latest").await;
    assert_eq!(m1["artifact"]["id"], v1.as_str());
    assert_eq!(m1["versionIndex"], 1);
    assert_eq!(aliases(&m1), ["latest", "v1"]);
    assert_eq!(aliases(&membership(&t, "m:v0").await), ["best", "v0"]);

    // Moving `best` takes it off v0.
    let add = "mutation($input: AddAliasesInput!) { addAliases(input: $input) { success } }";
    let alias = |a: &str| json!({"alias": a, "artifactCollectionName": "m", "entityName": "e", "projectName": "p"});
    t.gql(
        add,
        json!({"input": {"artifactID": v1, "aliases": [alias("best"), alias("prod")]}}),
    )
    .await;
    assert_eq!(aliases(&membership(&t, "m:v0").await), ["v0"]);
    assert_eq!(
        aliases(&membership(&t, "m:best").await),
        ["best", "latest", "prod", "v1"]
    );
    t.gql(
        "mutation($input: DeleteAliasesInput!) { deleteAliases(input: $input) { success } }",
        json!({"input": {"artifactID": v1, "aliases": [alias("prod")]}}),
    )
    .await;
    assert!(membership(&t, "m:prod").await.is_null());
    let message = t
        .gql_error(
            add,
            json!({"input": {"artifactID": v0, "aliases": [alias("v1")]}}),
        )
        .await;
    assert!(message.contains("reserved"), "{message}");

    // updateArtifact (the SDK's artifact.save()).
    let updated = t
        .gql(
            "mutation($input: UpdateArtifactInput!) { updateArtifact(input: $input) { artifact { description metadata tags { name } } } }",
            json!({"input": {"artifactID": v0, "description": "first", "metadata": "{\"x\": 1}", "tagsToAdd": [{"tagName": "t1"}]}}),
        )
        .await;
    assert_eq!(
        updated["updateArtifact"]["artifact"]["description"],
        "first"
    );
    assert_eq!(
        updated["updateArtifact"]["artifact"]["tags"][0]["name"],
        "t1"
    );

    // Logging the latest content again returns the committed version.
    let again = t
        .gql(CREATE, create_input("digest-1", &["latest", "again"]))
        .await;
    let artifact = &again["createArtifact"]["artifact"];
    assert_eq!(artifact["state"], "COMMITTED");
    assert_eq!(artifact["id"], v1.as_str());
    assert_eq!(
        artifact["artifactSequence"]["latestArtifact"]["id"],
        v1.as_str()
    );
    assert_eq!(
        membership(&t, "m:again").await["artifact"]["id"],
        v1.as_str()
    );

    // Commit is idempotent.
    let committed = t.gql(COMMIT, json!({"artifactID": v1})).await;
    assert_eq!(committed["commitArtifact"]["artifact"]["versionIndex"], 1);

    // A different type under the same name is refused.
    let mut input = create_input("digest-2", &["latest"]);
    input["input"]["artifactTypeName"] = json!("dataset");
    let message = t.gql_error(CREATE, input).await;
    assert!(message.contains("of type model"), "{message}");

    // useArtifact links a version as a run input.
    let used = t
        .gql(
            "mutation($input: UseArtifactInput!) { useArtifact(input: $input) { artifact { id } } }",
            json!({"input": {"entityName": "e", "projectName": "p", "runName": "r1", "artifactID": v0}}),
        )
        .await;
    assert_eq!(used["useArtifact"]["artifact"]["id"], v0.as_str());
}

#[tokio::test]
async fn uploads_are_checked_and_commits_need_every_file() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let created = t.gql(CREATE, create_input("d", &["latest"])).await;
    let id = created["createArtifact"]["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploads = t
        .gql(
            FILES,
            json!({"input": {"storageLayout": "V2", "artifactFiles": [
                {"artifactID": id, "name": "x.bin", "md5": md5_base64(b"right")}]}}),
        )
        .await;
    let url = uploads["createArtifactFiles"]["files"]["edges"][0]["node"]["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wrong bytes for the announced MD5.
    let put = t.http.put(&url).body("wrong").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::BAD_REQUEST);
    // Right bytes, wrong Content-MD5 header.
    let put = t
        .http
        .put(&url)
        .header("Content-MD5", md5_base64(b"other"))
        .body("right")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::BAD_REQUEST);

    let manifest = serde_json::to_vec(
        &json!({"version": 1, "storagePolicy": "wandb-storage-policy-v1",
        "contents": {"x.bin": {"digest": md5_base64(b"right"), "size": 5}}}),
    )
    .unwrap();
    let m = t
        .gql(
            MANIFEST,
            json!({"artifactID": id, "digest": md5_base64(&manifest), "includeUpload": true}),
        )
        .await;
    let manifest_url = m["createArtifactManifest"]["artifactManifest"]["file"]["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    // A manifest that is not the one announced is refused.
    let put = t.http.put(&manifest_url).body("{}").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        t.http
            .put(&manifest_url)
            .body(manifest)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let message = t.gql_error(COMMIT, json!({"artifactID": id})).await;
    assert!(
        message.contains("x.bin") && message.contains("not uploaded"),
        "{message}"
    );
    assert!(membership(&t, "m:latest").await.is_null());

    assert_eq!(
        t.http
            .put(&url)
            .body("right")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let committed = t.gql(COMMIT, json!({"artifactID": id})).await;
    assert_eq!(committed["commitArtifact"]["artifact"]["versionIndex"], 0);

    let message = t
        .gql_error(
            "mutation($id: ID!) { createArtifactManifest(input: {artifactID: $id, name: \"m\", digest: \"\",
                entityName: \"e\", projectName: \"p\", runName: \"r1\", type: INCREMENTAL}) { artifactManifest { id } } }",
            json!({"id": id}),
        )
        .await;
    assert!(message.contains("FULL"), "{message}");
}

/// `wandb job create` creates the job version itself, with `{"_partial": true}` metadata, then
/// `log_artifact` creates it again under the same clientID and digest: both calls must name one
/// version, the first call's metadata kept, the second call's aliases added.
#[tokio::test]
async fn a_repeated_create_under_one_client_id_is_the_same_version() {
    let t = Fixture::start().await;
    t.upsert_run("e", "p", "r1", json!({})).await;
    let mut first = create_input("digest-job", &[]);
    first["input"]["metadata"] = json!("{\"_partial\": true}");
    let first = t.gql(CREATE, first).await["createArtifact"]["artifact"]["id"].clone();
    // The second create, then the upload and commit, as `log_artifact` does them.
    let id = log_version(&t, "digest-job", &["feat-x"], &[("wandb-job.json", b"{}")]).await;
    assert_eq!(json!(id), first, "one version");
    let member = t.gql(MEMBERSHIP, json!({"name": "m:feat-x"})).await;
    let member = &member["project"]["artifactCollectionMembership"];
    assert_eq!(member["artifact"]["id"], first, "{member}");
    assert_eq!(member["artifact"]["state"], "COMMITTED");
    assert_eq!(member["artifact"]["metadata"], "{\"_partial\": true}");
    // Another digest under the same clientID is another version.
    let other = t.gql(CREATE, create_input("digest-other", &[])).await;
    assert_ne!(other["createArtifact"]["artifact"]["id"], first);
}

/// `wandb job create` deletes its hidden run last: the run goes, the job artifact it logged stays.
#[tokio::test]
async fn delete_run_removes_the_run_and_keeps_its_artifacts() {
    let t = Fixture::start().await;
    let bucket = t.upsert_run("e", "p", "r1", json!({})).await;
    let run_id = bucket["bucket"]["id"].as_str().unwrap().to_owned();
    let id = log_version(&t, "digest-kept", &[], &[("a.txt", b"kept")]).await;
    let deleted = t
        .gql(
            "mutation DeleteRun($id: ID!) { deleteRun(input: {id: $id}) { clientMutationId } }",
            json!({"id": run_id}),
        )
        .await;
    assert_eq!(deleted["deleteRun"]["clientMutationId"], Value::Null);
    assert_eq!(t.run_fields("e", "p", "r1", "name").await, Value::Null);
    let member = t.gql(MEMBERSHIP, json!({"name": "m:latest"})).await;
    assert_eq!(
        member["project"]["artifactCollectionMembership"]["artifact"]["id"],
        json!(id)
    );
    let again = t
        .gql_error(
            "mutation DeleteRun($id: ID!) { deleteRun(input: {id: $id}) { clientMutationId } }",
            json!({"id": run_id}),
        )
        .await;
    assert!(again.contains("not found"), "{again}");
}
