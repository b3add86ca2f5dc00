//! Chooses where runs live: a configured W&B server or the embedded local store.

use std::path::PathBuf;

use crate::cli::BackendArgs;

#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub entity: Option<String>,
    pub project: String,
    pub store: Option<PathBuf>,
}

impl From<BackendArgs> for BackendOptions {
    fn from(args: BackendArgs) -> Self {
        Self {
            entity: args.entity,
            project: args.project,
            store: args.store,
        }
    }
}
