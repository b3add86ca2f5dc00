//! Client settings: where the server is, the API key, run defaults from the `WANDB_*`
//! environment, and timing knobs.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use reqwest::Url;

use super::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::secrets::Secret;

/// The public W&B cloud API.
pub const DEFAULT_BASE_URL: &str = "https://api.wandb.ai";

/// A W&B API key: a [`Secret`], which never prints itself.
pub type ApiKey = Secret;

/// What to do when the requested run id may already exist (`WANDB_RESUME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Continue the run if it exists, else create it.
    Allow,
    /// Continue the run; fail if it does not exist.
    Must,
    /// Create the run; fail if it already exists.
    Never,
    /// Like `Allow` (the official SDK also consults a local file of the last run, which a
    /// library has no equivalent of).
    Auto,
}

impl FromStr for Resume {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Resume::Allow),
            "must" => Ok(Resume::Must),
            "never" => Ok(Resume::Never),
            // The SDK accepts `resume=True` as "auto".
            "auto" | "true" => Ok(Resume::Auto),
            other => Err(Error::Settings(format!(
                "WANDB_RESUME must be allow, must, never or auto, not {other:?}"
            ))),
        }
    }
}

/// Timing knobs. The defaults are the official client's; tests shrink them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub graphql_retry: RetryPolicy,
    pub file_stream_retry: RetryPolicy,
    pub transfer_retry: RetryPolicy,
    /// At most one file_stream request per interval (the first goes out at once).
    pub transmit_interval: Duration,
    /// An empty file_stream request after this long without one keeps the run alive.
    pub heartbeat_interval: Duration,
    /// Backlogs above this are split over several file_stream requests.
    pub max_request_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            graphql_retry: RetryPolicy::graphql_default(),
            file_stream_retry: RetryPolicy::file_stream_default(),
            transfer_retry: RetryPolicy::transfer_default(),
            transmit_interval: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(30),
            max_request_bytes: 10 << 20,
        }
    }
}

/// Everything the client needs to know. Run fields are defaults that a
/// [`RunSpec`](super::RunSpec) overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: Url,
    pub api_key: Option<ApiKey>,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub resume: Option<Resume>,
    pub run_name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub commit: Option<String>,
    pub repo: Option<String>,
    pub host: Option<String>,
    pub program: Option<String>,
    /// Downloaded artifact files, keyed by their MD5.
    pub cache_dir: PathBuf,
    pub tuning: Tuning,
}

impl Settings {
    /// Settings for an explicit server and key, with no run defaults (e.g. an in-process server).
    pub fn new(base_url: &str, api_key: Option<ApiKey>) -> Result<Self> {
        Ok(Self {
            base_url: parse_base_url(base_url)?,
            api_key,
            entity: None,
            project: None,
            run_id: None,
            resume: None,
            run_name: None,
            notes: None,
            tags: Vec::new(),
            group: None,
            job_type: None,
            commit: None,
            repo: None,
            host: None,
            program: None,
            cache_dir: default_cache_dir(|name| std::env::var(name).ok()),
            tuning: Tuning::default(),
        })
    }

    /// Settings from the process environment (`WANDB_BASE_URL`, `WANDB_API_KEY`, ...).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any variable source; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let base_url = var("WANDB_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let mut settings = Self::new(&base_url, var("WANDB_API_KEY").map(ApiKey::new))?;
        settings.entity = var("WANDB_ENTITY");
        settings.project = var("WANDB_PROJECT");
        settings.run_id = var("WANDB_RUN_ID");
        settings.resume = var("WANDB_RESUME").map(|v| v.parse()).transpose()?;
        settings.run_name = var("WANDB_NAME");
        settings.notes = var("WANDB_NOTES");
        settings.tags = var("WANDB_TAGS")
            .map(|tags| {
                tags.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        settings.group = var("WANDB_RUN_GROUP");
        settings.job_type = var("WANDB_JOB_TYPE");
        settings.commit = var("WANDB_GIT_COMMIT");
        settings.repo = var("WANDB_GIT_REMOTE_URL");
        settings.host = var("WANDB_HOST");
        settings.program = var("WANDB_PROGRAM");
        settings.cache_dir = default_cache_dir(var);
        Ok(settings)
    }
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim())
        .map_err(|e| Error::Settings(format!("WANDB_BASE_URL {raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(Error::Settings(format!(
            "WANDB_BASE_URL {raw:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// `$WANDB_CACHE_DIR`, else `$XDG_CACHE_HOME/mlwf`, else `~/.cache/mlwf`, else a temp dir.
fn default_cache_dir(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = var("WANDB_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("mlwf");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("mlwf"),
        None => std::env::temp_dir().join("mlwf-cache"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_the_public_cloud() {
        let s = from(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(s.base_url.as_str(), "https://api.wandb.ai/");
        assert!(s.api_key.is_none());
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/mlwf"));
        assert_eq!(s.tuning, Tuning::default());
    }

    #[test]
    fn reads_the_wandb_environment() {
        let s = from(&[
            ("WANDB_BASE_URL", "http://localhost:8080"),
            (
                "WANDB_API_KEY",
                "local-0123456789012345678901234567890123456789",
            ),
            ("WANDB_ENTITY", "team"),
            ("WANDB_PROJECT", "proj"),
            ("WANDB_RUN_ID", "abc12345"),
            ("WANDB_RESUME", "must"),
            ("WANDB_NAME", "fancy"),
            ("WANDB_NOTES", "n"),
            ("WANDB_TAGS", "a, b,,c "),
            ("WANDB_RUN_GROUP", "g"),
            ("WANDB_JOB_TYPE", "train"),
            ("WANDB_CACHE_DIR", "/tmp/c"),
        ])
        .unwrap();
        assert_eq!(s.base_url.as_str(), "http://localhost:8080/");
        assert_eq!(
            s.api_key.unwrap().expose_secret(),
            "local-0123456789012345678901234567890123456789"
        );
        assert_eq!(s.entity.as_deref(), Some("team"));
        assert_eq!(s.project.as_deref(), Some("proj"));
        assert_eq!(s.run_id.as_deref(), Some("abc12345"));
        assert_eq!(s.resume, Some(Resume::Must));
        assert_eq!(s.run_name.as_deref(), Some("fancy"));
        assert_eq!(s.notes.as_deref(), Some("n"));
        assert_eq!(s.tags, ["a", "b", "c"]);
        assert_eq!(s.group.as_deref(), Some("g"));
        assert_eq!(s.job_type.as_deref(), Some("train"));
        assert_eq!(s.cache_dir, PathBuf::from("/tmp/c"));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(
            from(&[("WANDB_RESUME", "maybe")]),
            Err(Error::Settings(_))
        ));
        assert!(matches!(
            from(&[("WANDB_BASE_URL", "ftp://x")]),
            Err(Error::Settings(_))
        ));
        assert!(matches!(
            from(&[("WANDB_BASE_URL", "not a url")]),
            Err(Error::Settings(_))
        ));
    }

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("supersecretkey");
        let s = Settings::new("http://h", Some(key.clone())).unwrap();
        assert!(!format!("{key:?} {key} {s:?}").contains("supersecret"));
    }
}
