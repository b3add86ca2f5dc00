//! Artifacts: logging a version (manifest v1, MD5 digests, the official call order), resolving
//! `entity/project/name:alias`, recording a run's inputs, and verified, cached downloads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::client::Client;
use super::error::{Error, Result};
use super::files::{base64_md5, check_relative_name, parse_url};
use super::graphql::{
    ARTIFACT_FILE_URLS, ARTIFACT_MEMBERSHIP_BY_NAME, COMMIT_ARTIFACT, CREATE_ARTIFACT,
    CREATE_ARTIFACT_FILES, CREATE_ARTIFACT_MANIFEST, FETCH_ARTIFACT_MANIFEST, USE_ARTIFACT,
};
use super::ids::random_id;
use super::json::{json_object, Row};
use super::reads::parse_time;
use super::run::Run;
use super::transport::{parse_upload_headers, UploadBody};

const MANIFEST_FILE: &str = "wandb_manifest.json";
const STORAGE_POLICY: &str = "wandb-storage-policy-v1";
/// Files per `CreateArtifactFiles` call.
const FILES_PER_BATCH: usize = 1000;
/// File URLs per `ArtifactFileURLs` page.
const URLS_PER_PAGE: u32 = 1000;
/// Concurrent uploads or downloads of one artifact's files.
const TRANSFERS_IN_FLIGHT: usize = 4;

/// An artifact version to log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactSpec {
    /// Collection name, without alias (e.g. `mnist-cnn`).
    pub name: String,
    /// Artifact type: `model`, `dataset`, `job` or any other free string.
    pub artifact_type: String,
    pub files: Vec<ArtifactFile>,
    pub metadata: Row,
    /// Aliases besides `latest`, which is always added (e.g. `best`).
    pub aliases: Vec<String>,
    pub description: Option<String>,
}

/// One file of an artifact: its path inside the artifact and where it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    pub name: String,
    pub path: PathBuf,
}

impl ArtifactSpec {
    pub fn new(name: impl Into<String>, artifact_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            artifact_type: artifact_type.into(),
            ..Self::default()
        }
    }

    /// Adds the local file `path` as `name` inside the artifact.
    pub fn file(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.files.push(ArtifactFile {
            name: name.into(),
            path: path.into(),
        });
        self
    }

    /// Adds every file under `dir`, named by its path relative to `dir` with `/` separators.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref();
        let mut pending = vec![root.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current)
                .map_err(|e| Error::io("cannot list artifact directory", &current, e))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| Error::io("cannot list artifact directory", &current, e))?
                    .path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let relative = path.strip_prefix(root).unwrap_or(&path);
                    let name: Vec<String> = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    self.files.push(ArtifactFile {
                        name: name.join("/"),
                        path,
                    });
                }
            }
        }
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(self)
    }

    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    pub fn metadata(mut self, metadata: Row) -> Self {
        self.metadata = metadata;
        self
    }
}

/// The version a [`Run::log_artifact`] call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedArtifact {
    pub id: String,
    /// `v0`, `v1`, ... when the server reported the version index.
    pub version: Option<String>,
    /// The manifest digest (hex MD5) identifying the contents.
    pub digest: String,
    /// An identical version existed already; nothing was uploaded.
    pub deduplicated: bool,
}

/// `entity/project/name:alias`; entity and project default to the settings (or the run), the
/// alias to `latest`. `vN` version names work as aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    pub entity: Option<String>,
    pub project: Option<String>,
    pub name: String,
    pub alias: String,
}

impl FromStr for ArtifactRef {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let (path, alias) = match text.rsplit_once(':') {
            Some((path, alias)) => (path, alias),
            None => (text, "latest"),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let owned = |s: &str| Some(s.to_owned());
        let (entity, project, name) = match parts.as_slice() {
            [name] => (None, None, *name),
            [project, name] => (None, owned(project), *name),
            [entity, project, name] => (owned(entity), owned(project), *name),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "artifact reference {text:?} has too many '/'"
                )))
            }
        };
        let empty = name.is_empty() || alias.is_empty() || parts.iter().any(|p| p.is_empty());
        if empty {
            return Err(Error::InvalidInput(format!(
                "artifact reference {text:?} is not of the form [[entity/]project/]name[:alias]"
            )));
        }
        Ok(Self {
            entity,
            project,
            name: name.to_owned(),
            alias: alias.to_owned(),
        })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.entity, &self.project].into_iter().flatten() {
            write!(f, "{part}/")?;
        }
        write!(f, "{}:{}", self.name, self.alias)
    }
}

/// An artifact version as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactInfo {
    pub id: String,
    pub entity: String,
    pub project: String,
    /// Collection name.
    pub name: String,
    pub version_index: Option<u32>,
    pub aliases: Vec<String>,
    pub digest: String,
    /// `PENDING`, `COMMITTED` or `DELETED`.
    pub state: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub file_count: u64,
    pub metadata: Row,
    pub description: Option<String>,
    pub created_at: Option<OffsetDateTime>,
}

impl ArtifactInfo {
    /// `vN`, the version name.
    pub fn version(&self) -> Option<String> {
        self.version_index.map(|i| format!("v{i}"))
    }
}

/// The result of [`Client::download_artifact`].
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadedArtifact {
    pub info: ArtifactInfo,
    pub root: PathBuf,
    /// Every file written or found intact under `root`, in manifest order.
    pub files: Vec<PathBuf>,
}

/// Artifact manifest, version 1 (`wandb_manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    #[serde(rename = "storagePolicy")]
    pub storage_policy: String,
    #[serde(rename = "storagePolicyConfig", default)]
    pub storage_policy_config: Value,
    pub contents: BTreeMap<String, ManifestEntry>,
}

/// One file in a manifest. Readers ignore the client-side leftovers (`local_path`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Base64 MD5 of the file (an ETag or similar for references).
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(
        rename = "birthArtifactID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub birth_artifact_id: Option<String>,
    /// Set for reference entries (e.g. `s3://...`), whose bytes are not stored by W&B.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl Manifest {
    fn new(contents: BTreeMap<String, ManifestEntry>) -> Self {
        Self {
            version: 1,
            storage_policy: STORAGE_POLICY.to_owned(),
            storage_policy_config: json!({"storageLayout": "V2"}),
            contents,
        }
    }

    /// The artifact digest `createArtifact` takes: hex MD5 of `wandb-artifact-manifest-v1\n`
    /// followed by `<path>:<digest>\n` per entry in path order.
    pub fn digest(&self) -> String {
        let mut hasher = Md5::new();
        hasher.update(b"wandb-artifact-manifest-v1\n");
        // BTreeMap order is byte order, which for UTF-8 equals the SDK's code-point sort.
        for (path, entry) in &self.contents {
            hasher.update(format!("{path}:{}\n", entry.digest).as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// The `artifact` selection shared by `ArtifactMembershipByName` and `CreateArtifact`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArtifact {
    id: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    file_count: Option<u64>,
    #[serde(default)]
    version_index: Option<u32>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    artifact_type: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

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

    /// Records `reference` as an input of this run and returns what it resolved to.
    pub async fn use_artifact(&self, reference: &ArtifactRef) -> Result<ArtifactInfo> {
        let entity = reference.entity.as_deref().unwrap_or(self.entity());
        let project = reference.project.as_deref().unwrap_or(self.project());
        let info = self
            .client()
            .membership(entity, project, &reference.name, &reference.alias)
            .await?;
        let mut input = json!({
            "entityName": self.entity(),
            "projectName": self.project(),
            "runName": self.id(),
            "artifactID": info.id,
        });
        // Only newer servers know these fields, so they go only where they matter.
        if entity != self.entity() || project != self.project() {
            input["artifactEntityName"] = json!(entity);
            input["artifactProjectName"] = json!(project);
        }
        let _: Value = self
            .client()
            .transport()
            .graphql(&USE_ARTIFACT, json!({"input": input}))
            .await?;
        Ok(info)
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
            files: Option<Connection>,
        }
        #[derive(Deserialize)]
        struct Connection {
            #[serde(default)]
            edges: Vec<Edge>,
        }
        #[derive(Deserialize)]
        struct Edge {
            node: Option<UploadTarget>,
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

impl Client {
    /// Resolves `reference` to an artifact version.
    pub async fn artifact(&self, reference: &ArtifactRef) -> Result<ArtifactInfo> {
        let (entity, project) = self.artifact_scope(reference).await?;
        self.membership(&entity, &project, &reference.name, &reference.alias)
            .await
    }

    /// Downloads every file of `reference` into `dir`, verifying each against the manifest's
    /// MD5. Files already intact in `dir` or in the local cache are not fetched again.
    pub async fn download_artifact(
        &self,
        reference: &ArtifactRef,
        dir: &Path,
    ) -> Result<DownloadedArtifact> {
        let info = self.artifact(reference).await?;
        let manifest = self.manifest(&info.id).await?;
        let urls = self.file_urls(&info.id).await?;
        let cache = self
            .settings()
            .cache_dir
            .join("artifacts")
            .join("obj")
            .join("md5");
        let wanted: Vec<(&String, &ManifestEntry)> = manifest
            .contents
            .iter()
            .filter(|(name, entry)| match &entry.reference {
                Some(uri) => {
                    tracing::warn!(file = %name, %uri, "skipping a reference entry: its bytes live outside W&B");
                    false
                }
                None => true,
            })
            .collect();
        let files = futures::stream::iter(wanted)
            .map(|(name, entry)| {
                let url = urls.get(name.as_str());
                let cache = &cache;
                async move {
                    let url = url.ok_or_else(|| {
                        Error::NotFound(format!("download URL of artifact file {name}"))
                    })?;
                    self.fetch_verified(name, &entry.digest, url, dir, cache)
                        .await
                }
            })
            .buffered(TRANSFERS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(DownloadedArtifact {
            info,
            root: dir.to_path_buf(),
            files,
        })
    }

    /// Entity and project of a reference, defaulting to the settings.
    async fn artifact_scope(&self, reference: &ArtifactRef) -> Result<(String, String)> {
        let entity = self.resolve_entity(reference.entity.as_deref()).await?;
        let project = self.resolve_project(reference.project.as_deref())?;
        Ok((entity, project))
    }

    async fn membership(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        alias: &str,
    ) -> Result<ArtifactInfo> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            artifact_collection_membership: Option<Membership>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Membership {
            version_index: Option<u32>,
            #[serde(default)]
            aliases: Option<Vec<Alias>>,
            artifact_collection: Option<Collection>,
            artifact: Option<RawArtifact>,
        }
        #[derive(Deserialize)]
        struct Alias {
            alias: String,
        }
        #[derive(Deserialize)]
        struct Collection {
            name: String,
            project: Option<CollectionProject>,
        }
        #[derive(Deserialize)]
        struct CollectionProject {
            name: String,
            entity: Option<Named>,
        }
        #[derive(Deserialize)]
        struct Data {
            project: Option<Project>,
        }

        let full_name = format!("{name}:{alias}");
        let variables = json!({"entity": entity, "project": project, "name": full_name});
        let data: Data = self
            .transport()
            .graphql(&ARTIFACT_MEMBERSHIP_BY_NAME, variables)
            .await?;
        let membership = data.project.and_then(|p| p.artifact_collection_membership);
        let Some(Membership {
            artifact: Some(artifact),
            version_index,
            aliases,
            artifact_collection,
        }) = membership
        else {
            return Err(Error::NotFound(format!(
                "artifact {entity}/{project}/{full_name}"
            )));
        };
        let (collection, scope) = match artifact_collection {
            Some(c) => (c.name, c.project),
            None => (name.to_owned(), None),
        };
        let (project, entity) = match scope {
            Some(p) => (
                p.name,
                p.entity.map_or_else(|| entity.to_owned(), |e| e.name),
            ),
            None => (project.to_owned(), entity.to_owned()),
        };
        Ok(ArtifactInfo {
            id: artifact.id,
            entity,
            project,
            name: collection,
            version_index: version_index.or(artifact.version_index),
            aliases: aliases
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.alias)
                .collect(),
            digest: artifact.digest.unwrap_or_default(),
            state: artifact.state.unwrap_or_default(),
            artifact_type: artifact.artifact_type.map(|t| t.name),
            size: artifact.size.unwrap_or(0),
            file_count: artifact.file_count.unwrap_or(0),
            metadata: json_object(artifact.metadata),
            description: artifact.description,
            created_at: artifact.created_at.as_deref().and_then(parse_time),
        })
    }
}

impl Client {
    async fn manifest(&self, artifact_id: &str) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Data {
            artifact: Option<Artifact>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Artifact {
            current_manifest: Option<ManifestNode>,
        }
        #[derive(Deserialize)]
        struct ManifestNode {
            file: Option<File>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            direct_url: Option<String>,
        }

        let transport = self.transport();
        let data: Data = transport
            .graphql(&FETCH_ARTIFACT_MANIFEST, json!({"id": artifact_id}))
            .await?;
        let url = data
            .artifact
            .and_then(|a| a.current_manifest)
            .and_then(|m| m.file)
            .and_then(|f| f.direct_url)
            .ok_or_else(|| {
                transport.unexpected(&FETCH_ARTIFACT_MANIFEST, "the artifact has no manifest")
            })?;
        let url = parse_url(FETCH_ARTIFACT_MANIFEST.name, &url)?;
        let bytes = transport
            .get_bytes("download artifact manifest", &url)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            transport.unexpected(
                &FETCH_ARTIFACT_MANIFEST,
                format!("the manifest is not valid: {e}"),
            )
        })
    }

    /// Download URL of every stored file of an artifact, by name.
    async fn file_urls(&self, artifact_id: &str) -> Result<HashMap<String, reqwest::Url>> {
        #[derive(Deserialize)]
        struct Data {
            artifact: Option<Artifact>,
        }
        #[derive(Deserialize)]
        struct Artifact {
            files: Option<Connection>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Connection {
            #[serde(default)]
            edges: Vec<Edge>,
            page_info: PageInfo,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct PageInfo {
            has_next_page: bool,
            end_cursor: Option<String>,
        }
        #[derive(Deserialize)]
        struct Edge {
            node: Option<Node>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Node {
            name: String,
            direct_url: Option<String>,
        }

        let mut urls = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let variables = json!({"id": artifact_id, "cursor": cursor, "perPage": URLS_PER_PAGE});
            let data: Data = self
                .transport()
                .graphql(&ARTIFACT_FILE_URLS, variables)
                .await?;
            let Some(page) = data.artifact.and_then(|a| a.files) else {
                break;
            };
            for node in page.edges.into_iter().filter_map(|e| e.node) {
                if let Some(url) = node.direct_url {
                    urls.insert(node.name, parse_url(ARTIFACT_FILE_URLS.name, &url)?);
                }
            }
            match page.page_info.end_cursor {
                Some(next) if page.page_info.has_next_page && cursor.as_ref() != Some(&next) => {
                    cursor = Some(next)
                }
                _ => break,
            }
        }
        Ok(urls)
    }

    /// Puts artifact file `name` under `dir`: kept if already intact there, copied from the
    /// cache if intact there, else downloaded into the cache and verified first.
    async fn fetch_verified(
        &self,
        name: &str,
        digest: &str,
        url: &reqwest::Url,
        dir: &Path,
        cache: &Path,
    ) -> Result<PathBuf> {
        check_relative_name(name)?;
        let target = dir.join(name);
        if md5_matches(&target, digest).await {
            return Ok(target);
        }
        let cached = cache_path(cache, digest).ok_or_else(|| {
            Error::InvalidInput(format!(
                "artifact file {name} has a malformed digest {digest:?}"
            ))
        })?;
        if !md5_matches(&cached, digest).await {
            let parent = cached.parent().unwrap_or(cache);
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io("cannot create cache directory", parent, e))?;
            // Download beside the cache entry and rename, so a crash never leaves a partial
            // file under the final name.
            let partial = cached.with_extension(format!("partial-{}", random_id(8)));
            let actual = self
                .transport()
                .download(&format!("download artifact file {name}"), url, &partial)
                .await;
            let verified = match actual {
                Ok(actual) if actual == digest => Ok(()),
                Ok(actual) => Err(Error::DigestMismatch {
                    name: name.to_owned(),
                    expected: digest.to_owned(),
                    actual,
                }),
                Err(error) => Err(error),
            };
            if let Err(error) = verified {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
            tokio::fs::rename(&partial, &cached)
                .await
                .map_err(|e| Error::io("cannot fill the cache", &cached, e))?;
        }
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io("cannot create directory", parent, e))?;
        }
        tokio::fs::copy(&cached, &target)
            .await
            .map_err(|e| Error::io("cannot copy from the cache", &target, e))?;
        Ok(target)
    }
}

/// Cache location of a file with base64 MD5 `digest`: `<cache>/<hex[..2]>/<hex[2..]>`.
fn cache_path(cache: &Path, digest: &str) -> Option<PathBuf> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(digest)
        .ok()
        .filter(|d| d.len() == 16)?;
    let hex = hex::encode(raw);
    Some(cache.join(&hex[..2]).join(&hex[2..]))
}

async fn md5_matches(path: &Path, digest: &str) -> bool {
    let path = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || md5_file(&path)).await;
    matches!(hashed, Ok(Ok((actual, _))) if actual == digest)
}

/// Base64 MD5 and size of a file, read in chunks.
fn md5_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        base64::engine::general_purpose::STANDARD.encode(hasher.finalize()),
        size,
    ))
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

    fn entry(digest: &str) -> ManifestEntry {
        ManifestEntry {
            digest: digest.into(),
            size: None,
            birth_artifact_id: None,
            reference: None,
            extra: None,
        }
    }

    #[test]
    fn manifest_digest_matches_the_observed_sdk_value() {
        let manifest = Manifest::new(BTreeMap::from([(
            "model.pt".to_owned(),
            entry("DzQ7CTESaiDxM9Z8KwGKOw=="),
        )]));
        assert_eq!(manifest.digest(), "fd8f7dc540f47db6d1da37d4e2a874ba");
    }

    #[test]
    fn manifest_digest_sorts_entries_by_path() {
        // Computed independently with Python's hashlib over
        // "wandb-artifact-manifest-v1\na.txt:XrY7u+Ae7tCTyyK7j1rNww==\nb/c.bin:1B2M2Y8AsgTpgAmY7PhCfg==\n".
        let manifest = Manifest::new(BTreeMap::from([
            ("b/c.bin".to_owned(), entry("1B2M2Y8AsgTpgAmY7PhCfg==")),
            ("a.txt".to_owned(), entry("XrY7u+Ae7tCTyyK7j1rNww==")),
        ]));
        assert_eq!(manifest.digest(), "d41ba37856fbce8fde5b8fa23f9af97e");
    }

    #[test]
    fn manifest_serializes_in_the_v1_shape_and_reads_sdk_manifests() {
        let mut e = entry("DzQ7CTESaiDxM9Z8KwGKOw==");
        e.size = Some(1024);
        e.birth_artifact_id = Some("QXJ0aWZhY3Q6MQ==".into());
        let manifest = Manifest::new(BTreeMap::from([("model.pt".to_owned(), e)]));
        assert_eq!(
            serde_json::to_value(&manifest).unwrap(),
            json!({"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                   "storagePolicyConfig": {"storageLayout": "V2"},
                   "contents": {"model.pt": {"digest": "DzQ7CTESaiDxM9Z8KwGKOw==", "size": 1024,
                                             "birthArtifactID": "QXJ0aWZhY3Q6MQ=="}}})
        );
        let sdk = r#"{"version":1,"storagePolicy":"wandb-storage-policy-v1","storagePolicyConfig":{"storageLayout":"V2"},"contents":{"model.pt":{"digest":"DzQ7CTESaiDxM9Z8KwGKOw==","size":1024,"local_path":"/x","birthArtifactID":"QXJ0aWZhY3Q6MQ==","skip_cache":false}}}"#;
        assert_eq!(serde_json::from_str::<Manifest>(sdk).unwrap(), manifest);
    }

    #[test]
    fn references_parse_with_defaults() {
        let r: ArtifactRef = "team/proj/model:best".parse().unwrap();
        assert_eq!(
            (
                r.entity.as_deref(),
                r.project.as_deref(),
                r.name.as_str(),
                r.alias.as_str()
            ),
            (Some("team"), Some("proj"), "model", "best")
        );
        let r: ArtifactRef = "proj/model".parse().unwrap();
        assert_eq!(
            (r.entity, r.project.as_deref(), r.alias.as_str()),
            (None, Some("proj"), "latest")
        );
        let r: ArtifactRef = "model:v3".parse().unwrap();
        assert_eq!(r.to_string(), "model:v3");
        assert_eq!(
            "a/b/c:d".parse::<ArtifactRef>().unwrap().to_string(),
            "a/b/c:d"
        );
        for bad in ["", "a/b/c/d", "model:", "/model", "a//m"] {
            assert!(bad.parse::<ArtifactRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_paths_use_the_hex_md5() {
        let path = cache_path(Path::new("/c"), "XrY7u+Ae7tCTyyK7j1rNww==").unwrap();
        assert_eq!(path, Path::new("/c/5e/b63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(cache_path(Path::new("/c"), "not base64!"), None);
        assert_eq!(cache_path(Path::new("/c"), "YWJj"), None);
    }

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
