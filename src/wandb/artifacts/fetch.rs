//! Using artifacts: resolving `entity/project/name:alias`, recording a run's inputs, and
//! downloads verified against the manifest's MD5s through a local cache keyed by digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    md5_file, ArtifactInfo, ArtifactRef, DownloadedArtifact, Manifest, Named, RawArtifact,
    TRANSFERS_IN_FLIGHT,
};
use crate::wandb::client::Client;
use crate::wandb::connection::{Connection, Pager};
use crate::wandb::error::{Error, Result};
use crate::wandb::files::{check_relative_name, parse_url};
use crate::wandb::graphql::{
    ADD_ALIASES, ARTIFACT_FILE_URLS, ARTIFACT_MEMBERSHIP_BY_NAME, DELETE_ARTIFACT,
    FETCH_ARTIFACT_MANIFEST, PROJECT_ARTIFACTS, USE_ARTIFACT,
};
use crate::wandb::ids::random_id;
use crate::wandb::json::json_object;
use crate::wandb::reads::parse_time;
use crate::wandb::run::Run;

/// File URLs per `ArtifactFileURLs` page.
const URLS_PER_PAGE: u32 = 1000;

impl Run {
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
}

impl Client {
    /// Every version of every artifact of `artifact_type` in the project, collection by
    /// collection, newest version first.
    pub async fn artifact_versions(
        &self,
        entity: &str,
        project: &str,
        artifact_type: &str,
    ) -> Result<Vec<ArtifactInfo>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<Project>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            artifact_type: Option<Type>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Type {
            artifact_collections: Option<Connection<Collection>>,
        }
        #[derive(Deserialize)]
        struct Collection {
            name: String,
            artifacts: Option<Connection<Version>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            id: String,
            digest: String,
            state: Option<String>,
            version_index: Option<u32>,
            size: Option<u64>,
            file_count: Option<u64>,
            description: Option<String>,
            metadata: Option<Value>,
            created_at: Option<String>,
            #[serde(default)]
            aliases: Vec<Alias>,
        }
        #[derive(Deserialize)]
        struct Alias {
            alias: String,
        }

        let variables = json!({"entity": entity, "project": project, "type": artifact_type});
        let data: Data = self
            .transport()
            .graphql(&PROJECT_ARTIFACTS, variables)
            .await?;
        let collections = data
            .project
            .and_then(|p| p.artifact_type)
            .and_then(|t| t.artifact_collections)
            .into_iter()
            .flat_map(Connection::nodes);
        let mut versions = Vec::new();
        for collection in collections {
            let mut of_collection: Vec<ArtifactInfo> = collection
                .artifacts
                .into_iter()
                .flat_map(Connection::nodes)
                .map(|v| ArtifactInfo {
                    id: v.id,
                    entity: entity.to_owned(),
                    project: project.to_owned(),
                    name: collection.name.clone(),
                    version_index: v.version_index,
                    aliases: v.aliases.into_iter().map(|a| a.alias).collect(),
                    digest: v.digest,
                    state: v.state.unwrap_or_default(),
                    artifact_type: Some(artifact_type.to_owned()),
                    size: v.size.unwrap_or(0),
                    file_count: v.file_count.unwrap_or(0),
                    metadata: v.metadata.map(json_object).unwrap_or_default(),
                    description: v.description,
                    created_at: v.created_at.as_deref().and_then(parse_time),
                })
                .collect();
            of_collection.sort_by_key(|v| std::cmp::Reverse(v.version_index));
            versions.extend(of_collection);
        }
        Ok(versions)
    }

    /// Points `alias` of the version's collection at `version`.
    pub async fn add_alias(&self, version: &ArtifactInfo, alias: &str) -> Result<()> {
        let aliases = json!([{
            "alias": alias,
            "artifactCollectionName": version.name,
            "entityName": version.entity,
            "projectName": version.project,
        }]);
        let variables = json!({"artifactID": version.id, "aliases": aliases});
        let _: Value = self.transport().graphql(&ADD_ALIASES, variables).await?;
        Ok(())
    }

    /// Deletes `version`; with aliases other than `latest` only if `delete_aliases`.
    pub async fn delete_artifact(
        &self,
        version: &ArtifactInfo,
        delete_aliases: bool,
    ) -> Result<()> {
        let variables = json!({"artifactID": version.id, "deleteAliases": delete_aliases});
        let _: Value = self
            .transport()
            .graphql(&DELETE_ARTIFACT, variables)
            .await?;
        Ok(())
    }

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
        // Owned (name, digest, url) triples: closures over borrowed tuples would make this
        // future not `Send` (a higher-ranked lifetime limitation of the compiler).
        let mut wanted = Vec::with_capacity(manifest.contents.len());
        for (name, entry) in manifest.contents {
            if let Some(uri) = &entry.reference {
                tracing::warn!(file = %name, %uri, "skipping a reference entry: its bytes live outside W&B");
                continue;
            }
            let url = urls
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("download URL of artifact file {name}")))?;
            wanted.push((name, entry.digest, url));
        }
        let cache = &cache;
        let files = futures::stream::iter(wanted)
            .map(|(name, digest, url)| async move {
                self.fetch_verified(&name, &digest, &url, dir, cache).await
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
            files: Option<Connection<Node>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Node {
            name: String,
            direct_url: Option<String>,
        }

        let mut urls = HashMap::new();
        let mut pager = Pager::default();
        while !pager.is_done() {
            let variables =
                json!({"id": artifact_id, "cursor": pager.cursor(), "perPage": URLS_PER_PAGE});
            let data: Data = self
                .transport()
                .graphql(&ARTIFACT_FILE_URLS, variables)
                .await?;
            for node in pager.advance(data.artifact.and_then(|a| a.files)) {
                if let Some(url) = node.direct_url {
                    urls.insert(node.name, parse_url(ARTIFACT_FILE_URLS.name, &url)?);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths_use_the_hex_md5() {
        let path = cache_path(Path::new("/c"), "XrY7u+Ae7tCTyyK7j1rNww==").unwrap();
        assert_eq!(path, Path::new("/c/5e/b63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(cache_path(Path::new("/c"), "not base64!"), None);
        assert_eq!(cache_path(Path::new("/c"), "YWJj"), None);
    }
}
