//! Persistent state: one SQLite database (WAL) plus a folder of file bodies under the data
//! directory. Domain operations are plain functions over a `&Connection`, grouped per domain;
//! `Store` hands connections to them on blocking threads so the async runtime never waits on
//! SQLite.

pub mod alerts;
pub mod artifacts;
pub mod automations;
pub mod files;
pub mod launch;
pub mod lines;
pub mod runs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Each entry brings the database from its index's version to the next: `schema.sql` makes
/// version 1 from an empty database, and so on. Never edit one that has shipped; add another.
const MIGRATIONS: [&str; 2] = [include_str!("schema.sql"), include_str!("automations.sql")];
const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Errors of domain operations. `NotFound` and `Invalid` are the caller's fault and are shown
/// to clients as they are; the rest are server faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("file storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub fn not_found(what: impl Into<String>) -> StoreError {
    StoreError::NotFound(what.into())
}

pub fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid(what.into())
}

/// Handle to the database and the files folder; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    files: FileDirs,
    /// All writes go through this one connection, so writers never contend for SQLite's lock.
    writer: Mutex<Connection>,
    /// Idle read connections; WAL lets them read while the writer commits.
    readers: Mutex<Vec<Connection>>,
    /// Signalled after each committed write, so background work (the webhook sender) wakes
    /// without polling.
    committed: tokio::sync::Notify,
}

/// Where file bodies live under the data directory.
#[derive(Clone, Debug)]
pub struct FileDirs {
    root: PathBuf,
}

impl FileDirs {
    pub fn run_file(&self, file_id: i64) -> PathBuf {
        self.root.join("run-files").join(file_id.to_string())
    }

    /// Blobs are fanned out by the first two hex digits to keep directories small.
    pub fn blob(&self, md5_hex: &str) -> PathBuf {
        let fan = md5_hex.get(..2).unwrap_or("00");
        self.root.join("blobs").join(fan).join(md5_hex)
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir` and applies the schema.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let files = FileDirs {
            root: data_dir.join("files"),
        };
        for dir in [
            files.root.join("run-files"),
            files.root.join("blobs"),
            files.tmp(),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let db_path = data_dir.join("mlwf.sqlite3");
        let writer = open_connection(&db_path, false)?;
        migrate(&writer).with_context(|| format!("cannot initialise {}", db_path.display()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db_path,
                files,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                committed: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn files(&self) -> &FileDirs {
        &self.inner.files
    }

    /// Runs `f` on a blocking thread with a read-only connection inside one read transaction,
    /// so everything `f` reads is one consistent snapshot.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let conn = match lock(&inner.readers).pop() {
                Some(conn) => conn,
                None => open_connection(&inner.db_path, true)?,
            };
            let result = in_transaction(&conn, "BEGIN DEFERRED", f);
            lock(&inner.readers).push(conn);
            result
        })
        .await
    }

    /// Runs `f` on a blocking thread with the writer connection inside one transaction that is
    /// committed when `f` succeeds and rolled back when it fails.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let result = run_blocking(move || {
            let conn = lock(&inner.writer);
            in_transaction(&conn, "BEGIN IMMEDIATE", f)
        })
        .await;
        if result.is_ok() {
            self.inner.committed.notify_one();
        }
        result
    }

    /// Completes after the next committed write (or at once if one happened since the last
    /// call returned).
    pub async fn committed(&self) {
        self.inner.committed.notified().await
    }
}

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| StoreError::Other(anyhow::anyhow!("database task failed: {err}")))?
}

/// A poisoned lock only means another request panicked mid-way; SQLite's own transaction
/// rollback keeps the data consistent, so the connection stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn in_transaction<T>(
    conn: &Connection,
    begin: &str,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch(begin)?;
    match f(conn) {
        Ok(value) => {
            conn.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                tracing::error!("rollback failed: {rollback}");
            }
            Err(err)
        }
    }
}

/// Runs `f` inside a savepoint: its writes are undone if it fails, while the surrounding
/// transaction goes on. Used per GraphQL mutation field, so one failed mutation does not leave
/// half its writes behind.
pub fn atomically<T, E: From<StoreError>>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("SAVEPOINT mutation")
        .map_err(|e| E::from(e.into()))?;
    let result = f();
    let end = if result.is_ok() {
        "RELEASE mutation"
    } else {
        "ROLLBACK TO mutation; RELEASE mutation"
    };
    conn.execute_batch(end).map_err(|e| E::from(e.into()))?;
    result
}

fn open_connection(path: &Path, read_only: bool) -> anyhow::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    if !read_only {
        // WAL lets readers run while a write commits; NORMAL sync is durable across process
        // crashes, which is what a local tracking server needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    anyhow::ensure!(
        version <= SCHEMA_VERSION,
        "database schema version {version} is newer than this mlwf ({SCHEMA_VERSION})"
    );
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = from + 1;
        conn.execute_batch(&format!(
            "BEGIN; {migration}; PRAGMA user_version = {to}; COMMIT;"
        ))
        .with_context(|| format!("cannot migrate the database to schema version {to}"))?;
    }
    Ok(())
}

/// The current time in the stored format.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// W&B renders times as UTC without zone or fraction, e.g. `2026-01-02T03:04:05`.
pub fn wandb_time(stored: &str) -> String {
    stored.get(..19).unwrap_or(stored).to_owned()
}

/// Looks up or creates an entity; returns its id.
pub fn ensure_entity(conn: &Connection, entity: &str) -> StoreResult<i64> {
    validate_name("entity name", entity)?;
    conn.execute(
        "INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        (entity, now()),
    )?;
    Ok(
        conn.query_row("SELECT id FROM entities WHERE name = ?1", [entity], |row| {
            row.get(0)
        })?,
    )
}

/// Looks up or creates the entity and project; returns the project id.
pub fn ensure_project(conn: &Connection, entity: &str, project: &str) -> StoreResult<i64> {
    let entity_id = ensure_entity(conn, entity)?;
    validate_name("project name", project)?;
    conn.execute(
        "INSERT INTO projects (entity_id, name, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (entity_id, name) DO NOTHING",
        (entity_id, project, now()),
    )?;
    Ok(conn.query_row(
        "SELECT id FROM projects WHERE entity_id = ?1 AND name = ?2",
        (entity_id, project),
        |row| row.get(0),
    )?)
}

/// Entity, project, run, artifact and type names end up in URL paths and in `name:alias`
/// references, so they follow W&B's rule: none of `/ \ # ? % :`, no control characters.
pub fn validate_name(kind: &str, name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | '#' | '?' | '%' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid {kind} {name:?}: use 1-128 characters, none of / \\ # ? % :"
        )))
    }
}

#[derive(Clone, Debug)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub entity_id: i64,
    pub entity_name: String,
    pub description: Option<String>,
    pub created_at: String,
}

const PROJECT_COLUMNS: &str =
    "p.id, p.name, e.id, e.name, p.description, p.created_at FROM projects p JOIN entities e ON e.id = p.entity_id";

fn project_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        id: row.get(0)?,
        name: row.get(1)?,
        entity_id: row.get(2)?,
        entity_name: row.get(3)?,
        description: row.get(4)?,
        created_at: row.get(5)?,
    })
}

pub fn set_project_description(conn: &Connection, id: i64, description: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE projects SET description = ?2 WHERE id = ?1",
        (id, description),
    )?;
    Ok(())
}

pub fn find_project(
    conn: &Connection,
    entity: &str,
    project: &str,
) -> StoreResult<Option<ProjectRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {PROJECT_COLUMNS} WHERE e.name = ?1 AND p.name = ?2"),
            (entity, project),
            project_from_row,
        )
        .optional()?)
}

pub fn project_by_id(conn: &Connection, id: i64) -> StoreResult<ProjectRow> {
    conn.query_row(
        &format!("SELECT {PROJECT_COLUMNS} WHERE p.id = ?1"),
        [id],
        project_from_row,
    )
    .optional()?
    .ok_or_else(|| not_found(format!("project {id} not found")))
}

/// Finds an entity by name.
pub fn find_entity(conn: &Connection, name: &str) -> StoreResult<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT id, name FROM entities WHERE name = ?1",
            [name],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

/// Parses a JSON column written by this server; a corrupt value reads as `default`.
pub fn json_column(text: &str, default: serde_json::Value) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_order_as_text_and_render_like_wandb() {
        let a = format_time(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        let b = format_time(OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap());
        assert!(a < b);
        assert_eq!(a, "2023-11-14T22:13:20.000000Z");
        assert_eq!(wandb_time(&a), "2023-11-14T22:13:20");
        assert_eq!(parse_time(&a).unwrap().unix_timestamp(), 1_700_000_000);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("entity name", "local").is_ok());
        assert!(validate_name("project", "my-proj_1.x").is_ok());
        assert!(validate_name("project", "").is_err());
        assert!(validate_name("project", "a/b").is_err());
        assert!(validate_name("project", "with space").is_ok());
        assert!(validate_name("artifact", "m:v1").is_err());
    }
}
