//! W&B Launch run queues against mlwf's W&B-compatible server: queues and resource configs,
//! push, pop (priority, FIFO, lease), ack, fail, warnings, agents.

use std::time::Duration;

use mlwf::server::Tuning;
use serde_json::{json, Value};

use crate::util::Fixture;

const PROJECT: &str = "model-registry";

async fn create_queue(t: &Fixture, name: &str, prioritized: bool) -> String {
    let config = t
        .gql(
            "mutation($input: CreateDefaultResourceConfigInput!) {
                createDefaultResourceConfig(input: $input) { defaultResourceConfigID success } }",
            json!({"input": {
                "entityName": "e", "resource": "local-container",
                "config": "{\"resource_args\": {\"local-container\": {\"gpus\": \"{{gpus}}\", \"shm-size\": \"1g\"}}}",
                "templateVariables": "{\"gpus\": {\"type\": \"integer\", \"minimum\": 0}}"
            }}),
        )
        .await;
    let config_id = config["createDefaultResourceConfig"]["defaultResourceConfigID"].clone();
    let mut input = json!({"entityName": "e", "projectName": PROJECT, "queueName": name,
                           "access": "PROJECT", "defaultResourceConfigID": config_id});
    if prioritized {
        input["prioritizationMode"] = json!("V0");
    }
    let created = t
        .gql(
            "mutation($input: CreateRunQueueInput!) { createRunQueue(input: $input) { success queueID } }",
            json!({"input": input}),
        )
        .await;
    assert_eq!(created["createRunQueue"]["success"], true);
    created["createRunQueue"]["queueID"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn push(t: &Fixture, queue: &str, spec: Value, priority: Option<i64>) -> Value {
    let data = t
        .gql(
            "mutation($input: PushToRunQueueByNameInput!) { pushToRunQueueByName(input: $input) { runQueueItemId runSpec } }",
            json!({"input": {"entityName": "e", "projectName": PROJECT, "queueName": queue,
                             "runSpec": spec.to_string(), "priority": priority,
                             "templateVariableValues": "{\"gpus\": 2}"}}),
        )
        .await;
    data["pushToRunQueueByName"].clone()
}

async fn pop(t: &Fixture, queue: &str, agent: Option<&str>) -> Value {
    let data = t
        .gql(
            "mutation($input: PopFromRunQueueInput!) { popFromRunQueue(input: $input) { runQueueItemId runSpec } }",
            json!({"input": {"entityName": "e", "projectName": PROJECT, "queueName": queue, "launchAgentId": agent}}),
        )
        .await;
    data["popFromRunQueue"].clone()
}

async fn ack(t: &Fixture, item: &Value, run: &str) -> bool {
    let data = t
        .gql(
            "mutation($input: AckRunQueueItemInput!) { ackRunQueueItem(input: $input) { success } }",
            json!({"input": {"runQueueItemId": item, "runName": run}}),
        )
        .await;
    data["ackRunQueueItem"]["success"].as_bool().unwrap()
}

async fn items(t: &Fixture, queue: &str) -> Vec<Value> {
    let data = t
        .gql(
            "query($q: String!) { project(entityName: \"e\", name: \"model-registry\") {
                runQueue(name: $q) { runQueueItems(first: 100) { edges { node { id state associatedRunId } } } } } }",
            json!({"q": queue}),
        )
        .await;
    data["project"]["runQueue"]["runQueueItems"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn queues_push_pop_ack_fail_and_agents() {
    let t = Fixture::start().await;
    let queue_id = create_queue(&t, "gpu", true).await;
    let listed = t
        .gql(
            "query ProjectRunQueues($entity: String!, $projectName: String!) {
                project(entityName: $entity, name: $projectName) { runQueues { id name createdBy access } } }",
            json!({"entity": "e", "projectName": PROJECT}),
        )
        .await;
    assert_eq!(
        listed["project"]["runQueues"],
        json!([{"id": queue_id, "name": "gpu", "createdBy": "local", "access": "PROJECT"}])
    );

    // The queue's defaults and template values are merged into the spec agents receive.
    let low = push(
        &t,
        "gpu",
        json!({"job": "e/p/job:v1", "entity": "e", "project": "p"}),
        Some(3),
    )
    .await;
    let spec: Value = serde_json::from_str(low["runSpec"].as_str().unwrap()).unwrap();
    assert_eq!(spec["resource"], "local-container");
    assert_eq!(
        spec["resource_args"]["local-container"],
        json!({"gpus": 2, "shm-size": "1g"})
    );
    let medium = push(
        &t,
        "gpu",
        json!({"job": "j2", "resource_args": {"local-container": {"shm-size": "8g"}}}),
        None,
    )
    .await;
    let critical = push(&t, "gpu", json!({"job": "j3"}), Some(0)).await;

    let agent = t
        .gql(
            "mutation($input: CreateLaunchAgentInput!) { createLaunchAgent(input: $input) { launchAgentId } }",
            json!({"input": {"entityName": "e", "projectName": PROJECT, "runQueues": [queue_id],
                             "hostname": "box", "agentConfig": "{}", "version": "mlwf@0.1"}}),
        )
        .await;
    let agent_id = agent["createLaunchAgent"]["launchAgentId"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_query = "query LaunchAgent($agentId: ID!) { launchAgent(id: $agentId) {
        id name runQueues hostname agentStatus stopPolling heartbeatAt } }";
    let info = t.gql(agent_query, json!({"agentId": agent_id})).await["launchAgent"].clone();
    assert_eq!(info["runQueues"], json!([queue_id]));
    assert_eq!(info["stopPolling"], false);
    assert_eq!(info["agentStatus"], "POLLING");
    assert!(info["name"].as_str().unwrap().starts_with("agent-"));
    let updated = t
        .gql(
            "mutation($input: UpdateLaunchAgentInput!) { updateLaunchAgent(input: $input) { success } }",
            json!({"input": {"launchAgentId": agent_id, "agentStatus": "RUNNING"}}),
        )
        .await;
    assert_eq!(updated["updateLaunchAgent"]["success"], true);
    assert_eq!(
        t.gql(agent_query, json!({"agentId": agent_id})).await["launchAgent"]["agentStatus"],
        "RUNNING"
    );

    // Highest priority first (0), then the default (medium), then low (3).
    let first = pop(&t, "gpu", Some(&agent_id)).await;
    assert_eq!(first["runQueueItemId"], critical["runQueueItemId"]);
    assert_eq!(first["runSpec"]["job"], "j3");
    let second = pop(&t, "gpu", Some(&agent_id)).await;
    assert_eq!(second["runQueueItemId"], medium["runQueueItemId"]);
    assert_eq!(
        second["runSpec"]["resource_args"]["local-container"]["shm-size"],
        "8g"
    );
    let third = pop(&t, "gpu", None).await;
    assert_eq!(third["runQueueItemId"], low["runQueueItemId"]);
    assert!(pop(&t, "gpu", None).await.is_null());

    assert!(ack(&t, &first["runQueueItemId"], "run-1").await);
    assert!(
        !ack(&t, &first["runQueueItemId"], "run-2").await,
        "a second ack loses"
    );
    let failed = t
        .gql(
            "mutation($input: FailRunQueueItemInput!) { failRunQueueItem(input: $input) { success } }",
            json!({"input": {"runQueueItemId": second["runQueueItemId"], "message": "build broke",
                             "stage": "build", "filePaths": ["x/error/error.log"]}}),
        )
        .await;
    assert_eq!(failed["failRunQueueItem"]["success"], true);
    assert!(
        !ack(&t, &second["runQueueItemId"], "run-3").await,
        "failed items cannot be acked"
    );
    let warned = t
        .gql(
            "mutation($input: UpdateRunQueueItemWarningInput!) { updateRunQueueItemWarning(input: $input) { success } }",
            json!({"input": {"runQueueItemId": third["runQueueItemId"], "message": "slow pull", "stage": "Kubernetes", "filePaths": []}}),
        )
        .await;
    assert_eq!(warned["updateRunQueueItemWarning"]["success"], true);

    let states: Vec<(String, Value)> = items(&t, "gpu")
        .await
        .into_iter()
        .map(|i| {
            (
                i["state"].as_str().unwrap().to_owned(),
                i["associatedRunId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("LEASED".to_owned(), Value::Null),
            ("FAILED".to_owned(), Value::Null),
            ("CLAIMED".to_owned(), json!("run-1")),
        ]
    );
    let one = t
        .gql(
            "query($id: ID!) { project(entityName: \"e\", name: \"model-registry\") {
                runQueue(name: \"gpu\") { runQueueItem(id: $id) { state associatedRunId } } } }",
            json!({"id": first["runQueueItemId"]}),
        )
        .await;
    assert_eq!(
        one["project"]["runQueue"]["runQueueItem"]["associatedRunId"],
        "run-1"
    );

    // Legacy push by queue id, then removal.
    let pushed = t
        .gql(
            "mutation($input: PushToRunQueueInput!) { pushToRunQueue(input: $input) { runQueueItemId } }",
            json!({"input": {"queueID": queue_id, "runSpec": "{\"job\": \"j4\"}"}}),
        )
        .await;
    let item = pushed["pushToRunQueue"]["runQueueItemId"].clone();
    let deleted = t
        .gql(
            "mutation($input: DeleteFromRunQueueInput!) { deleteFromRunQueue(input: $input) { success } }",
            json!({"input": {"queueID": queue_id, "runQueueItemId": item}}),
        )
        .await;
    assert_eq!(deleted["deleteFromRunQueue"]["success"], true);
    assert!(pop(&t, "gpu", None).await.is_null());

    let message = t
        .gql_error(
            "mutation { popFromRunQueue(input: {entityName: \"e\", projectName: \"model-registry\", queueName: \"nope\"}) { runQueueItemId } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("not found"), "{message}");
}

#[tokio::test]
async fn unacked_items_return_to_the_queue_after_the_lease() {
    let t = Fixture::start_tuned(Tuning {
        queue_lease: Duration::from_millis(300),
        ..Tuning::default()
    })
    .await;
    create_queue(&t, "q", false).await;
    let a = push(&t, "q", json!({"job": "a"}), None).await;
    let b = push(&t, "q", json!({"job": "b"}), None).await;
    // Without prioritization, items come out first in, first out.
    let popped = pop(&t, "q", None).await;
    assert_eq!(popped["runQueueItemId"], a["runQueueItemId"]);
    let popped_b = pop(&t, "q", None).await;
    assert_eq!(popped_b["runQueueItemId"], b["runQueueItemId"]);
    assert!(ack(&t, &popped_b["runQueueItemId"], "run-b").await);
    assert!(
        pop(&t, "q", None).await.is_null(),
        "a leased item is not handed out twice"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(items(&t, "q").await[0]["state"], "PENDING");
    let again = pop(&t, "q", None).await;
    assert_eq!(
        again["runQueueItemId"], a["runQueueItemId"],
        "the expired lease frees the item"
    );
    assert!(ack(&t, &again["runQueueItemId"], "run-a").await);
    assert!(pop(&t, "q", None).await.is_null());
}

#[tokio::test]
async fn upsert_and_delete_queues_and_read_resource_configs() {
    let t = Fixture::start().await;
    let upserted = t
        .gql(
            "mutation($input: UpsertRunQueueInput!) { upsertRunQueue(input: $input) { success configSchemaValidationErrors } }",
            json!({"input": {"entityName": "e", "projectName": PROJECT, "queueName": "cpu",
                             "resourceType": "local-process", "resourceConfig": "{\"resource_args\": {\"local-process\": {}}}",
                             "templateVariables": "{\"n\": {\"type\": \"number\"}}",
                             "externalLinks": "{\"links\": []}"}}),
        )
        .await;
    assert_eq!(
        upserted["upsertRunQueue"],
        json!({"success": true, "configSchemaValidationErrors": []})
    );
    let queue = t
        .gql(
            "{ project(entityName: \"e\", name: \"model-registry\") { runQueue(name: \"cpu\") {
                id access defaultResourceConfigID prioritizationMode externalLinks } } }",
            Value::Null,
        )
        .await["project"]["runQueue"]
        .clone();
    assert_eq!(queue["externalLinks"], "{\"links\": []}");
    let config = t
        .gql(
            "query($id: ID!) { entity(name: \"e\") { defaultResourceConfig(id: $id) {
                config resource templateVariables { name schema } } } }",
            json!({"id": queue["defaultResourceConfigID"]}),
        )
        .await;
    let config = &config["entity"]["defaultResourceConfig"];
    assert_eq!(config["resource"], "local-process");
    assert_eq!(
        config["config"],
        json!({"resource_args": {"local-process": {}}})
    );
    assert_eq!(config["templateVariables"][0]["name"], "n");
    assert_eq!(
        config["templateVariables"][0]["schema"],
        "{\"type\":\"number\"}"
    );

    let message = t
        .gql_error(
            "mutation { createRunQueue(input: {entityName: \"e\", projectName: \"model-registry\", queueName: \"cpu\", access: PROJECT}) { success } }",
            Value::Null,
        )
        .await;
    assert!(message.contains("already exists"), "{message}");

    let deleted = t
        .gql(
            "mutation($id: ID!) { deleteRunQueues(input: {queueIDs: [$id]}) { success } }",
            json!({"id": queue["id"]}),
        )
        .await;
    assert_eq!(deleted["deleteRunQueues"]["success"], true);
    let gone = t
        .gql(
            "{ project(entityName: \"e\", name: \"model-registry\") { runQueues { name } } }",
            Value::Null,
        )
        .await;
    assert_eq!(gone["project"]["runQueues"], json!([]));
}
