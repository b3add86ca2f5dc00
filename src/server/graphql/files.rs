//! Run files: upload URLs (`createRunFiles`), completion (`markRunFilesUploaded`) and
//! `Run.files` listings with download URLs.

use apollo_compiler::resolvers::{ObjectValue, ResolveInfo};
use serde::Deserialize;

use super::engine::{arg, field_error, leaf, object, objects, unsupported, Page, Record, Res};
use super::Ctx;
use crate::server::ids;
use crate::server::store::files::{self, FileQuery, RunFileRow};
use crate::server::store::runs::{require_run, RunRow};
use crate::server::store::wandb_time;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunFilesInput {
    entity_name: String,
    project_name: String,
    run_name: String,
    files: Vec<String>,
}

pub fn create_run_files<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: RunFilesInput = arg(info, "input")?;
    let run = require_run(
        ctx.conn,
        &input.entity_name,
        &input.project_name,
        &input.run_name,
    )?;
    let rows = files::prepare_uploads(ctx.conn, run.id, &input.files)?;
    object(
        Record::new("CreateRunFilesPayload")
            .leaf("runID", ids::encode("Run", run.id))
            .leaves("uploadHeaders", Vec::<String>::new())
            .with("files", move |_| {
                let uploads: Vec<Record<'a>> = rows
                    .iter()
                    .map(|f| {
                        Record::new("RunFileUpload")
                            .leaf("name", &f.name)
                            .leaf("uploadUrl", ctx.urls.run_file_upload(f.id))
                    })
                    .collect();
                objects(uploads)
            }),
    )
}

/// The SDK reports finished uploads; the signed PUT already recorded them, so this only says
/// whether every listed file is really in place.
pub fn mark_run_files_uploaded<'a>(ctx: &'a Ctx<'a>, info: &ResolveInfo<'_>) -> Res<'a> {
    let input: RunFilesInput = arg(info, "input")?;
    let run = require_run(
        ctx.conn,
        &input.entity_name,
        &input.project_name,
        &input.run_name,
    )?;
    let stored = files::list_run_files(
        ctx.conn,
        run.id,
        &FileQuery {
            names: &input.files,
            pattern: None,
            after_id: None,
            limit: i64::MAX,
        },
    )?;
    object(
        Record::new("MarkRunFilesUploadedPayload")
            .leaf("success", stored.len() == input.files.len()),
    )
}

pub fn run_file_count<'a>(ctx: &'a Ctx<'a>, run_id: i64) -> Res<'a> {
    leaf(files::count_run_files(ctx.conn, run_id)?)
}

pub fn run_files_page<'a>(ctx: &'a Ctx<'a>, run: &RunRow, info: &ResolveInfo<'_>) -> Res<'a> {
    let names: Option<Vec<Option<String>>> = arg(info, "names")?;
    let after: Option<String> = arg(info, "after")?;
    let first: Option<i64> = arg(info, "first")?;
    let pattern: Option<String> = arg(info, "pattern")?;
    let names: Vec<String> = names.into_iter().flatten().flatten().collect();
    let after_id = after
        .map(|c| {
            ids::decode("File", &c).ok_or_else(|| field_error(format!("invalid cursor {c:?}")))
        })
        .transpose()?;
    let limit = first.unwrap_or(50).clamp(0, 10_000);
    let mut rows = files::list_run_files(
        ctx.conn,
        run.id,
        &FileQuery {
            names: &names,
            pattern: pattern.as_deref(),
            after_id,
            limit: limit + 1,
        },
    )?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items = rows
        .into_iter()
        .map(|row| (ids::encode("File", row.id), FileObj { ctx, row }))
        .collect();
    object(Page {
        connection_type: "FileConnection",
        edge_type: "FileEdge",
        items,
        has_next_page,
    })
}

#[derive(Clone)]
struct FileObj<'a> {
    ctx: &'a Ctx<'a>,
    row: RunFileRow,
}

impl ObjectValue for FileObj<'_> {
    fn type_name(&self) -> &str {
        "File"
    }

    fn resolve_field<'b>(&'b self, info: &'b ResolveInfo<'b>) -> Res<'b> {
        let row = &self.row;
        let download = || self.ctx.urls.run_file_download(row.id, &row.name);
        match info.field_name() {
            "id" => leaf(ids::encode("File", row.id)),
            "name" | "displayName" => leaf(&row.name),
            "url" => {
                let upload: Option<bool> = arg(info, "upload")?;
                if upload == Some(true) {
                    leaf(self.ctx.urls.run_file_upload(row.id))
                } else {
                    leaf(download())
                }
            }
            "directUrl" => leaf(download()),
            "sizeBytes" => leaf(row.size),
            "mimetype" => leaf(&row.mimetype),
            "md5" => leaf(&row.md5),
            "updatedAt" => leaf(wandb_time(&row.updated_at)),
            "storagePath" | "uploadUrl" | "artifact" => leaf(None::<()>),
            "uploadHeaders" => super::engine::leaves(Vec::<String>::new()),
            _ => Err(unsupported(info, "File")),
        }
    }
}
