//! The launch settings of a branch whose entrypoint is (by default) the trainer: `--set` keys
//! checked against the trainer's config before anything is pushed.

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::launch::LaunchSettings;
use crate::train::config::{self, TrainConfig};

/// The trainer's own config file, read by the default entrypoint when the repository has one.
pub const PROJECT_CONFIG: &str = "mlwf.toml";

/// What every launch of a command shares: the queue, the entrypoint, the priority.
#[derive(Debug, Clone)]
pub struct JobTemplate {
    pub queue: String,
    /// `None`: `mlwf train` (with the repository's `mlwf.toml`).
    pub entrypoint: Option<Vec<String>>,
    pub priority: Option<u8>,
}

/// The launch of `branch` (`None`: the one checked out in `dir`) with the config values `sets`.
pub fn settings(
    dir: &Path,
    branch: Option<&str>,
    template: &JobTemplate,
    sets: &[String],
    name: Option<String>,
) -> anyhow::Result<LaunchSettings> {
    let root = crate::git::root(dir).unwrap_or_else(|| dir.to_owned());
    let entrypoint = template
        .entrypoint
        .clone()
        .unwrap_or_else(|| default_entrypoint(&root));
    Ok(LaunchSettings {
        dir: dir.to_owned(),
        branch: branch.map(str::to_owned),
        queue: template.queue.clone(),
        run_config: run_config(sets, &entrypoint, &root)?,
        entrypoint,
        priority: template.priority,
        name,
    })
}

/// `mlwf train`, reading the repository's `mlwf.toml` when it has one.
fn default_entrypoint(root: &Path) -> Vec<String> {
    let mut words = vec!["mlwf".to_owned(), "train".to_owned()];
    if root.join(PROJECT_CONFIG).is_file() {
        words.extend(["--config".to_owned(), PROJECT_CONFIG.to_owned()]);
    }
    words
}

/// The `--set` values as the run's config. For the trainer, keys are checked (a typo is an
/// error now, not a failed run later) and values typed as the trainer reads them; any other
/// entrypoint gets them as given, JSON where they parse.
fn run_config(
    sets: &[String],
    entrypoint: &[String],
    root: &Path,
) -> anyhow::Result<Map<String, Value>> {
    let trainer = entrypoint.len() >= 2 && entrypoint[0] == "mlwf" && entrypoint[1] == "train";
    let resolved = if trainer {
        let file = root.join(PROJECT_CONFIG);
        let file = file.is_file().then_some(file);
        let checked = TrainConfig::load(None, file.as_deref(), sets, |_| None)?;
        Some(checked.to_wandb_config())
    } else {
        None
    };
    let mut values = Map::new();
    for assignment in sets {
        let (key, raw) = assignment
            .split_once('=')
            .with_context(|| format!("--set {assignment:?} is not of the form key=value"))?;
        let (key, raw) = (key.trim(), raw.trim());
        let (key, value) = match &resolved {
            Some(flat) => {
                let key = config::resolve_key(key)?;
                let value = flat.get(&key).cloned().unwrap_or(Value::Null);
                (key, value)
            }
            None => (
                key.to_owned(),
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
            ),
        };
        values.insert(key, value);
    }
    Ok(values)
}
