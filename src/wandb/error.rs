//! The W&B client's error type. Every variant names the operation and, where there is one, the
//! URL (without its query string: signed URLs carry credentials there). API keys never appear.

use std::path::PathBuf;

/// Result of W&B client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{op}: the W&B server at {url} rejected the API key (HTTP 401). Check WANDB_API_KEY \
         (a key from the server's user settings page) and that WANDB_BASE_URL points at the \
         server that issued it"
    )]
    Unauthorized { op: String, url: String },

    #[error("{op}: HTTP {status} from {url} after {attempts} attempt(s): {body}")]
    Http {
        op: String,
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },

    #[error("{op}: cannot reach {url} after {attempts} attempt(s)")]
    Network {
        op: String,
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    #[error("{op}: the server at {url} answered with GraphQL errors: {messages}")]
    GraphQl {
        op: String,
        url: String,
        messages: String,
    },

    #[error("{op}: unexpected response from {url}: {reason}")]
    Protocol {
        op: String,
        url: String,
        reason: String,
    },

    #[error("{context} ({})", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("artifact file {name}: MD5 mismatch (manifest says {expected}, downloaded data has {actual})")]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },

    #[error("{0} not found")]
    NotFound(String),

    #[error("invalid W&B settings: {0}")]
    Settings(String),

    #[error("invalid argument: {0}")]
    InvalidInput(String),

    #[error("the run's file stream stopped sending: {0}")]
    FileStream(String),
}

impl Error {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
