//! Run files: upload through `CreateRunFiles` and signed PUT URLs, download through `RunFiles`
//! and the file's `directUrl`.

use std::path::{Component, Path, PathBuf};

use base64::Engine;
use md5::{Digest, Md5};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use super::client::Client;
use super::connection::Connection;
use super::error::{Error, Result};
use super::filestream::Command;
use super::graphql::{CREATE_RUN_FILES, RUN_FILES};
use super::run::Run;
use super::transport::{parse_upload_headers, UploadBody};

/// Where the bytes of a run file come from.
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl Run {
    /// Uploads the local file `path` as run file `name` (a relative path such as `model.pt`
    /// or `ckpt/e1.pt`) and reports it in the next file_stream request.
    pub async fn save_file(&self, path: impl AsRef<Path>, name: &str) -> Result<()> {
        self.save_files(&[(path.as_ref().to_path_buf(), name.to_owned())])
            .await
    }

    /// Uploads several local files as run files in one `CreateRunFiles` call.
    pub async fn save_files(&self, files: &[(PathBuf, String)]) -> Result<()> {
        let files = files
            .iter()
            .map(|(path, name)| (name.clone(), Source::Path(path.clone())))
            .collect();
        self.upload(files).await
    }

    /// Uploads bytes as run file `name`.
    pub async fn save_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.upload(vec![(name.to_owned(), Source::Bytes(bytes))])
            .await
    }

    async fn upload(&self, files: Vec<(String, Source)>) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            create_run_files: Option<Payload>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload {
            #[serde(rename = "runID")]
            run_id: Option<String>,
            #[serde(default)]
            upload_headers: Option<Vec<String>>,
            #[serde(default)]
            files: Vec<Target>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Target {
            name: String,
            upload_url: Option<String>,
        }

        for (name, _) in &files {
            check_relative_name(name)?;
        }
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        let variables = json!({"entity": self.entity(), "project": self.project(), "run": self.id(), "files": names});
        let transport = self.client().transport();
        let data: Data = transport.graphql(&CREATE_RUN_FILES, variables).await?;
        let refused = |reason: String| transport.unexpected(&CREATE_RUN_FILES, reason);
        let payload = data
            .create_run_files
            .ok_or_else(|| refused("no answer".into()))?;
        if payload.run_id.is_none() {
            return Err(refused(format!(
                "the server does not accept files for run {}",
                self.id()
            )));
        }
        let headers = parse_upload_headers(&payload.upload_headers.unwrap_or_default());
        for (name, source) in &files {
            let url = payload
                .files
                .iter()
                .find(|t| &t.name == name)
                .and_then(|t| t.upload_url.as_deref())
                .ok_or_else(|| refused(format!("no upload URL for {name}")))?;
            let url = parse_url(CREATE_RUN_FILES.name, url)?;
            let op = format!("upload run file {name}");
            match source {
                Source::Bytes(bytes) => {
                    transport
                        .put(&op, &url, &headers, UploadBody::Bytes(bytes))
                        .await?
                }
                Source::Path(path) => {
                    let len = tokio::fs::metadata(path)
                        .await
                        .map_err(|e| Error::io("cannot read file to upload", path, e))?
                        .len();
                    transport
                        .put(&op, &url, &headers, UploadBody::File { path, len })
                        .await?
                }
            }
        }
        self.send(Command::Uploaded(
            files.into_iter().map(|(name, _)| name).collect(),
        ));
        Ok(())
    }
}

/// A run file's download URL and recorded MD5.
struct StoredFile {
    url: Url,
    md5: Option<String>,
}

impl Client {
    /// The contents of run file `name`, or `None` when the run has no such file.
    pub async fn run_file(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>> {
        let Some(file) = self.stored_file(entity, project, run_id, name).await? else {
            return Ok(None);
        };
        let op = format!("download run file {name}");
        let bytes = self.transport().get_bytes(&op, &file.url).await?;
        verify_md5(name, file.md5.as_deref(), &base64_md5(&bytes))?;
        Ok(Some(bytes))
    }

    /// Streams run file `name` into `dest`; returns `false` when the run has no such file.
    pub async fn download_run_file(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
        name: &str,
        dest: &Path,
    ) -> Result<bool> {
        let Some(file) = self.stored_file(entity, project, run_id, name).await? else {
            return Ok(false);
        };
        let op = format!("download run file {name}");
        let md5 = self.transport().download(&op, &file.url, dest).await?;
        verify_md5(name, file.md5.as_deref(), &md5)?;
        Ok(true)
    }

    async fn stored_file(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
        name: &str,
    ) -> Result<Option<StoredFile>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<Project>,
        }
        #[derive(Deserialize)]
        struct Project {
            run: Option<RunFiles>,
        }
        #[derive(Deserialize)]
        struct RunFiles {
            files: Option<Connection<Node>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Node {
            name: String,
            direct_url: Option<String>,
            md5: Option<String>,
        }

        let variables = json!({
            "project": project, "entity": entity, "name": run_id, "fileNames": [name], "fileLimit": 1,
        });
        let data: Data = self.transport().graphql(&RUN_FILES, variables).await?;
        let node = data
            .project
            .and_then(|p| p.run)
            .and_then(|r| r.files)
            .into_iter()
            .flat_map(Connection::nodes)
            // Filter again: a server that ignores `names` must not hand back another file.
            .find(|n| n.name == name);
        match node.and_then(|n| n.direct_url.map(|url| (url, n.md5))) {
            None => Ok(None),
            Some((url, md5)) => Ok(Some(StoredFile {
                url: parse_url(RUN_FILES.name, &url)?,
                md5,
            })),
        }
    }
}

pub(crate) fn parse_url(op: &str, raw: &str) -> Result<Url> {
    Url::parse(raw).map_err(|e| Error::Protocol {
        op: op.into(),
        url: raw.split('?').next().unwrap_or_default().to_owned(),
        reason: format!("the server returned an invalid URL: {e}"),
    })
}

pub(crate) fn base64_md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

/// Compares a download's MD5 with the one the server recorded, when it recorded a usable one.
fn verify_md5(name: &str, expected: Option<&str>, actual: &str) -> Result<()> {
    match expected.map(str::trim).filter(|e| !e.is_empty()) {
        Some(expected) if expected != actual => Err(Error::DigestMismatch {
            name: name.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// File names inside a run or artifact must stay inside it: relative, no `..`, not empty.
pub(crate) fn check_relative_name(name: &str) -> Result<()> {
    let path = Path::new(name);
    let inside = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "file name {name:?} must be a relative path without '..'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_inside() {
        for ok in ["model.pt", "ckpt/e1.pt", "a/b/c"] {
            assert!(check_relative_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./x"] {
            assert!(check_relative_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn md5_is_base64_and_checked_only_when_recorded() {
        assert_eq!(base64_md5(b"hello world"), "XrY7u+Ae7tCTyyK7j1rNww==");
        assert!(verify_md5("f", None, "x").is_ok());
        assert!(verify_md5("f", Some(""), "x").is_ok());
        assert!(verify_md5(
            "f",
            Some("XrY7u+Ae7tCTyyK7j1rNww=="),
            "XrY7u+Ae7tCTyyK7j1rNww=="
        )
        .is_ok());
        assert!(matches!(
            verify_md5("f", Some("abc"), "x"),
            Err(Error::DigestMismatch { .. })
        ));
    }
}
