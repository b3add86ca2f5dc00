//! `mlwf artifacts`: list a type's versions, download one (digest-verified), alias, delete, and
//! prune: every version but the last N of each collection and those with a kept alias.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::connect::Store;
use crate::wandb::{ArtifactInfo, ArtifactRef};

/// An artifact version as the commands print it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    /// `entity/project/name:vN`.
    pub reference: String,
    pub name: String,
    pub version: Option<String>,
    pub aliases: Vec<String>,
    pub size: u64,
    pub files: u64,
    pub digest: String,
    pub created_at: Option<String>,
}

impl Version {
    fn of(info: &ArtifactInfo) -> Self {
        let version = info.version();
        Self {
            reference: reference(info),
            name: info.name.clone(),
            // The version's own name (`v3`) is an alias too on W&B; it says nothing here.
            aliases: info
                .aliases
                .iter()
                .filter(|a| Some(a.as_str()) != version.as_deref())
                .cloned()
                .collect(),
            version,
            size: info.size,
            files: info.file_count,
            digest: info.digest.clone(),
            created_at: info.created_at.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        }
    }
}

fn reference(info: &ArtifactInfo) -> String {
    format!(
        "{}/{}/{}:{}",
        info.entity,
        info.project,
        info.name,
        info.version().unwrap_or_else(|| "latest".into())
    )
}

/// Every committed version of `artifact_type`, newest first within each collection.
pub async fn list(store: &Store, artifact_type: &str) -> anyhow::Result<Vec<Version>> {
    Ok(versions(store, artifact_type)
        .await?
        .iter()
        .map(Version::of)
        .collect())
}

async fn versions(store: &Store, artifact_type: &str) -> anyhow::Result<Vec<ArtifactInfo>> {
    let versions = store
        .client
        .artifact_versions(&store.entity, &store.project, artifact_type)
        .await
        .with_context(|| format!("listing the {artifact_type} artifacts"))?;
    Ok(versions
        .into_iter()
        .filter(|v| v.state == "COMMITTED")
        .collect())
}

async fn resolve(store: &Store, reference: &str) -> anyhow::Result<ArtifactInfo> {
    let parsed: ArtifactRef = reference
        .parse()
        .with_context(|| format!("artifact reference {reference:?}"))?;
    store.client.artifact(&parsed).await.with_context(|| {
        format!("no artifact {reference}: `mlwf artifacts list --type TYPE` shows them")
    })
}

/// Downloads `reference` into `dir`, every file checked against the manifest's digest.
pub async fn get(
    store: &Store,
    reference: &str,
    dir: Option<&Path>,
) -> anyhow::Result<(Version, PathBuf, usize)> {
    let parsed: ArtifactRef = reference
        .parse()
        .with_context(|| format!("artifact reference {reference:?}"))?;
    let dir = dir.map_or_else(|| PathBuf::from(&parsed.name), Path::to_owned);
    let downloaded = store
        .client
        .download_artifact(&parsed, &dir)
        .await
        .with_context(|| format!("downloading {reference}"))?;
    Ok((Version::of(&downloaded.info), dir, downloaded.files.len()))
}

/// Points `alias` at `reference`; in a dry run only resolves it.
pub async fn alias(
    store: &Store,
    reference: &str,
    alias: &str,
    dry_run: bool,
) -> anyhow::Result<Version> {
    let info = resolve(store, reference).await?;
    if !dry_run {
        store
            .client
            .add_alias(&info, alias)
            .await
            .with_context(|| format!("aliasing {reference} as {alias}"))?;
    }
    Ok(Version::of(&info))
}

/// Deletes `reference`; one with aliases (other than `latest`) only with `force`.
pub async fn delete(
    store: &Store,
    reference: &str,
    force: bool,
    dry_run: bool,
) -> anyhow::Result<Version> {
    let info = resolve(store, reference).await?;
    let version = Version::of(&info);
    let aliased: Vec<&String> = version.aliases.iter().filter(|a| *a != "latest").collect();
    if !aliased.is_empty() && !force {
        anyhow::bail!(
            "{reference} has aliases ({}): remove them, or pass --force to delete them with it",
            aliased
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !dry_run {
        store
            .client
            .delete_artifact(&info, force)
            .await
            .with_context(|| format!("deleting {reference}"))?;
    }
    Ok(Version::of(&info))
}

/// What `prune` keeps.
#[derive(Debug, Clone)]
pub struct Keep {
    /// The newest versions of each collection.
    pub last: usize,
    /// Versions carrying any of these aliases.
    pub aliases: Vec<String>,
}

/// The plan and, unless a dry run, its execution.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub kept: Vec<Version>,
    pub deleted: Vec<Version>,
    pub dry_run: bool,
}

/// Deletes every version of `artifact_type` that `keep` does not keep, after working out the
/// whole plan (so a failure midway leaves only versions that were to go anyway).
pub async fn prune(
    store: &Store,
    artifact_type: &str,
    keep: &Keep,
    dry_run: bool,
) -> anyhow::Result<Pruned> {
    let all = versions(store, artifact_type).await?;
    let (kept, doomed) = plan(&all, keep);
    if !dry_run {
        for info in &doomed {
            store
                .client
                .delete_artifact(info, true)
                .await
                .with_context(|| format!("deleting {}", reference(info)))?;
        }
    }
    Ok(Pruned {
        kept: kept.iter().map(|v| Version::of(v)).collect(),
        deleted: doomed.iter().map(|v| Version::of(v)).collect(),
        dry_run,
    })
}

/// Splits versions (newest first within each collection) into kept and deleted.
fn plan<'a>(
    all: &'a [ArtifactInfo],
    keep: &Keep,
) -> (Vec<&'a ArtifactInfo>, Vec<&'a ArtifactInfo>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut kept, mut doomed) = (Vec::new(), Vec::new());
    for info in all {
        let rank = seen.entry(info.name.as_str()).or_default();
        let aliased = info.aliases.iter().any(|a| keep.aliases.contains(a));
        if *rank < keep.last || aliased {
            kept.push(info);
        } else {
            doomed.push(info);
        }
        *rank += 1;
    }
    (kept, doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, index: u32, aliases: &[&str]) -> ArtifactInfo {
        ArtifactInfo {
            id: format!("{name}{index}"),
            entity: "e".into(),
            project: "p".into(),
            name: name.into(),
            version_index: Some(index),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            digest: String::new(),
            state: "COMMITTED".into(),
            artifact_type: Some("model".into()),
            size: 0,
            file_count: 0,
            metadata: Default::default(),
            description: None,
            created_at: None,
        }
    }

    #[test]
    fn prune_keeps_the_last_n_of_each_collection_and_kept_aliases() {
        let all = vec![
            version("model-a", 4, &["latest"]),
            version("model-a", 3, &[]),
            version("model-a", 2, &[]),
            version("model-a", 1, &["best"]),
            version("model-a", 0, &["v0-tag"]),
            version("model-b", 0, &["latest"]),
        ];
        let keep = Keep {
            last: 2,
            aliases: vec!["best".into(), "latest".into(), "baseline".into()],
        };
        let (kept, doomed) = plan(&all, &keep);
        let ids = |v: Vec<&ArtifactInfo>| v.iter().map(|v| v.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(kept), ["model-a4", "model-a3", "model-a1", "model-b0"]);
        assert_eq!(ids(doomed), ["model-a2", "model-a0"]);
    }
}
