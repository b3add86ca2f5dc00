//! Artifacts: types, collections (sequences), versions, aliases, manifests and their files.
//!
//! Life of a version: `create_artifact` makes it PENDING (or returns the identical latest
//! version), the client uploads file blobs and the manifest, and `commit_artifact` reads the
//! manifest, records its entries, assigns `versionIndex` and moves the aliases (`latest`, `vN`
//! and those requested at creation).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _};
use serde::Deserialize;
use serde_json::Value;

use super::files::blob_exists;
use super::runs::RunRow;
use super::{ensure_project, invalid, not_found, now, validate_name, FileDirs, StoreResult};

pub const PENDING: &str = "PENDING";
pub const COMMITTED: &str = "COMMITTED";

#[derive(Clone, Debug)]
pub struct ArtifactRow {
    pub id: i64,
    pub collection_id: i64,
    pub project_id: i64,
    pub type_name: String,
    pub version_index: Option<i64>,
    pub state: String,
    pub digest: String,
    pub description: Option<String>,
    pub metadata: Option<String>,
    pub size: i64,
    pub file_count: i64,
    pub history_step: Option<i64>,
    pub ttl_duration_seconds: Option<i64>,
    pub tags: Vec<String>,
    pub manifest_md5: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const ARTIFACT_COLUMNS: &str = "a.id, a.collection_id, c.project_id, t.name, a.version_index, \
    a.state, a.digest, a.description, a.metadata, a.size, a.file_count, a.history_step, \
    a.ttl_duration_seconds, a.tags, a.manifest_md5, a.created_at, a.updated_at \
    FROM artifacts a JOIN artifact_collections c ON c.id = a.collection_id \
    JOIN artifact_types t ON t.id = c.type_id";

fn artifact_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactRow> {
    let tags: String = row.get(13)?;
    Ok(ArtifactRow {
        id: row.get(0)?,
        collection_id: row.get(1)?,
        project_id: row.get(2)?,
        type_name: row.get(3)?,
        version_index: row.get(4)?,
        state: row.get(5)?,
        digest: row.get(6)?,
        description: row.get(7)?,
        metadata: row.get(8)?,
        size: row.get(9)?,
        file_count: row.get(10)?,
        history_step: row.get(11)?,
        ttl_duration_seconds: row.get(12)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        manifest_md5: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

#[derive(Clone, Debug)]
pub struct CollectionRow {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub type_name: String,
    pub description: Option<String>,
    pub created_at: String,
}

const COLLECTION_COLUMNS: &str = "c.id, c.project_id, c.name, t.name, c.description, c.created_at \
    FROM artifact_collections c JOIN artifact_types t ON t.id = c.type_id";

fn collection_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CollectionRow> {
    Ok(CollectionRow {
        id: row.get(0)?,
        project_id: row.get(1)?,
        name: row.get(2)?,
        type_name: row.get(3)?,
        description: row.get(4)?,
        created_at: row.get(5)?,
    })
}

#[derive(Clone, Debug)]
pub struct TypeRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
}

pub fn artifact_by_id(conn: &Connection, id: i64) -> StoreResult<Option<ArtifactRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {ARTIFACT_COLUMNS} WHERE a.id = ?1"),
            [id],
            artifact_from_row,
        )
        .optional()?)
}

pub fn require_artifact(conn: &Connection, id: i64) -> StoreResult<ArtifactRow> {
    artifact_by_id(conn, id)?.ok_or_else(|| not_found(format!("artifact {id} not found")))
}

pub fn collection_by_id(conn: &Connection, id: i64) -> StoreResult<CollectionRow> {
    conn.query_row(
        &format!("SELECT {COLLECTION_COLUMNS} WHERE c.id = ?1"),
        [id],
        collection_from_row,
    )
    .optional()?
    .ok_or_else(|| not_found(format!("artifact collection {id} not found")))
}

pub fn collection_by_name(
    conn: &Connection,
    project_id: i64,
    name: &str,
) -> StoreResult<Option<CollectionRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLLECTION_COLUMNS} WHERE c.project_id = ?1 AND c.name = ?2"),
            (project_id, name),
            collection_from_row,
        )
        .optional()?)
}

pub fn collections_of_type(conn: &Connection, type_id: i64) -> StoreResult<Vec<CollectionRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLLECTION_COLUMNS} WHERE c.type_id = ?1 ORDER BY c.id"
    ))?;
    let rows = stmt.query_map([type_id], collection_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn artifact_type(
    conn: &Connection,
    project_id: i64,
    name: &str,
) -> StoreResult<Option<TypeRow>> {
    Ok(conn
        .query_row(
            "SELECT id, name, description FROM artifact_types WHERE project_id = ?1 AND name = ?2",
            (project_id, name),
            |row| {
                Ok(TypeRow {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    description: row.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Looks up or creates an artifact type.
pub fn ensure_type(
    conn: &Connection,
    project_id: i64,
    name: &str,
    description: Option<&str>,
) -> StoreResult<TypeRow> {
    validate_name("artifact type name", name)?;
    conn.execute(
        "INSERT INTO artifact_types (project_id, name, description, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project_id, name) DO NOTHING",
        (project_id, name, description, now()),
    )?;
    artifact_type(conn, project_id, name)?.ok_or_else(|| not_found("artifact type vanished"))
}

/// Versions of a collection, newest first; only committed ones.
pub fn collection_versions(conn: &Connection, collection_id: i64) -> StoreResult<Vec<ArtifactRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ARTIFACT_COLUMNS} WHERE a.collection_id = ?1 AND a.state = ?2 ORDER BY a.version_index DESC"
    ))?;
    let rows = stmt.query_map((collection_id, COMMITTED), artifact_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest committed version of a collection.
pub fn latest_version(conn: &Connection, collection_id: i64) -> StoreResult<Option<ArtifactRow>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {ARTIFACT_COLUMNS} WHERE a.collection_id = ?1 AND a.state = ?2
                 ORDER BY a.version_index DESC LIMIT 1"
            ),
            (collection_id, COMMITTED),
            artifact_from_row,
        )
        .optional()?)
}

/// Resolves `alias` inside a collection: an alias name, or `vN` for version N.
pub fn resolve_alias(
    conn: &Connection,
    collection_id: i64,
    alias: &str,
) -> StoreResult<Option<ArtifactRow>> {
    if let Some(index) = alias.strip_prefix('v').and_then(|n| n.parse::<i64>().ok()) {
        return Ok(conn
            .query_row(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} WHERE a.collection_id = ?1 AND a.version_index = ?2"
                ),
                (collection_id, index),
                artifact_from_row,
            )
            .optional()?);
    }
    Ok(conn
        .query_row(
            &format!(
                "SELECT {ARTIFACT_COLUMNS} JOIN artifact_aliases al ON al.artifact_id = a.id
                 WHERE al.collection_id = ?1 AND al.alias = ?2"
            ),
            (collection_id, alias),
            artifact_from_row,
        )
        .optional()?)
}

/// Resolves `collection:alias` (or `collection`, meaning `latest`) in a project.
pub fn resolve_name(
    conn: &Connection,
    project_id: i64,
    name: &str,
) -> StoreResult<Option<(CollectionRow, ArtifactRow)>> {
    let (collection, alias) = name.split_once(':').unwrap_or((name, "latest"));
    let Some(collection) = collection_by_name(conn, project_id, collection)? else {
        return Ok(None);
    };
    Ok(resolve_alias(conn, collection.id, alias)?.map(|artifact| (collection, artifact)))
}

pub fn aliases_of(conn: &Connection, artifact_id: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT alias FROM artifact_aliases WHERE artifact_id = ?1 ORDER BY alias",
    )?;
    let rows = stmt.query_map([artifact_id], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AliasInput {
    pub alias: String,
    #[serde(default)]
    pub artifact_collection_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagInput {
    pub tag_name: String,
}

/// `CreateArtifactInput`, the fields this server uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateArtifact {
    pub entity_name: String,
    pub project_name: String,
    pub run_name: Option<String>,
    pub artifact_type_name: String,
    pub artifact_collection_name: Option<String>,
    pub artifact_collection_names: Option<Vec<String>>,
    pub digest: String,
    pub description: Option<String>,
    pub metadata: Option<String>,
    pub aliases: Option<Vec<AliasInput>>,
    pub tags: Option<Vec<TagInput>>,
    #[serde(rename = "clientID")]
    pub client_id: Option<String>,
    #[serde(rename = "sequenceClientID")]
    pub sequence_client_id: Option<String>,
    pub enable_digest_deduplication: Option<bool>,
    pub history_step: Option<i64>,
    pub ttl_duration_seconds: Option<i64>,
}

fn validate_alias(alias: &str) -> StoreResult<()> {
    let ok = !alias.is_empty() && alias.len() <= 128 && !alias.contains([':', '/']);
    if !ok {
        return Err(invalid(format!("invalid alias {alias:?}")));
    }
    // `vN` names a version; letting clients assign it would make two versions answer to it.
    if alias
        .strip_prefix('v')
        .is_some_and(|n| n.parse::<u64>().is_ok())
    {
        return Err(invalid(format!(
            "alias {alias:?} is reserved for version numbers"
        )));
    }
    Ok(())
}

/// Creates a PENDING version, or returns the collection's latest version when its digest is the
/// same (the client then skips the upload). The run, when given, gets the version as output.
pub fn create_artifact(
    conn: &Connection,
    input: &CreateArtifact,
    run: Option<&RunRow>,
) -> StoreResult<ArtifactRow> {
    let collection_name = input
        .artifact_collection_name
        .as_deref()
        .or_else(|| {
            input
                .artifact_collection_names
                .as_ref()?
                .first()
                .map(String::as_str)
        })
        .ok_or_else(|| invalid("artifactCollectionName is required"))?;
    validate_name("artifact name", collection_name)?;
    let aliases: Vec<String> = input
        .aliases
        .iter()
        .flatten()
        .filter(|a| {
            a.artifact_collection_name
                .as_deref()
                .is_none_or(|c| c == collection_name)
        })
        .map(|a| a.alias.clone())
        .collect();
    for alias in &aliases {
        if alias != "latest" {
            validate_alias(alias)?;
        }
    }
    if let Some(metadata) = &input.metadata {
        if !matches!(
            serde_json::from_str::<Value>(metadata),
            Ok(Value::Object(_) | Value::Null)
        ) {
            return Err(invalid("metadata must be a JSON object"));
        }
    }
    let project_id = ensure_project(conn, &input.entity_name, &input.project_name)?;
    let ty = ensure_type(conn, project_id, &input.artifact_type_name, None)?;
    let collection = match collection_by_name(conn, project_id, collection_name)? {
        Some(c) if c.type_name != ty.name => {
            return Err(invalid(format!(
                "artifact {collection_name} is of type {}, not {}",
                c.type_name, ty.name
            )))
        }
        Some(c) => c,
        None => {
            conn.execute(
                "INSERT INTO artifact_collections (project_id, type_id, name, description, created_at)
                 VALUES (?1, ?2, ?3, NULL, ?4)",
                (project_id, ty.id, collection_name, now()),
            )?;
            collection_by_name(conn, project_id, collection_name)?
                .ok_or_else(|| not_found("artifact collection vanished"))?
        }
    };

    // The SDK sends one version twice under one clientID and digest (`wandb job create` makes
    // it, then `log_artifact` again): the same version must come back, keeping what the first
    // call said.
    if let Some(existing) = same_client_version(conn, collection.id, input)? {
        adopt_repeated_create(conn, &existing, input, &aliases)?;
        if let Some(run) = run {
            link_run(conn, run.id, existing.id, "output")?;
        }
        return require_artifact(conn, existing.id);
    }

    if input.enable_digest_deduplication != Some(false) {
        if let Some(latest) = latest_version(conn, collection.id)? {
            if latest.digest == input.digest {
                for alias in &aliases {
                    set_alias(conn, collection.id, alias, latest.id)?;
                }
                if let Some(run) = run {
                    link_run(conn, run.id, latest.id, "output")?;
                }
                return Ok(latest);
            }
        }
    }

    let tags: Vec<&str> = input
        .tags
        .iter()
        .flatten()
        .map(|t| t.tag_name.as_str())
        .collect();
    let now = now();
    conn.execute(
        "INSERT INTO artifacts (collection_id, state, digest, description, metadata, history_step,
             ttl_duration_seconds, created_by_run_id, client_id, sequence_client_id, pending_aliases,
             tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        rusqlite::params![
            collection.id,
            PENDING,
            input.digest,
            input.description,
            input.metadata,
            input.history_step,
            input.ttl_duration_seconds,
            run.map(|r| r.id),
            input.client_id,
            input.sequence_client_id,
            serde_json::to_string(&aliases).map_err(anyhow::Error::from)?,
            serde_json::to_string(&tags).map_err(anyhow::Error::from)?,
            now,
        ],
    )?;
    let id = conn.last_insert_rowid();
    if let Some(run) = run {
        link_run(conn, run.id, id, "output")?;
    }
    require_artifact(conn, id)
}

/// The version of `collection` an earlier `createArtifact` made under the same `clientID` with
/// the same digest.
fn same_client_version(
    conn: &Connection,
    collection_id: i64,
    input: &CreateArtifact,
) -> StoreResult<Option<ArtifactRow>> {
    let Some(client_id) = input.client_id.as_deref() else {
        return Ok(None);
    };
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM artifacts WHERE collection_id = ?1 AND client_id = ?2 AND digest = ?3
             ORDER BY id LIMIT 1",
            (collection_id, client_id, &input.digest),
            |row| row.get(0),
        )
        .optional()?;
    id.map(|id| require_artifact(conn, id)).transpose()
}

/// A repeated create of `existing`: metadata it lacked and aliases it did not have yet are
/// taken; nothing it had is lost.
fn adopt_repeated_create(
    conn: &Connection,
    existing: &ArtifactRow,
    input: &CreateArtifact,
    aliases: &[String],
) -> StoreResult<()> {
    if existing.metadata.is_none() && input.metadata.is_some() {
        conn.execute(
            "UPDATE artifacts SET metadata = ?2, updated_at = ?3 WHERE id = ?1",
            (existing.id, &input.metadata, now()),
        )?;
    }
    if existing.state == COMMITTED {
        for alias in aliases {
            set_alias(conn, existing.collection_id, alias, existing.id)?;
        }
        return Ok(());
    }
    let pending: String = conn.query_row(
        "SELECT pending_aliases FROM artifacts WHERE id = ?1",
        [existing.id],
        |row| row.get(0),
    )?;
    let mut merged: Vec<String> = serde_json::from_str(&pending).unwrap_or_default();
    for alias in aliases {
        if !merged.contains(alias) {
            merged.push(alias.clone());
        }
    }
    conn.execute(
        "UPDATE artifacts SET pending_aliases = ?2 WHERE id = ?1",
        (
            existing.id,
            serde_json::to_string(&merged).map_err(anyhow::Error::from)?,
        ),
    )?;
    Ok(())
}

pub fn link_run(
    conn: &Connection,
    run_id: i64,
    artifact_id: i64,
    direction: &str,
) -> StoreResult<()> {
    conn.execute(
        "INSERT OR IGNORE INTO run_artifacts (run_id, artifact_id, direction) VALUES (?1, ?2, ?3)",
        (run_id, artifact_id, direction),
    )?;
    Ok(())
}

/// Points `alias` of a collection at a version, taking it from whichever version had it.
fn set_alias(
    conn: &Connection,
    collection_id: i64,
    alias: &str,
    artifact_id: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO artifact_aliases (collection_id, alias, artifact_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (collection_id, alias) DO UPDATE SET artifact_id = excluded.artifact_id",
        (collection_id, alias, artifact_id),
    )?;
    Ok(())
}

/// Remembers the digest the client announced for the manifest (`createArtifactManifest`).
pub fn announce_manifest(conn: &Connection, artifact_id: i64, digest: &str) -> StoreResult<()> {
    let artifact = require_artifact(conn, artifact_id)?;
    if artifact.state != PENDING {
        return Ok(());
    }
    conn.execute(
        "UPDATE artifacts SET manifest_digest = NULLIF(?2, ''), updated_at = ?3 WHERE id = ?1",
        (artifact_id, digest, now()),
    )?;
    Ok(())
}

/// Records the uploaded manifest blob, checking it against the announced digest.
pub fn manifest_uploaded(
    conn: &Connection,
    artifact_id: i64,
    md5_hex: &str,
    md5_base64: &str,
) -> StoreResult<()> {
    let (state, announced): (String, Option<String>) = conn
        .query_row(
            "SELECT state, manifest_digest FROM artifacts WHERE id = ?1",
            [artifact_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| not_found(format!("artifact {artifact_id} not found")))?;
    if state != PENDING {
        return Err(invalid("the artifact is already committed"));
    }
    if announced.as_deref().is_some_and(|d| d != md5_base64) {
        return Err(invalid(format!(
            "manifest digest mismatch: announced {}, uploaded {md5_base64}",
            announced.unwrap_or_default()
        )));
    }
    conn.execute(
        "UPDATE artifacts SET manifest_md5 = ?2, updated_at = ?3 WHERE id = ?1",
        (artifact_id, md5_hex, now()),
    )?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Manifest {
    version: i64,
    #[serde(default)]
    contents: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestEntry {
    digest: String,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default, rename = "birthArtifactID")]
    birth_artifact_id: Option<String>,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

/// Commits a PENDING version: reads its manifest, checks every uploaded entry is stored, and
/// assigns the version number and aliases. Committing a committed version is a no-op, so a
/// client retrying after a lost response gets the same answer.
pub fn commit_artifact(
    conn: &Connection,
    dirs: &FileDirs,
    artifact_id: i64,
) -> StoreResult<ArtifactRow> {
    let artifact = require_artifact(conn, artifact_id)?;
    if artifact.state == COMMITTED {
        return Ok(artifact);
    }
    let manifest_md5 = artifact
        .manifest_md5
        .as_deref()
        .ok_or_else(|| invalid("the artifact manifest was not uploaded"))?;
    let bytes = std::fs::read(dirs.blob(manifest_md5))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|err| invalid(format!("the artifact manifest is not valid: {err}")))?;
    if manifest.version != 1 {
        return Err(invalid(format!(
            "unsupported manifest version {}",
            manifest.version
        )));
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO artifact_files (artifact_id, name, digest, size, birth_artifact_id, ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut total_size = 0i64;
    for (name, entry) in &manifest.contents {
        if entry.reference.is_none() {
            let hex = base64_md5_to_hex(&entry.digest)
                .ok_or_else(|| invalid(format!("manifest entry {name} has a malformed digest")))?;
            if !blob_exists(conn, &hex)? {
                return Err(invalid(format!(
                    "file {name} of the artifact was not uploaded"
                )));
            }
        }
        let size = entry.size.unwrap_or(0);
        total_size += size;
        insert.execute((
            artifact_id,
            name,
            &entry.digest,
            size,
            &entry.birth_artifact_id,
            &entry.reference,
        ))?;
    }
    let version: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version_index) + 1, 0) FROM artifacts WHERE collection_id = ?1",
        [artifact.collection_id],
        |row| row.get(0),
    )?;
    conn.execute(
        "UPDATE artifacts SET state = ?2, version_index = ?3, size = ?4, file_count = ?5, updated_at = ?6
         WHERE id = ?1",
        (
            artifact_id,
            COMMITTED,
            version,
            total_size,
            manifest.contents.len() as i64,
            now(),
        ),
    )?;
    let pending: String = conn.query_row(
        "SELECT pending_aliases FROM artifacts WHERE id = ?1",
        [artifact_id],
        |row| row.get(0),
    )?;
    let mut aliases: Vec<String> = serde_json::from_str(&pending).unwrap_or_default();
    aliases.push("latest".to_owned());
    aliases.push(format!("v{version}"));
    for alias in &aliases {
        set_alias(conn, artifact.collection_id, alias, artifact_id)?;
    }
    require_artifact(conn, artifact_id)
}

pub fn base64_md5_to_hex(digest: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(digest)
        .ok()?;
    (bytes.len() == 16).then(|| hex::encode(bytes))
}

#[derive(Clone, Debug)]
pub struct ArtifactFileRow {
    pub name: String,
    pub digest: String,
    pub size: i64,
    pub reference: Option<String>,
}

/// Entries of a committed manifest, by name, after `after` (a name), at most `limit`.
pub fn artifact_files(
    conn: &Connection,
    artifact_id: i64,
    names: &[String],
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<ArtifactFileRow>> {
    let names = serde_json::to_string(names).map_err(anyhow::Error::from)?;
    let mut stmt = conn.prepare_cached(
        "SELECT name, digest, size, ref FROM artifact_files
         WHERE artifact_id = ?1 AND name > ?2
           AND (json_array_length(?3) = 0 OR name IN (SELECT value FROM json_each(?3)))
         ORDER BY name LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![artifact_id, after.unwrap_or(""), names, limit],
        |row| {
            Ok(ArtifactFileRow {
                name: row.get(0)?,
                digest: row.get(1)?,
                size: row.get(2)?,
                reference: row.get(3)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds aliases to a committed version (moving them from other versions).
pub fn add_aliases(conn: &Connection, artifact_id: i64, aliases: &[String]) -> StoreResult<()> {
    let artifact = require_artifact(conn, artifact_id)?;
    if artifact.state != COMMITTED {
        return Err(invalid("aliases can only be added to committed artifacts"));
    }
    for alias in aliases {
        if alias != "latest" {
            validate_alias(alias)?;
        }
        set_alias(conn, artifact.collection_id, alias, artifact_id)?;
    }
    Ok(())
}

pub fn delete_aliases(conn: &Connection, artifact_id: i64, aliases: &[String]) -> StoreResult<()> {
    for alias in aliases {
        conn.execute(
            "DELETE FROM artifact_aliases WHERE artifact_id = ?1 AND alias = ?2",
            (artifact_id, alias),
        )?;
    }
    Ok(())
}

/// Deletes a version. One with aliases is refused unless `delete_aliases`, as W&B does (an
/// alias is someone's pointer); `latest` moves to the newest version left.
pub fn delete_artifact(
    conn: &Connection,
    artifact_id: i64,
    delete_aliases: bool,
) -> StoreResult<ArtifactRow> {
    let artifact = require_artifact(conn, artifact_id)?;
    // `latest` and the version's own name (`v3`) are the server's, not someone's pointer.
    let own = artifact.version_index.map(|i| format!("v{i}"));
    let aliases: Vec<String> = aliases_of(conn, artifact_id)?
        .into_iter()
        .filter(|a| a != "latest" && Some(a) != own.as_ref())
        .collect();
    if !aliases.is_empty() && !delete_aliases {
        return Err(invalid(format!(
            "cannot delete an artifact version with aliases ({}): remove them first, or set \
             deleteAliases",
            aliases.join(", ")
        )));
    }
    conn.execute("DELETE FROM artifacts WHERE id = ?1", [artifact_id])?;
    let newest: Option<i64> = conn
        .query_row(
            "SELECT id FROM artifacts WHERE collection_id = ?1 AND state = ?2
             ORDER BY version_index DESC LIMIT 1",
            (artifact.collection_id, COMMITTED),
            |row| row.get(0),
        )
        .optional()?;
    if let Some(newest) = newest {
        set_alias(conn, artifact.collection_id, "latest", newest)?;
    }
    Ok(artifact)
}

/// `updateArtifact`: description, metadata, TTL, tags and (when given) the full alias set.
pub struct ArtifactUpdate<'a> {
    pub description: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub ttl_duration_seconds: Option<i64>,
    pub aliases: Option<Vec<String>>,
    pub tags_to_add: Vec<String>,
    pub tags_to_delete: Vec<String>,
}

pub fn update_artifact(
    conn: &Connection,
    artifact_id: i64,
    update: ArtifactUpdate<'_>,
) -> StoreResult<ArtifactRow> {
    let artifact = require_artifact(conn, artifact_id)?;
    if let Some(metadata) = update.metadata {
        if !matches!(
            serde_json::from_str::<Value>(metadata),
            Ok(Value::Object(_) | Value::Null)
        ) {
            return Err(invalid("metadata must be a JSON object"));
        }
    }
    let mut tags = artifact.tags.clone();
    tags.retain(|t| !update.tags_to_delete.contains(t));
    for tag in update.tags_to_add {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    conn.execute(
        "UPDATE artifacts SET description = COALESCE(?2, description), metadata = COALESCE(?3, metadata),
             ttl_duration_seconds = COALESCE(?4, ttl_duration_seconds), tags = ?5, updated_at = ?6
         WHERE id = ?1",
        rusqlite::params![
            artifact_id,
            update.description,
            update.metadata,
            update.ttl_duration_seconds,
            serde_json::to_string(&tags).map_err(anyhow::Error::from)?,
            now(),
        ],
    )?;
    if let Some(aliases) = update.aliases {
        let current = aliases_of(conn, artifact_id)?;
        let keep_version = |a: &String| {
            a.strip_prefix('v')
                .is_some_and(|n| n.parse::<u64>().is_ok())
        };
        let removed: Vec<String> = current
            .into_iter()
            .filter(|a| !aliases.contains(a) && !keep_version(a))
            .collect();
        delete_aliases(conn, artifact_id, &removed)?;
        add_aliases(conn, artifact_id, &aliases)?;
    }
    require_artifact(conn, artifact_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_digests_convert_to_hex() {
        assert_eq!(
            base64_md5_to_hex("DzQ7CTESaiDxM9Z8KwGKOw==").as_deref(),
            Some("0f343b0931126a20f133d67c2b018a3b")
        );
        assert_eq!(base64_md5_to_hex("not base64"), None);
        assert_eq!(base64_md5_to_hex("AAAA"), None);
    }

    #[test]
    fn version_aliases_are_reserved() {
        assert!(validate_alias("best").is_ok());
        assert!(validate_alias("v3").is_err());
        assert!(validate_alias("a:b").is_err());
        assert!(validate_alias("v3-rc").is_ok());
    }
}
