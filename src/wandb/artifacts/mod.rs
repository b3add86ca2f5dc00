//! Artifacts: versioned bundles of files (models, datasets, jobs). This module holds the
//! types and the manifest format; `log` writes versions in the official call order, `fetch`
//! resolves names, records a run's inputs and downloads verified, cached copies.

mod fetch;
mod log;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::error::{Error, Result};
use super::json::Row;

const STORAGE_POLICY: &str = "wandb-storage-policy-v1";
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
    /// Symlinks to files are included; symlinks to directories are not followed.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref();
        let mut pending = vec![root.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current)
                .map_err(|e| Error::io("cannot list artifact directory", &current, e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io("cannot list artifact directory", &current, e))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| Error::io("cannot list artifact directory", &path, e))?;
                // Symlinked directories are not followed: a link cycle would never end.
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() || path.is_file() {
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

/// Base64 MD5 and size of a file, read in chunks.
/// `text` in the characters W&B allows in artifact names and aliases (alphanumerics, `-`, `_`,
/// `.`); anything else becomes `-`.
pub fn safe_artifact_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

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
}
