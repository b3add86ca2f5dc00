//! GraphQL resolvers, grouped per domain. `Root` answers the top-level Query and Mutation fields
//! and hands each to its domain module.

pub mod engine;

mod artifacts;
mod automations;
mod files;
pub(crate) mod launch;
mod project;
mod runs;
mod viewer;

use apollo_compiler::resolvers::{ObjectValue, ResolveInfo};
use rusqlite::Connection;

use self::engine::{unsupported, Res};
use super::routes::storage::Urls;
use super::store::{atomically, FileDirs};

pub use self::viewer::DEFAULT_ENTITY;

/// What resolvers work with: the request's database connection (inside its transaction), URL
/// construction for this request's host, and settings.
pub struct Ctx<'c> {
    pub conn: &'c Connection,
    pub urls: &'c Urls,
    pub files: &'c FileDirs,
    pub tuning: crate::server::Tuning,
}

/// The root object of an operation.
pub struct Root<'c> {
    ctx: &'c Ctx<'c>,
    mutation: bool,
}

impl<'c> Root<'c> {
    pub fn new(ctx: &'c Ctx<'c>, mutation: bool) -> Root<'c> {
        Root { ctx, mutation }
    }

    fn query<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        match info.field_name() {
            "viewer" => viewer::viewer(),
            "serverInfo" => viewer::server_info(),
            "entity" => viewer::entity(ctx, info),
            "organization" => engine::leaf(None::<()>),
            "project" | "model" => project::project(ctx, info),
            "artifact" => artifacts::artifact_by_id(ctx, info),
            "launchAgent" => launch::launch_agent(ctx, info),
            _ => Err(unsupported(info, "Query")),
        }
    }

    fn mutation<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        atomically(self.ctx.conn, || self.dispatch_mutation(info))
    }

    fn dispatch_mutation<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        match info.field_name() {
            "upsertBucket" => runs::upsert_bucket(ctx, info),
            "createGenericWebhookIntegration" => automations::create_webhook(ctx, info),
            "createFilterTrigger" => automations::create_trigger(ctx, info),
            "updateFilterTrigger" => automations::update_trigger(ctx, info),
            "deleteTrigger" => automations::delete_trigger(ctx, info),
            "upsertModel" => project::upsert_model(ctx, info),
            "stopRun" => runs::stop_run(ctx, info),
            "deleteRun" => runs::delete_run(ctx, info),
            "updateRunState" => runs::update_run_state(ctx, info),
            "notifyScriptableRunAlert" => runs::notify_alert(ctx, info),
            "createRunFiles" => files::create_run_files(ctx, info),
            "markRunFilesUploaded" => files::mark_run_files_uploaded(ctx, info),
            "createArtifactType" => artifacts::create_artifact_type(ctx, info),
            "createArtifact" => artifacts::create_artifact(ctx, info),
            "createArtifactManifest" => artifacts::create_artifact_manifest(ctx, info),
            "updateArtifactManifest" => artifacts::update_artifact_manifest(ctx, info),
            "createArtifactFiles" => artifacts::create_artifact_files(ctx, info),
            "commitArtifact" => artifacts::commit_artifact(ctx, info),
            "useArtifact" => artifacts::use_artifact(ctx, info),
            "updateArtifact" => artifacts::update_artifact(ctx, info),
            "addAliases" => artifacts::add_aliases(ctx, info),
            "deleteAliases" => artifacts::delete_aliases(ctx, info),
            "deleteArtifact" => artifacts::delete_artifact(ctx, info),
            "createLaunchAgent" => launch::create_launch_agent(ctx, info),
            "updateLaunchAgent" => launch::update_launch_agent(ctx, info),
            "popFromRunQueue" => launch::pop(ctx, info),
            "ackRunQueueItem" => launch::ack(ctx, info),
            "failRunQueueItem" => launch::fail(ctx, info),
            "updateRunQueueItemWarning" => launch::warning(ctx, info),
            "pushToRunQueueByName" => launch::push_by_name(ctx, info),
            "pushToRunQueue" => launch::push_by_id(ctx, info),
            "createDefaultResourceConfig" => launch::create_default_resource_config(ctx, info),
            "createRunQueue" => launch::create_run_queue(ctx, info),
            "upsertRunQueue" => launch::upsert_run_queue(ctx, info),
            "deleteFromRunQueue" => launch::delete_from_run_queue(ctx, info),
            "deleteRunQueues" => launch::delete_run_queues(ctx, info),
            _ => Err(unsupported(info, "Mutation")),
        }
    }
}

impl ObjectValue for Root<'_> {
    fn type_name(&self) -> &str {
        if self.mutation {
            "Mutation"
        } else {
            "Query"
        }
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        if self.mutation {
            self.mutation(info)
        } else {
            self.query(info)
        }
    }
}
