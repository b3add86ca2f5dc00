//! Logging an artifact version: CreateArtifact, CreateArtifactManifest, CreateArtifactFiles,
//! PUT files, CreateArtifactManifest with the manifest digest, PUT manifest, CommitArtifact.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    md5_file, ArtifactFile, ArtifactSpec, LoggedArtifact, Manifest, ManifestEntry, RawArtifact,
    TRANSFERS_IN_FLIGHT,
};
use crate::wandb::connection::Connection;
use crate::wandb::error::{Error, Result};
use crate::wandb::files::{base64_md5, check_relative_name, parse_url};
use crate::wandb::graphql::{
    COMMIT_ARTIFACT, CREATE_ARTIFACT, CREATE_ARTIFACT_FILES, CREATE_ARTIFACT_MANIFEST,
};
use crate::wandb::ids::random_id;
use crate::wandb::run::Run;
use crate::wandb::transport::{parse_upload_headers, UploadBody};

const MANIFEST_FILE: &str = "wandb_manifest.json";
/// Files per `CreateArtifactFiles` call.
const FILES_PER_BATCH: usize = 1000;

impl Run {
    /// Logs a new artifact version as an output of this run, in the official order:
    /// CreateArtifact, CreateArtifactManifest, CreateArtifactFiles, PUT files,
    /// CreateArtifactManifest with the manifest digest, PUT manifest, CommitArtifact.
    pub async fn log_artifact(&self, spec: ArtifactSpec) -> Result<LoggedArtifact> {
        check_spec(&spec)?;
        let hashed = hash_files(&spec.files).await?;
        let contents: BTreeMap<String, ManifestEntry> = spec
            .files
            .iter()
            .zip(&hashed)
            .map(|(file, (digest, size))| {
                let entry = ManifestEntry {
                    digest: digest.clone(),
                    size: Some(*size),
                    birth_artifact_id: None,
                    reference: None,
                    extra: None,
                };
                (file.name.clone(), entry)
            })
            .collect();
        let mut manifest = Manifest::new(contents);
        let digest = manifest.digest();

        let created = self.create_artifact(&spec, &digest).await?;
        let artifact_id = created.artifact.id.clone();
        if created.artifact.state.as_deref() == Some("COMMITTED") {
            tracing::info!(artifact = %spec.name, %digest, "identical artifact version exists; nothing uploaded");
            return Ok(LoggedArtifact {
                id: artifact_id,
                version: created.artifact.version_index.map(|i| format!("v{i}")),
                digest: created.artifact.digest.unwrap_or(digest),
                deduplicated: true,
            });
        }
        let base_artifact_id = created.base_artifact_id.filter(|id| *id != artifact_id);

        let manifest_id = self
            .create_manifest(&artifact_id, base_artifact_id.as_deref(), "", false)
            .await?
            .0;
        self.upload_artifact_files(&spec.files, &hashed, &artifact_id, &manifest_id)
            .await?;

        for entry in manifest.contents.values_mut() {
            entry.birth_artifact_id = Some(artifact_id.clone());
        }
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::InvalidInput(format!("cannot encode the manifest: {e}")))?;
        let manifest_md5 = base64_md5(&manifest_bytes);
        let (_, upload) = self
            .create_manifest(
                &artifact_id,
                base_artifact_id.as_deref(),
                &manifest_md5,
                true,
            )
            .await?;
        let (url, headers) = upload.ok_or_else(|| {
            self.client()
                .transport()
                .unexpected(&CREATE_ARTIFACT_MANIFEST, "no manifest upload URL")
        })?;
        let url = parse_url(CREATE_ARTIFACT_MANIFEST.name, &url)?;
        let headers = parse_upload_headers(&headers);
        self.client()
            .transport()
            .put(
                "upload artifact manifest",
                &url,
                &headers,
                UploadBody::Bytes(&manifest_bytes),
            )
            .await?;

        let committed = self.commit_artifact(&artifact_id).await?;
        tracing::info!(artifact = %spec.name, id = %committed.id, %digest, "artifact logged");
        Ok(LoggedArtifact {
            id: committed.id,
            version: committed.version_index.map(|i| format!("v{i}")),
            digest: committed.digest.filter(|d| !d.is_empty()).unwrap_or(digest),
            deduplicated: false,
        })
    }
    async fn create_artifact(&self, spec: &ArtifactSpec, digest: &str) -> Result<CreatedArtifact> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            create_artifact: Option<Payload>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload {
            artifact: Option<Created>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            #[serde(flatten)]
            artifact: RawArtifact,
            artifact_sequence: Option<Sequence>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Sequence {
            latest_artifact: Option<Id>,
        }

        let mut aliases = vec!["latest".to_owned()];
        for alias in &spec.aliases {
            if !aliases.contains(alias) {
                aliases.push(alias.clone());
            }
        }
        let aliases: Vec<Value> = aliases
            .iter()
            .map(|alias| json!({"alias": alias, "artifactCollectionName": spec.name}))
            .collect();
        let input = json!({
            "entityName": self.entity(),
            "projectName": self.project(),
            "runName": self.id(),
            "artifactTypeName": spec.artifact_type,
            "artifactCollectionName": spec.name,
            "digest": digest,
            "digestAlgorithm": "MANIFEST_MD5",
            "description": spec.description,
            "aliases": aliases,
            "metadata": Value::Object(spec.metadata.clone()).to_string(),
            "clientID": random_id(128),
            "sequenceClientID": random_id(128),
            "enableDigestDeduplication": true,
            // The step the run is at, as the official client sends it.
            "historyStep": self.step(),
        });
        let transport = self.client().transport();
        let data: Data = transport
            .graphql(&CREATE_ARTIFACT, json!({"input": input}))
            .await?;
        let created = data
            .create_artifact
            .and_then(|p| p.artifact)
            .ok_or_else(|| transport.unexpected(&CREATE_ARTIFACT, "no artifact in the answer"))?;
        Ok(CreatedArtifact {
            artifact: created.artifact,
            base_artifact_id: created
                .artifact_sequence
                .and_then(|s| s.latest_artifact)
                .map(|a| a.id),
        })
    }

    /// Returns the manifest id and, when `include_upload`, its upload URL and headers.
    async fn create_manifest(
        &self,
        artifact_id: &str,
        base_artifact_id: Option<&str>,
        digest: &str,
        include_upload: bool,
    ) -> Result<(String, Option<(String, Vec<String>)>)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            create_artifact_manifest: Option<Payload>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload {
            artifact_manifest: Option<ManifestNode>,
        }
        #[derive(Deserialize)]
        struct ManifestNode {
            id: String,
            file: Option<UploadTarget>,
        }

        let variables = json!({
            "artifactID": artifact_id,
            "baseArtifactID": base_artifact_id,
            "name": MANIFEST_FILE,
            "digest": digest,
            "entityName": self.entity(),
            "projectName": self.project(),
            "runName": self.id(),
            "manifestType": "FULL",
            "includeUpload": include_upload,
        });
        let transport = self.client().transport();
        let data: Data = transport
            .graphql(&CREATE_ARTIFACT_MANIFEST, variables)
            .await?;
        let node = data
            .create_artifact_manifest
            .and_then(|p| p.artifact_manifest)
            .ok_or_else(|| {
                transport.unexpected(&CREATE_ARTIFACT_MANIFEST, "no manifest in the answer")
            })?;
        let upload = node.file.and_then(|f| {
            f.upload_url
                .map(|url| (url, f.upload_headers.unwrap_or_default()))
        });
        Ok((node.id, upload))
    }

    async fn upload_artifact_files(
        &self,
        files: &[ArtifactFile],
        hashed: &[(String, u64)],
        artifact_id: &str,
        manifest_id: &str,
    ) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            create_artifact_files: Option<Payload>,
        }
        #[derive(Deserialize)]
        struct Payload {
            files: Option<Connection<UploadTarget>>,
        }

        let transport = self.client().transport();
        let indexed: Vec<usize> = (0..files.len()).collect();
        for batch in indexed.chunks(FILES_PER_BATCH) {
            let specs: Vec<Value> = batch
                .iter()
                .map(|&i| {
                    json!({
                        "artifactID": artifact_id,
                        "artifactManifestID": manifest_id,
                        "name": files[i].name,
                        "md5": hashed[i].0,
                        "mimetype": null,
                        "uploadPartsInput": null,
                    })
                })
                .collect();
            let input = json!({"artifactFiles": specs, "storageLayout": "V2"});
            let data: Data = transport
                .graphql(&CREATE_ARTIFACT_FILES, json!({"input": input}))
                .await?;
            let edges = data
                .create_artifact_files
                .and_then(|p| p.files)
                .map(|c| c.edges)
                .unwrap_or_default();
            if edges.len() != batch.len() {
                return Err(transport.unexpected(
                    &CREATE_ARTIFACT_FILES,
                    format!("{} file entries for {} files", edges.len(), batch.len()),
                ));
            }
            // Answers come in request order; a null uploadUrl means the server already has
            // these bytes.
            let uploads: Vec<(usize, UploadTarget)> = batch
                .iter()
                .zip(edges)
                .filter_map(|(&i, edge)| {
                    edge.node.filter(|n| n.upload_url.is_some()).map(|n| (i, n))
                })
                .collect();
            futures::stream::iter(uploads)
                .map(|(i, target)| async move {
                    let file = &files[i];
                    let url = parse_url(
                        CREATE_ARTIFACT_FILES.name,
                        target.upload_url.as_deref().unwrap_or_default(),
                    )?;
                    let headers = parse_upload_headers(&target.upload_headers.unwrap_or_default());
                    let body = UploadBody::File {
                        path: &file.path,
                        len: hashed[i].1,
                    };
                    transport
                        .put(
                            &format!("upload artifact file {}", file.name),
                            &url,
                            &headers,
                            body,
                        )
                        .await
                })
                .buffer_unordered(TRANSFERS_IN_FLIGHT)
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(())
    }

    async fn commit_artifact(&self, artifact_id: &str) -> Result<RawArtifact> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            commit_artifact: Option<Payload>,
        }
        #[derive(Deserialize)]
        struct Payload {
            artifact: Option<RawArtifact>,
        }
        let transport = self.client().transport();
        let data: Data = transport
            .graphql(&COMMIT_ARTIFACT, json!({"artifactID": artifact_id}))
            .await?;
        data.commit_artifact
            .and_then(|p| p.artifact)
            .ok_or_else(|| transport.unexpected(&COMMIT_ARTIFACT, "no artifact in the answer"))
    }
}

struct CreatedArtifact {
    artifact: RawArtifact,
    base_artifact_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadTarget {
    upload_url: Option<String>,
    upload_headers: Option<Vec<String>>,
}

async fn hash_files(files: &[ArtifactFile]) -> Result<Vec<(String, u64)>> {
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|path| md5_file(path).map_err(|e| Error::io("cannot read artifact file", path, e)))
            .collect()
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("hashing artifact files failed: {e}")))?
}

fn check_spec(spec: &ArtifactSpec) -> Result<()> {
    let bad_name = spec.name.is_empty() || spec.name.contains(['/', ':']);
    if bad_name {
        return Err(Error::InvalidInput(format!(
            "artifact name {:?} must be non-empty without '/' or ':'",
            spec.name
        )));
    }
    if spec.artifact_type.is_empty() {
        return Err(Error::InvalidInput(format!(
            "artifact {} needs a type",
            spec.name
        )));
    }
    if spec.files.is_empty() {
        return Err(Error::InvalidInput(format!(
            "artifact {} has no files",
            spec.name
        )));
    }
    let mut names = std::collections::HashSet::new();
    for file in &spec.files {
        check_relative_name(&file.name)?;
        if !names.insert(file.name.as_str()) {
            return Err(Error::InvalidInput(format!(
                "artifact {} lists {} twice",
                spec.name, file.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_before_any_request() {
        let ok = ArtifactSpec::new("m", "model").file("a", "/x");
        assert!(check_spec(&ok).is_ok());
        assert!(check_spec(&ArtifactSpec::new("m:1", "model").file("a", "/x")).is_err());
        assert!(check_spec(&ArtifactSpec::new("m", "").file("a", "/x")).is_err());
        assert!(check_spec(&ArtifactSpec::new("m", "model")).is_err());
        assert!(check_spec(&ok.clone().file("a", "/y")).is_err());
        assert!(check_spec(&ArtifactSpec::new("m", "model").file("../a", "/x")).is_err());
    }
}
