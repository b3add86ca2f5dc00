//! Datasets as W&B artifacts of type `dataset`: a file or a folder uploaded with its size,
//! line count and split in the metadata (each file digested, so an unchanged upload is the same
//! version), downloaded with every file checked against its MD5, and listed. The trainer reads
//! one as `data.dataset = "artifact:<name>:<alias>"`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::connect::Store;
use crate::wandb::{safe_artifact_name, ArtifactRef, ArtifactSpec};

/// The artifact type of datasets (W&B's convention).
pub const DATASET_TYPE: &str = "dataset";
/// The job type of the run that logs an upload (the dataset's producer in the lineage).
const UPLOAD_JOB_TYPE: &str = "upload-dataset";

/// What `mlwf datasets upload` sends.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: PathBuf,
    pub name: String,
    /// `train`, `val`, `test`, … when the data is one split.
    pub split: Option<String>,
    pub description: Option<String>,
}

/// A dataset version, as uploaded or listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVersion {
    /// `entity/project/name:vN`.
    pub reference: String,
    pub name: String,
    pub version: Option<String>,
    pub aliases: Vec<String>,
    pub digest: String,
    pub size_bytes: u64,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// An identical version existed: nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// The files of `path` (itself, or everything under a folder) and the facts the metadata keeps.
fn facts(
    upload: &Upload,
) -> anyhow::Result<(ArtifactSpec, serde_json::Map<String, serde_json::Value>)> {
    let path = &upload.path;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{} does not exist or cannot be read", path.display()))?;
    let spec = ArtifactSpec::new(&upload.name, DATASET_TYPE);
    let (spec, files) = if meta.is_dir() {
        let spec = spec
            .dir(path)
            .with_context(|| format!("reading the folder {}", path.display()))?;
        (spec, walk(path)?)
    } else {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?;
        (spec.file(file_name, path), vec![path.clone()])
    };
    if files.is_empty() {
        bail!("{} holds no files: nothing to upload", path.display());
    }
    let (mut size, mut lines) = (0u64, 0u64);
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        size += bytes.len() as u64;
        lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let mut metadata = json!({
        "size_bytes": size,
        "lines": lines,
        "files": files.len(),
        "source": path.display().to_string(),
    });
    if let Some(split) = &upload.split {
        metadata["split"] = json!(split);
    }
    let metadata = metadata.as_object().cloned().unwrap_or_default();
    Ok((spec.metadata(metadata.clone()), metadata))
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// Checks the upload (name, files) without sending anything; what `--dry-run` prints.
pub fn check(upload: &Upload) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    if safe_artifact_name(&upload.name) != upload.name || upload.name.is_empty() {
        bail!(
            "dataset name {:?} is not an artifact name (letters, digits, `-`, `_`, `.`): try {:?}",
            upload.name,
            safe_artifact_name(&upload.name)
        );
    }
    facts(upload).map(|(_, metadata)| metadata)
}

/// Logs the dataset from a run of its own (job type `upload-dataset`), which stays as the
/// dataset's producer.
pub async fn upload(store: &Store, upload: &Upload) -> anyhow::Result<DatasetVersion> {
    check(upload)?;
    let (mut spec, metadata) = facts(upload)?;
    if let Some(description) = &upload.description {
        spec.description = Some(description.clone());
    }
    let run = store
        .start_side_run(UPLOAD_JOB_TYPE)
        .await
        .context("starting the run that uploads the dataset")?;
    let logged = run.log_artifact(spec).await;
    run.finish(i32::from(logged.is_err())).await?;
    let logged = logged.with_context(|| format!("uploading dataset {}", upload.name))?;
    let version = logged.version.clone();
    Ok(DatasetVersion {
        reference: format!(
            "{}/{}/{}:{}",
            store.entity,
            store.project,
            upload.name,
            version.as_deref().unwrap_or("latest")
        ),
        name: upload.name.clone(),
        version,
        aliases: vec!["latest".into()],
        digest: logged.digest,
        size_bytes: metadata
            .get("size_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        metadata,
        unchanged: logged.deduplicated,
    })
}

/// Downloads `reference` into `dir` (every file checked against the manifest's MD5).
pub async fn download(
    store: &Store,
    reference: &ArtifactRef,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let info = store
        .client
        .artifact(reference)
        .await
        .with_context(|| format!("no dataset {reference}: `mlwf datasets list` shows them"))?;
    if info
        .artifact_type
        .as_deref()
        .is_some_and(|t| t != DATASET_TYPE)
    {
        bail!(
            "{reference} is a {} artifact, not a dataset: `mlwf artifacts get` downloads any artifact",
            info.artifact_type.as_deref().unwrap_or("?")
        );
    }
    let downloaded = store
        .client
        .download_artifact(reference, dir)
        .await
        .with_context(|| format!("downloading dataset {reference}"))?;
    Ok(downloaded.files)
}

/// Every dataset version of the project, newest first within each dataset.
pub async fn list(store: &Store) -> anyhow::Result<Vec<DatasetVersion>> {
    let versions = store
        .client
        .artifact_versions(&store.entity, &store.project, DATASET_TYPE)
        .await
        .context("listing the project's datasets")?;
    Ok(versions
        .into_iter()
        .map(|v| DatasetVersion {
            reference: format!(
                "{}/{}/{}:{}",
                v.entity,
                v.project,
                v.name,
                v.version().unwrap_or_else(|| "latest".into())
            ),
            version: v.version(),
            name: v.name,
            aliases: v.aliases,
            digest: v.digest,
            size_bytes: v.size,
            metadata: v.metadata,
            unchanged: false,
        })
        .collect())
}
