//! Run files (`createRunFiles`, signed PUTs, `Run.files`) and content-addressed blobs.

use rusqlite::{Connection, OptionalExtension as _};

use super::{invalid, not_found, now, StoreResult};

#[derive(Clone, Debug)]
pub struct RunFileRow {
    pub id: i64,
    pub name: String,
    pub size: Option<i64>,
    pub md5: Option<String>,
    pub mimetype: Option<String>,
    pub updated_at: String,
}

const FILE_COLUMNS: &str = "id, name, size, md5, mimetype, updated_at";

fn file_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunFileRow> {
    Ok(RunFileRow {
        id: row.get(0)?,
        name: row.get(1)?,
        size: row.get(2)?,
        md5: row.get(3)?,
        mimetype: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

/// Run-relative paths as the SDK sends them: relative, `/`-separated, no `..`.
fn validate_file_name(name: &str) -> StoreResult<()> {
    let bad = name.is_empty()
        || name.len() > 1024
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(invalid(format!("invalid run file name {name:?}")))
    } else {
        Ok(())
    }
}

/// Registers the files a client is about to upload; returns their rows in request order.
pub fn prepare_uploads(
    conn: &Connection,
    run_id: i64,
    names: &[String],
) -> StoreResult<Vec<RunFileRow>> {
    let now = now();
    names
        .iter()
        .map(|name| {
            validate_file_name(name)?;
            conn.execute(
                "INSERT INTO run_files (run_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (run_id, name) DO NOTHING",
                (run_id, name, &now),
            )?;
            conn.query_row(
                &format!("SELECT {FILE_COLUMNS} FROM run_files WHERE run_id = ?1 AND name = ?2"),
                (run_id, name),
                file_from_row,
            )
            .map_err(Into::into)
        })
        .collect()
}

/// Records that a run file's bytes are in place.
pub fn mark_stored(
    conn: &Connection,
    file_id: i64,
    size: i64,
    md5_base64: &str,
) -> StoreResult<()> {
    let mimetype = conn
        .query_row(
            "SELECT name FROM run_files WHERE id = ?1",
            [file_id],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .ok_or_else(|| not_found("run file not found"))
        .map(|name| guess_mimetype(&name))?;
    conn.execute(
        "UPDATE run_files SET stored = 1, size = ?2, md5 = ?3, mimetype = ?4, updated_at = ?5 WHERE id = ?1",
        (file_id, size, md5_base64, mimetype, now()),
    )?;
    Ok(())
}

pub fn run_file(conn: &Connection, file_id: i64) -> StoreResult<Option<RunFileRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {FILE_COLUMNS} FROM run_files WHERE id = ?1 AND stored = 1"),
            [file_id],
            file_from_row,
        )
        .optional()?)
}

/// Which of a run's stored files to list.
pub struct FileQuery<'a> {
    /// Exact names; empty means all.
    pub names: &'a [String],
    /// SQL LIKE pattern, as the SDK documents it.
    pub pattern: Option<&'a str>,
    /// List files whose id is greater than this (the cursor).
    pub after_id: Option<i64>,
    pub limit: i64,
}

pub fn list_run_files(
    conn: &Connection,
    run_id: i64,
    q: &FileQuery<'_>,
) -> StoreResult<Vec<RunFileRow>> {
    let names = serde_json::to_string(q.names).map_err(anyhow::Error::from)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FILE_COLUMNS} FROM run_files
         WHERE run_id = ?1 AND stored = 1 AND id > ?2
           AND (json_array_length(?3) = 0 OR name IN (SELECT value FROM json_each(?3)))
           AND (?4 IS NULL OR name LIKE ?4)
         ORDER BY id LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        rusqlite::params![run_id, q.after_id.unwrap_or(0), names, q.pattern, q.limit],
        file_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count_run_files(conn: &Connection, run_id: i64) -> StoreResult<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM run_files WHERE run_id = ?1 AND stored = 1",
        [run_id],
        |row| row.get(0),
    )?)
}

pub fn blob_exists(conn: &Connection, md5_hex: &str) -> StoreResult<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM blobs WHERE md5 = ?1", [md5_hex], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn record_blob(conn: &Connection, md5_hex: &str, size: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO blobs (md5, size, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (md5) DO NOTHING",
        (md5_hex, size, now()),
    )?;
    Ok(())
}

/// Content types for the common files runs carry; everything else is opaque bytes.
pub fn guess_mimetype(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("yaml" | "yml") => "application/x-yaml",
        Some("txt" | "log" | "md" | "patch" | "diff" | "csv" | "jsonl" | "py") => "text/plain",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_must_stay_inside_the_run() {
        assert!(validate_file_name("model.pt").is_ok());
        assert!(validate_file_name("media/images/a.png").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a\\b"] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
    }
}
