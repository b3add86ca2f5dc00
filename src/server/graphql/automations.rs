//! Automations, as the W&B SDK (`wandb.automations`) and `mlwf setup-automation` set them up:
//! webhook integrations, filter triggers, and their listings on `Entity` and `Project`.

use apollo_compiler::resolvers::{FieldError, ObjectValue, ResolveInfo};
use serde::Deserialize;
use serde_json::Value;

use super::engine::{arg, field_error, leaf, object, objects, unsupported, Page, Record, Res};
use super::project::ProjectObj;
use super::{viewer, Ctx};
use crate::server::ids;
use crate::server::store::automations::{
    self, IntegrationRow, NewIntegration, Scope, TriggerFields, TriggerRow,
};
use crate::server::store::wandb_time;

#[derive(Clone)]
pub struct IntegrationObj(pub IntegrationRow);

impl ObjectValue for IntegrationObj {
    fn type_name(&self) -> &str {
        "GenericWebhookIntegration"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        match info.field_name() {
            "id" => leaf(ids::encode("Integration", self.0.id)),
            "name" => leaf(&self.0.name),
            "urlEndpoint" => leaf(&self.0.url),
            _ => Err(unsupported(info, "GenericWebhookIntegration")),
        }
    }
}

#[derive(Clone)]
pub struct TriggerObj<'a> {
    ctx: &'a Ctx<'a>,
    row: TriggerRow,
}

impl ObjectValue for TriggerObj<'_> {
    fn type_name(&self) -> &str {
        "Trigger"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let row = &self.row;
        match info.field_name() {
            "id" => leaf(ids::encode("Trigger", row.id)),
            "createdAt" => leaf(wandb_time(&row.created_at)),
            "updatedAt" => leaf(wandb_time(&row.updated_at)),
            "name" => leaf(&row.name),
            "description" => leaf(&row.description),
            "enabled" => leaf(row.enabled),
            "scope" => match row.scope {
                Scope::Project(id) => object(ProjectObj::by_id(self.ctx, id)?),
                Scope::Entity(id) => {
                    let name = automations::entity_name(self.ctx.conn, id)?;
                    object(viewer::entity_record(self.ctx, id, name))
                }
            },
            "triggeringCondition" => object(
                Record::new("FilterEventTriggeringCondition")
                    .leaf("eventType", &row.event_type)
                    .leaf("filter", &row.event_filter),
            ),
            "triggeredAction" => self.action(),
            _ => Err(unsupported(info, "Trigger")),
        }
    }
}

impl<'a> TriggerObj<'a> {
    fn action<'b>(&'b self) -> Res<'b> {
        let row = &self.row;
        match row.action_type.as_str() {
            "GENERIC_WEBHOOK" => {
                let input = &row.action_config["genericWebhookActionInput"];
                let integration = input["integrationID"]
                    .as_i64()
                    .map(|id| automations::integration_by_id(self.ctx.conn, id))
                    .transpose()?
                    .flatten()
                    .ok_or_else(|| field_error("the automation's integration was deleted"))?;
                object(
                    Record::new("GenericWebhookTriggeredAction")
                        .leaf("requestPayload", input["requestPayload"].as_str())
                        .with("integration", move |_| {
                            object(IntegrationObj(integration.clone()))
                        }),
                )
            }
            _ => object(Record::new("NoOpTriggeredAction").leaf("noOp", true)),
        }
    }
}

/// `Entity.integrations`.
pub fn integrations<'a>(ctx: &'a Ctx<'a>, entity: &str, info: &ResolveInfo<'_>) -> Res<'a> {
    let rows = automations::integrations(ctx.conn, entity)?;
    object(page(
        "IntegrationConnection",
        "IntegrationEdge",
        rows.into_iter().map(|r| (r.id, IntegrationObj(r))),
        info,
    )?)
}

/// `Entity.triggers`; `filters` may pick one by `name`.
pub fn entity_triggers<'a>(ctx: &'a Ctx<'a>, entity: &str, info: &ResolveInfo<'_>) -> Res<'a> {
    let filters: Option<String> = arg(info, "filters")?;
    let name = filters
        .as_deref()
        .and_then(|f| serde_json::from_str::<Value>(f).ok())
        .and_then(|f| f["name"].as_str().map(str::to_owned));
    let rows = automations::entity_triggers(ctx.conn, entity)?;
    object(page(
        "TriggerConnection",
        "TriggerEdge",
        rows.into_iter()
            .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
            .map(|row| (row.id, TriggerObj { ctx, row })),
        info,
    )?)
}

/// `Project.triggers`.
pub fn project_triggers<'a>(ctx: &'a Ctx<'a>, project_id: i64) -> Res<'a> {
    let rows = automations::project_triggers(ctx.conn, project_id)?;
    objects(rows.into_iter().map(|row| TriggerObj { ctx, row }))
}

/// `Entity.projects`: the SDK's legacy automations listing walks it.
pub fn entity_projects<'a>(ctx: &'a Ctx<'a>, entity_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let projects = automations::entity_project_ids(ctx.conn, entity_id)?
        .into_iter()
        .map(|id| Ok((id, ProjectObj::by_id(ctx, id)?)))
        .collect::<Result<Vec<_>, FieldError>>()?;
    object(page("ProjectConnection", "ProjectEdge", projects, info)?)
}

/// A page by `first`/`after` over items keyed by increasing ids.
fn page<N: ObjectValue + Clone>(
    connection_type: &'static str,
    edge_type: &'static str,
    items: impl IntoIterator<Item = (i64, N)>,
    info: &ResolveInfo<'_>,
) -> Result<Page<N>, FieldError> {
    let first: Option<i64> = arg(info, "first")?;
    let after: Option<String> = arg(info, "after")?;
    let after: i64 = after.and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut items: Vec<(String, N)> = items
        .into_iter()
        .filter(|(id, _)| *id > after)
        .map(|(id, n)| (id.to_string(), n))
        .collect();
    let limit = first.unwrap_or(100).clamp(0, 1000) as usize;
    let has_next_page = items.len() > limit;
    items.truncate(limit);
    Ok(Page {
        connection_type,
        edge_type,
        items,
        has_next_page,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookInput {
    entity_name: String,
    name: String,
    url_endpoint: String,
    access_token_ref: Option<String>,
    secret_ref: Option<String>,
}

/// `createGenericWebhookIntegration`.
pub fn create_webhook<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: WebhookInput = arg(info, "input")?;
    let row = automations::create_integration(
        ctx.conn,
        &NewIntegration {
            entity: input.entity_name,
            name: input.name,
            url: input.url_endpoint,
            access_token_ref: input.access_token_ref.filter(|s| !s.is_empty()),
            secret_ref: input.secret_ref.filter(|s| !s.is_empty()),
        },
    )?;
    object(
        Record::new("CreateGenericWebhookIntegrationPayload")
            .with("integration", move |_| object(IntegrationObj(row.clone()))),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TriggerInput {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    scope_type: Option<String>,
    #[serde(rename = "scopeID")]
    scope_id: Option<String>,
    triggering_event_type: Option<String>,
    event_filter: Option<String>,
    triggered_action_type: Option<String>,
    triggered_action_config: Option<Value>,
}

impl TriggerInput {
    /// The store's fields: node ids decoded, the webhook's integration id made a number.
    fn fields(self) -> Result<TriggerFields, FieldError> {
        let scope = match (self.scope_type.as_deref(), self.scope_id.as_deref()) {
            (None, None) => None,
            (Some("PROJECT"), Some(id)) => Some(Scope::Project(decode("Project", id)?)),
            (Some("ENTITY"), Some(id)) => Some(Scope::Entity(decode("Entity", id)?)),
            (Some(other @ ("PROJECT" | "ENTITY")), None) => {
                return Err(field_error(format!("scopeID is required with {other}")))
            }
            (Some(other), _) => {
                return Err(field_error(format!(
                    "this server runs PROJECT and ENTITY automations only, not {other}"
                )))
            }
            (None, Some(_)) => return Err(field_error("scopeType is required with scopeID")),
        };
        let action_config = match self.triggered_action_config {
            Some(mut config) => {
                let input = &mut config["genericWebhookActionInput"];
                if let Some(id) = input.get("integrationID").and_then(Value::as_str) {
                    input["integrationID"] = decode("Integration", id)?.into();
                }
                Some(config)
            }
            None => None,
        };
        Ok(TriggerFields {
            name: self.name,
            description: self.description,
            enabled: self.enabled,
            scope,
            event_type: self.triggering_event_type,
            event_filter: self.event_filter,
            action_type: self.triggered_action_type,
            action_config,
        })
    }
}

fn decode(kind: &str, id: &str) -> Result<i64, FieldError> {
    ids::decode(kind, id).ok_or_else(|| field_error(format!("{id:?} is not a {kind} id")))
}

fn trigger_payload<'a>(ctx: &'a Ctx<'a>, type_name: &'static str, row: TriggerRow) -> Res<'a> {
    object(Record::new(type_name).with("trigger", move |_| {
        object(TriggerObj {
            ctx,
            row: row.clone(),
        })
    }))
}

/// `createFilterTrigger`.
pub fn create_trigger<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: TriggerInput = arg(info, "input")?;
    let row = automations::create_trigger(ctx.conn, &input.fields()?)?;
    trigger_payload(ctx, "CreateFilterTriggerPayload", row)
}

/// `updateFilterTrigger`.
pub fn update_trigger<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let mut input: TriggerInput = arg(info, "input")?;
    let id = input
        .id
        .take()
        .ok_or_else(|| field_error("id is required"))?;
    let id = decode("Trigger", &id)?;
    let row = automations::update_trigger(ctx.conn, id, &input.fields()?)?;
    trigger_payload(ctx, "UpdateFilterTriggerPayload", row)
}

#[derive(Deserialize)]
struct DeleteInput {
    #[serde(rename = "triggerID")]
    trigger_id: String,
}

/// `deleteTrigger`.
pub fn delete_trigger<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: DeleteInput = arg(info, "input")?;
    automations::delete_trigger(ctx.conn, decode("Trigger", &input.trigger_id)?)?;
    object(Record::new("DeleteTriggerPayload").leaf("success", true))
}
