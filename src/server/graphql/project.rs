//! `Project` (alias `model`): the hub from which runs, artifacts and run queues are read.

use apollo_compiler::resolvers::{FieldError, ObjectValue, ResolveInfo};
use serde::Deserialize;

use super::engine::{arg, leaf, nullable, object, unsupported, Record, Res};
use super::{artifacts, automations, launch, runs, viewer, Ctx};
use crate::server::ids;
use crate::server::store::{
    ensure_project, find_project, project_by_id, set_project_description, wandb_time, ProjectRow,
};

#[derive(Clone)]
pub struct ProjectObj<'a> {
    pub ctx: &'a Ctx<'a>,
    pub row: ProjectRow,
}

impl<'a> ProjectObj<'a> {
    pub fn by_id(ctx: &'a Ctx<'a>, id: i64) -> Result<ProjectObj<'a>, FieldError> {
        Ok(ProjectObj {
            ctx,
            row: project_by_id(ctx.conn, id)?,
        })
    }
}

/// `project(name, entityName)`; null when it does not exist (nothing was logged to it yet).
pub fn project<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let name: Option<String> = arg(info, "name")?;
    let entity: Option<String> = arg(info, "entityName")?;
    let entity = entity.as_deref().unwrap_or(viewer::DEFAULT_ENTITY);
    let Some(name) = name else {
        return nullable(None::<ProjectObj<'a>>);
    };
    let row = find_project(ctx.conn, entity, &name)?;
    nullable(row.map(|row| ProjectObj { ctx, row }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertModelInput {
    name: Option<String>,
    entity_name: Option<String>,
    description: Option<String>,
}

/// `upsertModel`: creates a project (W&B's `Api.create_project`).
pub fn upsert_model<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpsertModelInput = arg(info, "input")?;
    let name = input.name.unwrap_or_else(|| "uncategorized".to_owned());
    let entity = input
        .entity_name
        .as_deref()
        .unwrap_or(viewer::DEFAULT_ENTITY);
    let existed = find_project(ctx.conn, entity, &name)?.is_some();
    let id = ensure_project(ctx.conn, entity, &name)?;
    if let Some(description) = &input.description {
        set_project_description(ctx.conn, id, description)?;
    }
    let project = ProjectObj::by_id(ctx, id)?;
    object(
        Record::new("UpsertModelPayload")
            .leaf("inserted", !existed)
            .with("project", move |_| object(project.clone()))
            .with("model", move |_| object(ProjectObj::by_id(ctx, id)?)),
    )
}

impl ObjectValue for ProjectObj<'_> {
    fn type_name(&self) -> &str {
        "Project"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        let row = &self.row;
        match info.field_name() {
            "id" => leaf(ids::encode("Project", row.id)),
            "internalId" => leaf(row.id.to_string()),
            "name" => leaf(&row.name),
            "entityName" => leaf(&row.entity_name),
            "entity" => object(viewer::entity_record(
                ctx,
                row.entity_id,
                row.entity_name.clone(),
            )),
            "readOnly" => leaf(false),
            "description" => leaf(&row.description),
            "access" => leaf("PRIVATE"),
            "views" => leaf(None::<()>),
            "createdAt" => leaf(wandb_time(&row.created_at)),
            "isBenchmark" => leaf(false),
            "user" => object(viewer::user()),
            "triggers" => automations::project_triggers(ctx, row.id),
            "runCount" => runs::run_count(ctx, row.id, info),
            "runs" => runs::runs(ctx, row.id, info),
            "run" | "bucket" => runs::run(ctx, row.id, info),
            "artifact" => artifacts::project_artifact(ctx, row.id, info),
            "artifactType" => artifacts::project_artifact_type(ctx, row.id, info),
            "artifactCollection" => artifacts::project_collection(ctx, row.id, info),
            "artifactCollectionMembership" => artifacts::project_membership(ctx, row.id, info),
            "runQueues" => launch::run_queues(ctx, row.id),
            "runQueue" => launch::run_queue(ctx, row.id, info),
            _ => Err(unsupported(info, "Project")),
        }
    }
}
