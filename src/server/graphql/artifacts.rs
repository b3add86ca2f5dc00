//! Artifacts: the logging sequence (create → manifest → files → upload → manifest → commit),
//! alias management, and reads by id, by `collection:alias`, per collection and per type.

use apollo_compiler::resolvers::{FieldError, ObjectValue, ResolveInfo};
use serde::Deserialize;

use super::engine::{
    arg, field_error, leaf, leaves, nullable, object, objects, unsupported, Page, Record, Res,
};
use super::project::ProjectObj;
use super::Ctx;
use crate::server::ids;
use crate::server::store::artifacts::{
    self as store, ArtifactFileRow, ArtifactRow, ArtifactUpdate, CollectionRow, CreateArtifact,
    TagInput, TypeRow,
};
use crate::server::store::files::blob_exists;
use crate::server::store::runs::require_run;
use crate::server::store::{ensure_project, wandb_time};

const ARTIFACT_KIND: &str = "Artifact";
const MANIFEST_KIND: &str = "ArtifactManifest";

fn artifact_id_arg(id: &str) -> Result<i64, FieldError> {
    ids::decode(ARTIFACT_KIND, id)
        .ok_or_else(|| field_error(format!("{id:?} is not an artifact id")))
}

#[derive(Clone)]
pub struct ArtifactObj<'a> {
    ctx: &'a Ctx<'a>,
    row: ArtifactRow,
}

impl<'a> ArtifactObj<'a> {
    fn load(ctx: &'a Ctx<'a>, id: i64) -> Result<ArtifactObj<'a>, FieldError> {
        Ok(ArtifactObj {
            ctx,
            row: store::require_artifact(ctx.conn, id)?,
        })
    }
}

pub fn artifact_by_id<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let id: String = arg(info, "id")?;
    let Some(id) = ids::decode(ARTIFACT_KIND, &id) else {
        return nullable(None::<ArtifactObj<'a>>);
    };
    nullable(store::artifact_by_id(ctx.conn, id)?.map(|row| ArtifactObj { ctx, row }))
}

pub fn project_artifact<'a>(ctx: &'a Ctx<'a>, project_id: i64, info: &ResolveInfo<'_>) -> Res<'a> {
    let name: String = arg(info, "name")?;
    let found = store::resolve_name(ctx.conn, project_id, &name)?;
    nullable(found.map(|(_, row)| ArtifactObj { ctx, row }))
}

pub fn project_membership<'a>(
    ctx: &'a Ctx<'a>,
    project_id: i64,
    info: &ResolveInfo<'_>,
) -> Res<'a> {
    let name: String = arg(info, "name")?;
    let found = store::resolve_name(ctx.conn, project_id, &name)?;
    nullable(found.map(|(collection, artifact)| MembershipObj {
        ctx,
        collection,
        artifact,
    }))
}

pub fn project_collection<'a>(
    ctx: &'a Ctx<'a>,
    project_id: i64,
    info: &ResolveInfo<'_>,
) -> Res<'a> {
    let name: String = arg(info, "name")?;
    let found = store::collection_by_name(ctx.conn, project_id, &name)?;
    nullable(found.map(|row| CollectionObj { ctx, row }))
}

pub fn project_artifact_type<'a>(
    ctx: &'a Ctx<'a>,
    project_id: i64,
    info: &ResolveInfo<'_>,
) -> Res<'a> {
    let name: String = arg(info, "name")?;
    let found = store::artifact_type(ctx.conn, project_id, &name)?;
    nullable(found.map(|row| type_record(ctx, row)))
}

fn type_record<'a>(ctx: &'a Ctx<'a>, row: TypeRow) -> Record<'a> {
    Record::new("ArtifactType")
        .leaf("id", ids::encode("ArtifactType", row.id))
        .leaf("name", &row.name)
        .leaf("description", &row.description)
        .with("artifactCollections", move |_| {
            let collections = store::collections_of_type(ctx.conn, row.id)?;
            object(
                Record::new("ArtifactCollectionConnection").with("edges", move |_| {
                    let edges: Vec<Record<'a>> = collections
                        .iter()
                        .map(|c| {
                            let node = CollectionObj {
                                ctx,
                                row: c.clone(),
                            };
                            Record::new("ArtifactCollectionEdge")
                                .with("node", move |_| object(node.clone()))
                        })
                        .collect();
                    objects(edges)
                }),
            )
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateTypeInput {
    entity_name: String,
    project_name: String,
    name: String,
    description: Option<String>,
}

pub fn create_artifact_type<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateTypeInput = arg(info, "input")?;
    let project_id = ensure_project(ctx.conn, &input.entity_name, &input.project_name)?;
    let row = store::ensure_type(
        ctx.conn,
        project_id,
        &input.name,
        input.description.as_deref(),
    )?;
    object(
        Record::new("CreateArtifactTypePayload").with("artifactType", move |_| {
            object(type_record(ctx, row.clone()))
        }),
    )
}

fn artifact_payload<'a>(ctx: &'a Ctx<'a>, type_name: &'static str, artifact_id: i64) -> Res<'a> {
    object(Record::new(type_name).with("artifact", move |_| {
        object(ArtifactObj::load(ctx, artifact_id)?)
    }))
}

pub fn create_artifact<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateArtifact = arg(info, "input")?;
    let run = input
        .run_name
        .as_deref()
        .map(|run| require_run(ctx.conn, &input.entity_name, &input.project_name, run))
        .transpose()?;
    let row = store::create_artifact(ctx.conn, &input, run.as_ref())?;
    artifact_payload(ctx, "CreateArtifactPayload", row.id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestInput {
    #[serde(rename = "artifactID")]
    artifact_id: String,
    digest: String,
    #[serde(rename = "type")]
    manifest_type: Option<String>,
}

/// The manifest of a version, with the signed URL its bytes are PUT to.
fn manifest_record<'a>(ctx: &'a Ctx<'a>, artifact_id: i64) -> Record<'a> {
    Record::new("ArtifactManifest")
        .leaf("id", ids::encode(MANIFEST_KIND, artifact_id))
        .with("file", move |_| {
            object(
                Record::new("File")
                    .leaf("id", ids::encode("ArtifactManifestFile", artifact_id))
                    .leaf("name", "wandb_manifest.json")
                    .leaf("displayName", "wandb_manifest.json")
                    .leaf("uploadUrl", ctx.urls.manifest_upload(artifact_id))
                    .leaves("uploadHeaders", Vec::<String>::new())
                    .leaf("directUrl", ctx.urls.manifest_download(artifact_id))
                    .leaf("url", ctx.urls.manifest_download(artifact_id)),
            )
        })
}

fn manifest_payload<'a>(ctx: &'a Ctx<'a>, type_name: &'static str, artifact_id: i64) -> Res<'a> {
    object(Record::new(type_name).with("artifactManifest", move |_| {
        object(manifest_record(ctx, artifact_id))
    }))
}

pub fn create_artifact_manifest<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: ManifestInput = arg(info, "input")?;
    if input.manifest_type.as_deref().is_some_and(|t| t != "FULL") {
        return Err(field_error(
            "only FULL artifact manifests are supported by the mlwf server",
        ));
    }
    let artifact_id = artifact_id_arg(&input.artifact_id)?;
    store::announce_manifest(ctx.conn, artifact_id, &input.digest)?;
    manifest_payload(ctx, "CreateArtifactManifestPayload", artifact_id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateManifestInput {
    #[serde(rename = "artifactManifestID")]
    artifact_manifest_id: String,
    digest: Option<String>,
}

pub fn update_artifact_manifest<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpdateManifestInput = arg(info, "input")?;
    let artifact_id = ids::decode(MANIFEST_KIND, &input.artifact_manifest_id)
        .ok_or_else(|| field_error("not an artifact manifest id"))?;
    if let Some(digest) = &input.digest {
        store::announce_manifest(ctx.conn, artifact_id, digest)?;
    }
    manifest_payload(ctx, "UpdateArtifactManifestPayload", artifact_id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSpec {
    #[serde(rename = "artifactID")]
    artifact_id: String,
    name: String,
    md5: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateFilesInput {
    artifact_files: Vec<FileSpec>,
}

/// Upload URLs for artifact files, in request order. Content already stored gets a null
/// `uploadUrl`, which tells the client to skip the upload.
pub fn create_artifact_files<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: CreateFilesInput = arg(info, "input")?;
    let mut nodes = Vec::with_capacity(input.artifact_files.len());
    for spec in input.artifact_files {
        let artifact_id = artifact_id_arg(&spec.artifact_id)?;
        let artifact = store::require_artifact(ctx.conn, artifact_id)?;
        if artifact.state != store::PENDING {
            return Err(field_error("files can only be added to a pending artifact"));
        }
        let hex = store::base64_md5_to_hex(&spec.md5)
            .ok_or_else(|| field_error(format!("{:?} is not a base64 MD5", spec.md5)))?;
        let upload_url = (!blob_exists(ctx.conn, &hex)?).then(|| ctx.urls.blob_upload(&hex));
        nodes.push((spec.name, spec.md5, hex, upload_url, artifact_id));
    }
    let page = move || {
        let items = nodes
            .iter()
            .map(|(name, md5, hex, upload_url, artifact_id)| {
                let node = UploadFileObj {
                    ctx,
                    name: name.clone(),
                    md5: md5.clone(),
                    hex: hex.clone(),
                    upload_url: upload_url.clone(),
                    artifact_id: *artifact_id,
                };
                (ids::encode_str("ArtifactFile", name), node)
            })
            .collect();
        Page {
            connection_type: "FileConnection",
            edge_type: "FileEdge",
            items,
            has_next_page: false,
        }
    };
    object(Record::new("CreateArtifactFilesPayload").with("files", move |_| object(page())))
}

/// A file of `createArtifactFiles`' answer.
#[derive(Clone)]
struct UploadFileObj<'a> {
    ctx: &'a Ctx<'a>,
    name: String,
    md5: String,
    hex: String,
    upload_url: Option<String>,
    artifact_id: i64,
}

impl ObjectValue for UploadFileObj<'_> {
    fn type_name(&self) -> &str {
        "File"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        match info.field_name() {
            "id" => leaf(ids::encode_str("ArtifactFile", &self.name)),
            "name" | "displayName" => leaf(&self.name),
            "storagePath" => leaf(format!("blobs/{}", self.hex)),
            "uploadUrl" => leaf(&self.upload_url),
            "uploadHeaders" => leaves([format!("Content-MD5:{}", self.md5)]),
            "uploadMultipartUrls" => leaf(None::<()>),
            "md5" => leaf(&self.md5),
            "directUrl" => leaf(self.ctx.urls.blob_download(&self.hex, &self.name)),
            "artifact" => object(ArtifactObj::load(self.ctx, self.artifact_id)?),
            _ => Err(unsupported(info, "File")),
        }
    }
}

#[derive(Deserialize)]
struct ArtifactIdInput {
    #[serde(rename = "artifactID")]
    artifact_id: String,
}

pub fn commit_artifact<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: ArtifactIdInput = arg(info, "input")?;
    let row = store::commit_artifact(ctx.conn, ctx.files, artifact_id_arg(&input.artifact_id)?)?;
    artifact_payload(ctx, "CommitArtifactPayload", row.id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UseArtifactInput {
    entity_name: String,
    project_name: String,
    run_name: String,
    #[serde(rename = "artifactID")]
    artifact_id: String,
}

pub fn use_artifact<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UseArtifactInput = arg(info, "input")?;
    let run = require_run(
        ctx.conn,
        &input.entity_name,
        &input.project_name,
        &input.run_name,
    )?;
    let artifact = store::require_artifact(ctx.conn, artifact_id_arg(&input.artifact_id)?)?;
    store::link_run(ctx.conn, run.id, artifact.id, "input")?;
    artifact_payload(ctx, "UseArtifactPayload", artifact.id)
}

#[derive(Deserialize)]
struct AliasName {
    alias: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateArtifactInput {
    #[serde(rename = "artifactID")]
    artifact_id: String,
    description: Option<String>,
    metadata: Option<String>,
    aliases: Option<Vec<AliasName>>,
    tags_to_add: Option<Vec<TagInput>>,
    tags_to_delete: Option<Vec<TagInput>>,
    ttl_duration_seconds: Option<i64>,
}

pub fn update_artifact<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: UpdateArtifactInput = arg(info, "input")?;
    let tag_names = |tags: Option<Vec<TagInput>>| -> Vec<String> {
        tags.into_iter().flatten().map(|t| t.tag_name).collect()
    };
    let row = store::update_artifact(
        ctx.conn,
        artifact_id_arg(&input.artifact_id)?,
        ArtifactUpdate {
            description: input.description.as_deref(),
            metadata: input.metadata.as_deref(),
            ttl_duration_seconds: input.ttl_duration_seconds,
            aliases: input
                .aliases
                .map(|a| a.into_iter().map(|a| a.alias).collect()),
            tags_to_add: tag_names(input.tags_to_add),
            tags_to_delete: tag_names(input.tags_to_delete),
        },
    )?;
    artifact_payload(ctx, "UpdateArtifactPayload", row.id)
}

#[derive(Deserialize)]
struct AliasesInput {
    #[serde(rename = "artifactID")]
    artifact_id: String,
    aliases: Vec<AliasName>,
}

fn alias_input(info: &ResolveInfo<'_>) -> Result<(i64, Vec<String>), FieldError> {
    let input: AliasesInput = arg(info, "input")?;
    Ok((
        artifact_id_arg(&input.artifact_id)?,
        input.aliases.into_iter().map(|a| a.alias).collect(),
    ))
}

pub fn add_aliases<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let (id, aliases) = alias_input(info)?;
    store::add_aliases(ctx.conn, id, &aliases)?;
    object(Record::new("AddAliasesPayload").leaf("success", true))
}

pub fn delete_aliases<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let (id, aliases) = alias_input(info)?;
    store::delete_aliases(ctx.conn, id, &aliases)?;
    object(Record::new("DeleteAliasesPayload").leaf("success", true))
}

#[derive(Deserialize)]
struct DeleteInput {
    #[serde(rename = "artifactID")]
    artifact_id: String,
    #[serde(default, rename = "deleteAliases")]
    delete_aliases: Option<bool>,
}

/// `deleteArtifact`: the version goes (its files, aliases and run links with it); the payload
/// names it as it was.
pub fn delete_artifact<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: DeleteInput = arg(info, "input")?;
    let id = artifact_id_arg(&input.artifact_id)?;
    let row = store::delete_artifact(ctx.conn, id, input.delete_aliases.unwrap_or(false))?;
    object(
        Record::new("DeleteArtifactPayload").with("artifact", move |_| {
            object(ArtifactObj {
                ctx,
                row: row.clone(),
            })
        }),
    )
}

fn alias_records<'a>(
    ctx: &'a Ctx<'a>,
    artifact: &ArtifactRow,
) -> Result<Vec<Record<'a>>, FieldError> {
    let aliases = store::aliases_of(ctx.conn, artifact.id)?;
    Ok(aliases
        .into_iter()
        .map(|alias| {
            let collection_id = artifact.collection_id;
            Record::new("ArtifactAlias")
                .leaf(
                    "id",
                    ids::encode_str("ArtifactAlias", &format!("{collection_id}:{alias}")),
                )
                .leaf("alias", alias)
                .with("artifactCollection", move |_| {
                    object(CollectionObj {
                        ctx,
                        row: store::collection_by_id(ctx.conn, collection_id)?,
                    })
                })
        })
        .collect())
}

/// Entries of a version's manifest as `File`s with download URLs, paged by name.
fn files_page<'a>(
    ctx: &'a Ctx<'a>,
    artifact: &ArtifactRow,
    names: &[String],
    info: &ResolveInfo<'_>,
) -> Res<'a> {
    let after: Option<String> = arg(info, "after")?;
    let first: Option<i64> = arg(info, "first")?;
    let limit = first.unwrap_or(50).clamp(0, 10_000);
    let mut rows =
        store::artifact_files(ctx.conn, artifact.id, names, after.as_deref(), limit + 1)?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items = rows
        .into_iter()
        .map(|row| {
            let cursor = row.name.clone();
            (
                cursor,
                ArtifactFileObj {
                    ctx,
                    artifact_id: artifact.id,
                    row,
                },
            )
        })
        .collect();
    object(Page {
        connection_type: "FileConnection",
        edge_type: "FileEdge",
        items,
        has_next_page,
    })
}

#[derive(Deserialize)]
struct ManifestEntryInput {
    name: String,
}

impl ObjectValue for ArtifactObj<'_> {
    fn type_name(&self) -> &str {
        "Artifact"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        let row = &self.row;
        match info.field_name() {
            "id" => leaf(ids::encode(ARTIFACT_KIND, row.id)),
            "digest" => leaf(&row.digest),
            "state" => leaf(&row.state),
            "description" => leaf(&row.description),
            "metadata" => leaf(&row.metadata),
            "versionIndex" => leaf(row.version_index),
            "size" => leaf(row.size),
            "fileCount" => leaf(row.file_count),
            "commitHash" => leaf(row.version_index.map(|_| &row.digest)),
            "historyStep" => leaf(row.history_step),
            // The SDK reads a non-positive TTL as "no TTL" and -1 as "inherited".
            "ttlDurationSeconds" => leaf(row.ttl_duration_seconds.filter(|t| *t > 0).unwrap_or(-2)),
            "ttlIsInherited" => leaf(row.ttl_duration_seconds.is_none_or(|t| t == -1)),
            "createdAt" => leaf(wandb_time(&row.created_at)),
            "updatedAt" => leaf(wandb_time(&row.updated_at)),
            "artifactType" => {
                let project_id = row.project_id;
                let ty = store::artifact_type(ctx.conn, project_id, &row.type_name)?
                    .ok_or_else(|| field_error("artifact type not found"))?;
                object(type_record(ctx, ty))
            }
            "artifactSequence" => object(CollectionObj {
                ctx,
                row: store::collection_by_id(ctx.conn, row.collection_id)?,
            }),
            "aliases" => objects(alias_records(ctx, row)?),
            "tags" => objects(row.tags.iter().map(|t| {
                Record::new("Tag")
                    .leaf("id", ids::encode_str("Tag", t))
                    .leaf("name", t)
            })),
            "currentManifest" => nullable(
                row.manifest_md5
                    .as_ref()
                    .map(|_| manifest_record(ctx, row.id)),
            ),
            "files" => {
                let names: Option<Vec<Option<String>>> = arg(info, "names")?;
                let names: Vec<String> = names.into_iter().flatten().flatten().collect();
                files_page(ctx, row, &names, info)
            }
            "filesByManifestEntries" => {
                let entries: Option<Vec<ManifestEntryInput>> = arg(info, "entries")?;
                let names: Vec<String> = entries.into_iter().flatten().map(|e| e.name).collect();
                files_page(ctx, row, &names, info)
            }
            _ => Err(unsupported(info, "Artifact")),
        }
    }
}

#[derive(Clone)]
struct ArtifactFileObj<'a> {
    ctx: &'a Ctx<'a>,
    artifact_id: i64,
    row: ArtifactFileRow,
}

impl ObjectValue for ArtifactFileObj<'_> {
    fn type_name(&self) -> &str {
        "File"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let row = &self.row;
        // Reference entries (s3://, https://...) are not stored here; their URL is the reference.
        let direct_url = || match (&row.reference, store::base64_md5_to_hex(&row.digest)) {
            (Some(reference), _) => Ok(reference.clone()),
            (None, Some(hex)) => Ok(self.ctx.urls.blob_download(&hex, &row.name)),
            (None, None) => Err(field_error(format!(
                "file {} has a malformed digest",
                row.name
            ))),
        };
        match info.field_name() {
            "id" => leaf(ids::encode_str(
                "ArtifactFile",
                &format!("{}:{}", self.artifact_id, row.name),
            )),
            "name" | "displayName" => leaf(&row.name),
            "directUrl" | "url" => leaf(direct_url()?),
            "sizeBytes" => leaf(row.size),
            "md5" => leaf(&row.digest),
            "mimetype" => leaf(crate::server::store::files::guess_mimetype(&row.name)),
            "storagePath" | "uploadUrl" | "uploadMultipartUrls" | "updatedAt" => leaf(None::<()>),
            "uploadHeaders" => leaves(Vec::<String>::new()),
            "artifact" => object(ArtifactObj::load(self.ctx, self.artifact_id)?),
            _ => Err(unsupported(info, "File")),
        }
    }
}

/// A collection of versions (`ArtifactSequence`; this server has no portfolios).
#[derive(Clone)]
struct CollectionObj<'a> {
    ctx: &'a Ctx<'a>,
    row: CollectionRow,
}

impl ObjectValue for CollectionObj<'_> {
    fn type_name(&self) -> &str {
        "ArtifactSequence"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        let row = &self.row;
        match info.field_name() {
            "id" => leaf(ids::encode("ArtifactSequence", row.id)),
            "name" => leaf(&row.name),
            "description" => leaf(&row.description),
            "createdAt" => leaf(wandb_time(&row.created_at)),
            "project" => object(ProjectObj::by_id(ctx, row.project_id)?),
            "latestArtifact" => nullable(
                store::latest_version(ctx.conn, row.id)?.map(|row| ArtifactObj { ctx, row }),
            ),
            "artifactMembership" => {
                let alias: String = arg(info, "aliasName")?;
                nullable(
                    store::resolve_alias(ctx.conn, row.id, &alias)?.map(|artifact| MembershipObj {
                        ctx,
                        collection: row.clone(),
                        artifact,
                    }),
                )
            }
            "artifacts" => {
                let versions = store::collection_versions(ctx.conn, row.id)?;
                object(
                    Record::new("VersionedArtifactConnection").with("edges", move |_| {
                        let edges: Vec<Record<'b>> = versions
                            .iter()
                            .map(|v| {
                                let node = ArtifactObj {
                                    ctx,
                                    row: v.clone(),
                                };
                                Record::new("VersionedArtifactEdge")
                                    .with("node", move |_| object(node.clone()))
                            })
                            .collect();
                        objects(edges)
                    }),
                )
            }
            _ => Err(unsupported(info, "ArtifactSequence")),
        }
    }
}

/// A version as a member of its collection (`collection:alias` lookups).
#[derive(Clone)]
struct MembershipObj<'a> {
    ctx: &'a Ctx<'a>,
    collection: CollectionRow,
    artifact: ArtifactRow,
}

impl ObjectValue for MembershipObj<'_> {
    fn type_name(&self) -> &str {
        "ArtifactCollectionMembership"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let ctx = self.ctx;
        match info.field_name() {
            "id" => leaf(ids::encode(
                "ArtifactCollectionMembership",
                self.artifact.id,
            )),
            "versionIndex" => leaf(self.artifact.version_index),
            "createdAt" => leaf(wandb_time(&self.artifact.created_at)),
            "aliases" => objects(alias_records(ctx, &self.artifact)?),
            "artifactCollection" => object(CollectionObj {
                ctx,
                row: self.collection.clone(),
            }),
            "artifact" => object(ArtifactObj {
                ctx,
                row: self.artifact.clone(),
            }),
            "files" => files_page(ctx, &self.artifact, &[], info),
            _ => Err(unsupported(info, "ArtifactCollectionMembership")),
        }
    }
}
