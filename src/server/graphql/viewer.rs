//! The viewer (whoever holds a valid key), server info and entities.

use apollo_compiler::resolvers::ResolveInfo;

use super::engine::{arg, nullable, object, Record, Res};
use super::Ctx;
use crate::server::ids;
use crate::server::store::find_entity;

/// Entity of runs created without one, and the viewer's user name. Every valid key acts as this
/// one local user: the server is single-tenant.
pub const DEFAULT_ENTITY: &str = "local";
const EMAIL: &str = "local@localhost";

pub fn user<'a>() -> Record<'a> {
    Record::new("User")
        .leaf("id", ids::encode("User", 1))
        .leaf("entity", DEFAULT_ENTITY)
        .leaf("username", DEFAULT_ENTITY)
        .leaf("name", DEFAULT_ENTITY)
        .leaf("email", EMAIL)
        .leaf("flags", "{}")
        .leaf("admin", true)
        .with("teams", |_| {
            object(Record::new("EntityConnection").leaves("edges", Vec::<()>::new()))
        })
}

pub fn viewer<'a>() -> Res<'a> {
    object(user())
}

/// Advertises no optional server features: each one switches the SDK to a code path this
/// server would then have to implement.
pub fn server_info<'a>() -> Res<'a> {
    object(
        Record::new("ServerInfo")
            .leaves("features", Vec::<()>::new())
            .leaf("cliVersionInfo", serde_json::json!({})),
    )
}

pub fn entity<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let name: String = arg(info, "name")?;
    // The viewer's own entity exists before anything is logged to it.
    let found = match find_entity(ctx.conn, &name)? {
        Some((id, name)) => Some((id, name)),
        None if name == DEFAULT_ENTITY => Some((0, name)),
        None => None,
    };
    nullable(found.map(|(id, name)| entity_record(ctx, id, name)))
}

pub fn entity_record<'a>(ctx: &'a Ctx<'a>, id: i64, name: String) -> Record<'a> {
    Record::new("Entity")
        .leaf("id", ids::encode("Entity", id))
        .leaf("name", &name)
        .leaf("isTeam", false)
        .leaf("entityType", "USER")
        .leaf("organization", None::<()>)
        .with("user", |_| object(user()))
        .with("defaultResourceConfig", move |info| {
            super::launch::default_resource_config(ctx, id, info)
        })
        .with("integrations", {
            let name = name.clone();
            move |info| super::automations::integrations(ctx, &name, info)
        })
        .with("triggers", {
            let name = name.clone();
            move |info| super::automations::entity_triggers(ctx, &name, info)
        })
        .with("projects", move |info| {
            super::automations::entity_projects(ctx, id, info)
        })
}
