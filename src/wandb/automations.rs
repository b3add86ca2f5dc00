//! W&B Automations through the same GraphQL the official SDK sends (`wandb.automations`):
//! webhook integrations and the filter triggers ("automations") that call them. Team secrets
//! have no public W&B API; mlwf's server takes them at `/mlwf/v1/secrets`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::{Connection, Pager};
use super::graphql::Operation;
use super::graphql::{
    CREATE_AUTOMATION, CREATE_GENERIC_WEBHOOK_INTEGRATION, DELETE_AUTOMATION,
    GET_ENTITY_AUTOMATIONS, INTEGRATIONS_BY_ENTITY, PROJECT_ID, UPDATE_AUTOMATION, UPSERT_MODEL,
};
use super::{Client, Error, Result};
use crate::secrets::Secret;

const PAGE: i64 = 100;

/// A generic webhook integration: where W&B sends an automation's request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookIntegration {
    pub id: String,
    pub name: String,
    #[serde(rename = "urlEndpoint")]
    pub url: String,
}

/// An automation as the server holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Automation {
    pub id: String,
    pub spec: AutomationSpec,
}

/// What an automation watching run states does: on `states` of runs in the project
/// `project_id`, POST `request_payload` through the integration `integration_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomationSpec {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub project_id: Option<String>,
    pub event_type: String,
    /// The `eventFilter` JSON, as W&B stores it (compared parsed, so key order does not count).
    pub event_filter: String,
    pub integration_id: Option<String>,
    pub request_payload: Option<String>,
}

impl AutomationSpec {
    /// A `RUN_STATE` automation on the project's runs entering one of `states` (`FINISHED`,
    /// `FAILED`...), sending `payload` to the integration.
    pub fn on_run_state(
        name: &str,
        description: &str,
        project_id: &str,
        states: &[&str],
        integration_id: &str,
        payload: &Value,
    ) -> AutomationSpec {
        // The shape the SDK writes: the run filter is itself a JSON string.
        let filter = json!({
            "run_filter": json!({"$and": []}).to_string(),
            "run_state_filter": {"states": states},
        });
        AutomationSpec {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            enabled: true,
            project_id: Some(project_id.to_owned()),
            event_type: "RUN_STATE".to_owned(),
            event_filter: filter.to_string(),
            integration_id: Some(integration_id.to_owned()),
            request_payload: Some(payload.to_string()),
        }
    }

    /// Whether `self` and `other` mean the same automation (JSON compared as values).
    pub fn same_as(&self, other: &AutomationSpec) -> bool {
        let parsed = |s: &Option<String>| {
            s.as_deref()
                .map(|s| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.into())))
        };
        let filter = |s: &str| -> Value {
            let mut v: Value = serde_json::from_str(s).unwrap_or(Value::String(s.into()));
            // The nested run filter is a string: compare what it says.
            if let Some(inner) = v.get("run_filter").and_then(Value::as_str) {
                v["run_filter"] = serde_json::from_str(inner).unwrap_or(Value::Null);
            }
            v
        };
        self.name == other.name
            && self.description == other.description
            && self.enabled == other.enabled
            && self.project_id == other.project_id
            && self.event_type == other.event_type
            && filter(&self.event_filter) == filter(&other.event_filter)
            && self.integration_id == other.integration_id
            && parsed(&self.request_payload) == parsed(&other.request_payload)
    }

    fn input(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "scopeType": "PROJECT",
            "scopeID": self.project_id,
            "triggeringEventType": self.event_type,
            "eventFilter": self.event_filter,
            "triggeredActionType": "GENERIC_WEBHOOK",
            "triggeredActionConfig": {
                "genericWebhookActionInput": {
                    "integrationID": self.integration_id,
                    "requestPayload": self.request_payload,
                }
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrigger {
    id: String,
    name: String,
    description: Option<String>,
    enabled: bool,
    scope: Option<RawScope>,
    event: Option<RawEvent>,
    action: Option<RawAction>,
}

#[derive(Deserialize)]
struct RawScope {
    #[serde(rename = "__typename")]
    typename: String,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_type: Option<String>,
    filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAction {
    integration: Option<RawId>,
    request_payload: Option<String>,
}

#[derive(Deserialize)]
struct RawId {
    id: String,
}

impl From<RawTrigger> for Automation {
    fn from(raw: RawTrigger) -> Automation {
        let event = raw.event;
        let action = raw.action;
        Automation {
            id: raw.id,
            spec: AutomationSpec {
                name: raw.name,
                description: raw.description,
                enabled: raw.enabled,
                project_id: raw
                    .scope
                    .filter(|s| s.typename == "Project")
                    .and_then(|s| s.id),
                event_type: event
                    .as_ref()
                    .and_then(|e| e.event_type.clone())
                    .unwrap_or_default(),
                event_filter: event.and_then(|e| e.filter).unwrap_or_default(),
                integration_id: action
                    .as_ref()
                    .and_then(|a| a.integration.as_ref())
                    .map(|i| i.id.clone()),
                request_payload: action.and_then(|a| a.request_payload),
            },
        }
    }
}

#[derive(Deserialize)]
struct TriggerPayload {
    trigger: Option<RawTrigger>,
}

impl Client {
    /// The project's node id, creating the project if it does not exist yet.
    pub async fn ensure_project(&self, entity: &str, project: &str) -> Result<String> {
        let found: Value = self
            .transport()
            .graphql(&PROJECT_ID, json!({"entity": entity, "project": project}))
            .await?;
        if let Some(id) = found.pointer("/project/id").and_then(Value::as_str) {
            return Ok(id.to_owned());
        }
        #[derive(Deserialize)]
        struct Upserted {
            project: Option<RawId>,
        }
        let upserted: Option<Upserted> = self
            .mutate(
                &UPSERT_MODEL,
                "upsertModel",
                json!({"name": project, "entityName": entity}),
            )
            .await?;
        upserted
            .and_then(|u| u.project)
            .map(|p| p.id)
            .ok_or_else(|| Error::NotFound(format!("project {entity}/{project}")))
    }

    /// The entity's generic webhook integrations (Slack ones are left out).
    pub async fn webhook_integrations(&self, entity: &str) -> Result<Vec<WebhookIntegration>> {
        #[derive(Deserialize)]
        struct Node {
            #[serde(rename = "__typename")]
            typename: String,
            #[serde(flatten)]
            fields: Value,
        }
        let nodes: Vec<Node> = self
            .every_page(&INTEGRATIONS_BY_ENTITY, entity, "/entity/integrations")
            .await?;
        Ok(nodes
            .into_iter()
            .filter(|n| n.typename == "GenericWebhookIntegration")
            .filter_map(|n| serde_json::from_value(n.fields).ok())
            .collect())
    }

    /// Creates a webhook integration; `access_token_ref` and `secret_ref` name team secrets
    /// (the Bearer token, the HMAC signing key).
    pub async fn create_webhook_integration(
        &self,
        entity: &str,
        name: &str,
        url: &str,
        access_token_ref: Option<&str>,
        secret_ref: Option<&str>,
    ) -> Result<WebhookIntegration> {
        #[derive(Deserialize)]
        struct Created {
            integration: Option<WebhookIntegration>,
        }
        let input = json!({
            "entityName": entity,
            "name": name,
            "urlEndpoint": url,
            "accessTokenRef": access_token_ref,
            "secretRef": secret_ref,
        });
        let created: Option<Created> = self
            .mutate(
                &CREATE_GENERIC_WEBHOOK_INTEGRATION,
                "result",
                json!({ "input": input }),
            )
            .await?;
        created
            .and_then(|c| c.integration)
            .ok_or_else(|| Error::NotFound(format!("the new integration {name}")))
    }

    /// The entity's automations, oldest first.
    pub async fn automations(&self, entity: &str) -> Result<Vec<Automation>> {
        let raw: Vec<RawTrigger> = self
            .every_page(&GET_ENTITY_AUTOMATIONS, entity, "/scope/triggers")
            .await?;
        Ok(raw.into_iter().map(Automation::from).collect())
    }

    /// The nodes of the connection at `pointer`, over all its pages, of an operation that
    /// takes `$entity`, `$cursor` and `$perPage`.
    async fn every_page<T: for<'de> Deserialize<'de>>(
        &self,
        op: &Operation,
        entity: &str,
        pointer: &str,
    ) -> Result<Vec<T>> {
        let mut pager = Pager::default();
        let mut found = Vec::new();
        while !pager.is_done() {
            let data: Value = self
                .transport()
                .graphql(
                    op,
                    json!({"entity": entity, "cursor": pager.cursor(), "perPage": PAGE}),
                )
                .await?;
            let page: Option<Connection<T>> = data
                .pointer(pointer)
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| self.transport().unexpected(op, e.to_string()))?;
            found.extend(pager.advance(page));
        }
        Ok(found)
    }

    pub async fn create_automation(&self, spec: &AutomationSpec) -> Result<Automation> {
        let created: Option<TriggerPayload> = self
            .mutate(&CREATE_AUTOMATION, "result", json!({"input": spec.input()}))
            .await?;
        created
            .and_then(|c| c.trigger)
            .map(Automation::from)
            .ok_or_else(|| Error::NotFound(format!("the new automation {}", spec.name)))
    }

    pub async fn update_automation(&self, id: &str, spec: &AutomationSpec) -> Result<Automation> {
        let mut input = spec.input();
        input["id"] = json!(id);
        let updated: Option<TriggerPayload> = self
            .mutate(&UPDATE_AUTOMATION, "result", json!({ "input": input }))
            .await?;
        updated
            .and_then(|c| c.trigger)
            .map(Automation::from)
            .ok_or_else(|| Error::NotFound(format!("the automation {}", spec.name)))
    }

    pub async fn delete_automation(&self, id: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Deleted {
            success: Option<bool>,
        }
        let deleted: Option<Deleted> = self
            .mutate(&DELETE_AUTOMATION, "result", json!({ "id": id }))
            .await?;
        Ok(deleted.and_then(|d| d.success).unwrap_or(false))
    }

    /// Sets a team secret where the server takes one through its API (mlwf's does): `Some`
    /// with whether the value changed, `None` from a server without that API (W&B: its team
    /// settings page holds them).
    pub async fn set_team_secret(
        &self,
        entity: &str,
        name: &str,
        value: &Secret,
    ) -> Result<Option<bool>> {
        let url = self
            .transport()
            .endpoint(&["mlwf", "v1", "secrets", entity, name]);
        let body = serde_json::to_vec(&json!({"value": value.expose_secret()}))
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let policy = &self.transport().tuning().graphql_retry;
        match self
            .transport()
            .post_json("set team secret", &url, &body, policy)
            .await
        {
            Ok(answer) => Ok(Some(answer["changed"].as_bool().unwrap_or(true))),
            Err(Error::Http { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The names of the entity's team secrets, where the server lists them (`None`: W&B).
    pub async fn team_secret_names(&self, entity: &str) -> Result<Option<Vec<String>>> {
        self.mlwf_read("team secrets", &["secrets", entity]).await
    }
}
