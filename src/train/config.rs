//! The trainer's hyperparameters: one [`TrainConfig`], built in layers.
//!
//! Order, later wins: a preset (`tiny`, `shakespeare-char`, `gpt2-124m`), a TOML or YAML file,
//! `--set key=value` overrides, then W&B Launch overrides from `WANDB_CONFIG` (or its chunks
//! `WANDB_CONFIG_0..n`). Keys are dotted (`model.n_layer`); a bare field name (`n_layer`) works
//! too, since every field name is unique across sections. The same dotted keys name the run's
//! W&B config, so a run's config can be edited in Launch and sent back as overrides.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::experiment::keys;
use crate::train::backend::Precision;
use crate::train::device::Device;
use crate::train::model::ModelConfig;
use crate::train::optim::AdamW;
use crate::wandb::{ArtifactRef, Row};

/// The presets, by name.
pub const PRESETS: [&str; 3] = ["tiny", "shakespeare-char", "gpt2-124m"];
pub const DEFAULT_PRESET: &str = "tiny";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    pub optim: OptimSection,
    pub train: TrainSection,
    pub data: DataSection,
    pub run: RunSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Context length in tokens.
    pub block_size: usize,
    pub dropout: f64,
    /// Share the token embedding with the output head.
    pub tied_head: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    pub learning_rate: f64,
    /// Where the cosine decay ends.
    pub min_lr: f64,
    pub warmup_iters: u64,
    pub max_iters: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Global gradient-norm clip; 0 turns clipping off.
    pub grad_clip: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub batch_size: usize,
    pub eval_interval: u64,
    /// Batches averaged per validation loss.
    pub eval_iters: usize,
    pub log_interval: u64,
    pub grad_norm_interval: u64,
    pub checkpoint_interval: u64,
    /// Predictions per evaluation, logged as a table; 0 logs none.
    pub sample_count: usize,
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: Device,
    /// The GPU matmuls' arithmetic: `fp32`, `tf32` or `bf16` (the CPU computes in f32).
    pub precision: Precision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `synthetic-addition[:digits]`, `shakespeare`, `file:<path>` or
    /// `artifact:[[entity/]project/]name[:alias]`.
    pub dataset: DatasetSpec,
    /// Share of the text held out for validation, taken from its end.
    pub val_fraction: f64,
    /// Where downloaded datasets are kept; default `$MLWF_DATA_CACHE`, else
    /// `$XDG_CACHE_HOME/mlwf/data`, else `~/.cache/mlwf/data`.
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// W&B project, used when neither `--project` nor `WANDB_PROJECT` names one.
    pub project: Option<String>,
    pub tags: Vec<String>,
    pub notes: Option<String>,
    /// A checkpoint directory, or `artifact:[[entity/]project/]name[:alias]` of a model artifact.
    pub resume_from: Option<ResumeFrom>,
    /// Local checkpoint root; default `.mlwf/checkpoints`.
    pub checkpoint_dir: Option<PathBuf>,
}

/// Where the training text comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetSpec {
    /// Generated `a+b=` problems with operands of `digits` digits (see `data::addition`).
    Addition {
        digits: u32,
    },
    Shakespeare,
    File(PathBuf),
    Artifact(ArtifactRef),
}

/// Synthetic addition operands default to two digits: a tiny model learns them in minutes.
pub const DEFAULT_ADDITION_DIGITS: u32 = 2;
/// Nine-digit operands keep every sum within a `u64` with room to spare.
pub const MAX_ADDITION_DIGITS: u32 = 9;

impl FromStr for DatasetSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let usage = "expected synthetic-addition[:digits], shakespeare, file:<path> or \
                     artifact:[[entity/]project/]name[:alias]";
        if text == "shakespeare" {
            return Ok(Self::Shakespeare);
        }
        if let Some(rest) = text.strip_prefix("synthetic-addition") {
            let digits = match rest.strip_prefix(':') {
                None if rest.is_empty() => DEFAULT_ADDITION_DIGITS,
                Some(n) => n
                    .parse()
                    .ok()
                    .filter(|d| (1..=MAX_ADDITION_DIGITS).contains(d))
                    .ok_or_else(|| {
                        anyhow!(
                            "dataset {text:?}: digits must be 1 to {MAX_ADDITION_DIGITS}, got {n:?}"
                        )
                    })?,
                None => bail!("unknown dataset {text:?}: {usage}"),
            };
            return Ok(Self::Addition { digits });
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                bail!("dataset {text:?} names no file: {usage}");
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(reference) = text.strip_prefix("artifact:") {
            let reference = reference
                .parse()
                .with_context(|| format!("dataset {text:?}"))?;
            return Ok(Self::Artifact(reference));
        }
        bail!("unknown dataset {text:?}: {usage}")
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addition {
                digits: DEFAULT_ADDITION_DIGITS,
            } => f.write_str("synthetic-addition"),
            Self::Addition { digits } => write!(f, "synthetic-addition:{digits}"),
            Self::Shakespeare => f.write_str("shakespeare"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Artifact(reference) => write!(f, "artifact:{reference}"),
        }
    }
}

serde_as_text!(DatasetSpec);

/// Where `run.resume_from` points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ResumeFrom {
    /// A checkpoint directory.
    Dir(PathBuf),
    /// `artifact:[[entity/]project/]name[:alias]` of a model artifact.
    Artifact(ArtifactRef),
}

impl FromStr for ResumeFrom {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.strip_prefix("artifact:") {
            Some(reference) => Ok(Self::Artifact(
                reference
                    .parse()
                    .with_context(|| format!("checkpoint {text:?}"))?,
            )),
            None if text.is_empty() => bail!("the checkpoint to resume from is empty"),
            None => Ok(Self::Dir(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for ResumeFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Artifact(reference) => write!(f, "artifact:{reference}"),
        }
    }
}

serde_as_text!(ResumeFrom);

impl ModelSection {
    /// The model these settings build over a vocabulary of `vocab_size` tokens.
    pub fn model_config(&self, vocab_size: usize) -> ModelConfig {
        ModelConfig {
            vocab_size,
            block_size: self.block_size,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            dropout: self.dropout as f32,
            tied_head: self.tied_head,
        }
    }
}

impl OptimSection {
    /// The optimizer these settings describe (its learning rate comes from the schedule).
    pub fn adamw(&self) -> AdamW {
        AdamW {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            weight_decay: self.weight_decay as f32,
            ..AdamW::default()
        }
    }
}

impl TrainConfig {
    /// The named preset.
    pub fn preset(name: &str) -> anyhow::Result<Self> {
        match name {
            "tiny" => Ok(tiny()),
            "shakespeare-char" => Ok(shakespeare_char()),
            "gpt2-124m" => Ok(gpt2_124m()),
            _ => bail!(
                "unknown preset {name:?}: choose one of {}",
                PRESETS.join(", ")
            ),
        }
    }

    /// Builds the config from its layers (see the module docs) and validates it. `env` looks up
    /// environment variables (`std::env::var(..).ok()` in the trainer).
    pub fn load(
        preset: Option<&str>,
        file: Option<&Path>,
        sets: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let file_values = match file {
            Some(path) => Some(read_config_file(path)?),
            None => None,
        };
        let file_preset = match file_values.as_ref().and_then(|v| v.get("preset")) {
            None => None,
            Some(Value::String(name)) => Some(name.as_str()),
            Some(other) => bail!("\"preset\" in the config file must be a name, got {other}"),
        };
        let mut config = Self::preset(preset.or(file_preset).unwrap_or(DEFAULT_PRESET))?;
        // Every bad value is reported, not only the first.
        let mut problems = Vec::new();
        let mut keep = |result: anyhow::Result<()>| {
            if let Err(err) = result {
                problems.push(format!("{err:#}"));
            }
        };
        if let (Some(mut values), Some(path)) = (file_values, file) {
            values.remove("preset");
            for (key, value) in flatten(values) {
                keep(
                    config
                        .set(&key, value)
                        .with_context(|| format!("in {}", path.display())),
                );
            }
        }
        for assignment in sets {
            keep(config.set_from_text(assignment));
        }
        if let Some(launch) = launch_overrides(&env)? {
            for (key, value) in flatten(launch) {
                // A config copied from an earlier run carries what that run recorded.
                if key.starts_with('_') || keys::config::is_recorded(&key) {
                    continue;
                }
                keep(
                    config
                        .set(&key, value)
                        .context("in the W&B Launch config (WANDB_CONFIG)"),
                );
            }
        }
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            bail!("invalid training config:\n  - {}", problems.join("\n  - "))
        }
    }

    /// Applies one `key=value` override. The value is read as JSON when it parses (numbers,
    /// booleans, `null`, lists), else as a string; a string field also takes text that happens
    /// to parse as JSON (`run.notes=42`).
    pub fn set_from_text(&mut self, assignment: &str) -> anyhow::Result<()> {
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| anyhow!("override {assignment:?} is not of the form key=value"))?;
        let (key, raw) = (key.trim(), raw.trim());
        let as_text = || Value::String(raw.to_owned());
        // `set` changes nothing when it fails, so the text reading can follow the JSON one.
        match serde_json::from_str::<Value>(raw) {
            Ok(value) => self
                .set(key, value)
                .or_else(|err| self.set(key, as_text()).map_err(|_| err)),
            Err(_) => self.set(key, as_text()),
        }
        .with_context(|| format!("override {assignment:?}"))
    }

    /// Sets one key (dotted or a bare field name) to a JSON value. A string given for a list
    /// field (`run.tags`) is split at commas.
    pub fn set(&mut self, key: &str, value: Value) -> anyhow::Result<()> {
        let full = resolve_key(key)?;
        let (section, field) = full.split_once('.').unwrap_or(("", full.as_str()));
        let mut tree = serde_json::to_value(&*self).context("encoding the config")?;
        let slot = tree
            .get_mut(section)
            .and_then(|s| s.get_mut(field))
            .ok_or_else(|| anyhow!("config key {full} has no slot"))?;
        *slot = match (&*slot, value) {
            (Value::Array(_), Value::String(list)) => Value::Array(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            (_, value) => value,
        };
        *self = serde_json::from_value(tree.clone()).map_err(|err| {
            let given = tree[section][field].to_string();
            anyhow!("{full} = {given}: {err}")
        })?;
        Ok(())
    }

    /// The values that do not fit together, all of them. The typed fields (device, precision,
    /// dataset, checkpoint) cannot hold a bad value: they are checked when set.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut need = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let m = &self.model;
        for (key, value) in [
            ("model.n_layer", m.n_layer),
            ("model.n_head", m.n_head),
            ("model.n_embd", m.n_embd),
            ("model.block_size", m.block_size),
            ("train.batch_size", self.train.batch_size),
            ("train.eval_iters", self.train.eval_iters),
        ] {
            need(value > 0, format!("{key} must be positive"));
        }
        need(
            m.n_head == 0 || m.n_embd.is_multiple_of(m.n_head),
            format!(
                "model.n_embd ({}) must be a multiple of model.n_head ({})",
                m.n_embd, m.n_head
            ),
        );
        need(
            (0.0..1.0).contains(&m.dropout),
            format!("model.dropout must be in [0, 1), got {}", m.dropout),
        );
        let o = &self.optim;
        need(
            o.learning_rate.is_finite() && o.learning_rate > 0.0,
            format!(
                "optim.learning_rate must be positive, got {}",
                o.learning_rate
            ),
        );
        need(
            o.min_lr.is_finite() && o.min_lr >= 0.0 && o.min_lr <= o.learning_rate,
            format!(
                "optim.min_lr must be in [0, learning_rate = {}], got {}",
                o.learning_rate, o.min_lr
            ),
        );
        need(o.max_iters > 0, "optim.max_iters must be positive".into());
        need(
            o.warmup_iters <= o.max_iters,
            format!(
                "optim.warmup_iters ({}) must not exceed optim.max_iters ({})",
                o.warmup_iters, o.max_iters
            ),
        );
        for (key, value) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            need(
                (0.0..1.0).contains(&value),
                format!("{key} must be in [0, 1), got {value}"),
            );
        }
        for (key, value) in [
            ("optim.weight_decay", o.weight_decay),
            ("optim.grad_clip", o.grad_clip),
        ] {
            need(
                value.is_finite() && value >= 0.0,
                format!("{key} must be zero or positive, got {value}"),
            );
        }
        let t = &self.train;
        for (key, value) in [
            ("train.eval_interval", t.eval_interval),
            ("train.log_interval", t.log_interval),
            ("train.grad_norm_interval", t.grad_norm_interval),
            ("train.checkpoint_interval", t.checkpoint_interval),
        ] {
            need(
                value > 0,
                format!("{key} must be positive (steps between events)"),
            );
        }
        let v = self.data.val_fraction;
        need(
            v > 0.0 && v < 1.0,
            format!("data.val_fraction must be between 0 and 1 (exclusive), got {v}"),
        );
        problems
    }

    /// Every hyperparameter as one flat map with dotted keys, as the W&B run config records it.
    pub fn to_wandb_config(&self) -> Row {
        let tree = serde_json::to_value(self).unwrap_or_default();
        flatten(tree.as_object().cloned().unwrap_or_default())
            .into_iter()
            .collect()
    }
}

/// Every settable key, dotted, sorted.
pub fn valid_keys() -> Vec<String> {
    tiny().to_wandb_config().keys().cloned().collect()
}

pub fn resolve_key(key: &str) -> anyhow::Result<String> {
    let keys = valid_keys();
    if keys.iter().any(|k| k == key) {
        return Ok(key.to_owned());
    }
    let by_field: Vec<&String> = keys
        .iter()
        .filter(|k| k.rsplit_once('.').is_some_and(|(_, field)| field == key))
        .collect();
    match by_field.as_slice() {
        [one] => Ok((*one).clone()),
        _ => bail!(
            "unknown config key {key:?}; valid keys: {}",
            keys.join(", ")
        ),
    }
}

/// Nested objects become dotted keys; other values (lists included) are leaves.
fn flatten(values: Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut pending: Vec<(String, Value)> = values.into_iter().rev().collect();
    while let Some((key, value)) = pending.pop() {
        match value {
            Value::Object(inner) => pending.extend(
                inner
                    .into_iter()
                    .rev()
                    .map(|(k, v)| (format!("{key}.{k}"), v)),
            ),
            leaf => out.push((key, leaf)),
        }
    }
    out
}

/// A TOML (`.toml`) or YAML (`.yaml`, `.yml`) file as a JSON object.
fn read_config_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let value: Value = match extension {
        "toml" => {
            toml::from_str(&text).with_context(|| format!("parsing {} as TOML", path.display()))?
        }
        "yaml" | "yml" => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("parsing {} as YAML", path.display()))?,
        _ => bail!(
            "config file {} must end in .toml, .yaml or .yml",
            path.display()
        ),
    };
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => bail!("config file {} must hold a table of keys", path.display()),
    }
}

/// The Launch layer: `WANDB_CONFIG`, else the concatenation of `WANDB_CONFIG_0`, `_1`, ...
/// (the agent splits long configs into chunks), as the official SDK reads them.
fn launch_overrides(
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Map<String, Value>>> {
    let (text, source) = match env("WANDB_CONFIG") {
        Some(text) => (text, "WANDB_CONFIG".to_owned()),
        None => {
            let chunks: Vec<String> = (0..)
                .map_while(|i| env(&format!("WANDB_CONFIG_{i}")))
                .collect();
            if chunks.is_empty() {
                return Ok(None);
            }
            let source = format!("WANDB_CONFIG_0..{}", chunks.len() - 1);
            (chunks.concat(), source)
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => bail!("{source} must hold a JSON object of config keys"),
        Err(err) => Err(err).with_context(|| format!("{source} is not valid JSON")),
    }
}

fn run_defaults() -> RunSection {
    RunSection {
        project: None,
        tags: Vec::new(),
        notes: None,
        resume_from: None,
        checkpoint_dir: None,
    }
}

/// Two layers, 64 wide, on two-digit addition: exact answers on ≥ 98% of held-out problems
/// after 1,000 steps, about 13 s on two CPU cores (every seed tried). 16 tokens of context hold
/// one problem (10 characters) and the prompt of the next: windows start at a problem, so
/// short ones waste nothing, and 64 of them a step see more problems than 32 of 32 tokens.
fn tiny() -> TrainConfig {
    TrainConfig {
        model: ModelSection {
            n_layer: 2,
            n_head: 2,
            n_embd: 64,
            block_size: 16,
            dropout: 0.0,
            tied_head: true,
        },
        optim: OptimSection {
            learning_rate: 3e-3,
            min_lr: 3e-4,
            warmup_iters: 50,
            max_iters: 1000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
        },
        train: TrainSection {
            batch_size: 64,
            eval_interval: 100,
            eval_iters: 10,
            log_interval: 10,
            grad_norm_interval: 50,
            checkpoint_interval: 500,
            sample_count: 16,
            seed: 1337,
            device: Device::Auto,
            precision: Precision::Fp32,
        },
        data: DataSection {
            dataset: DatasetSpec::Addition {
                digits: DEFAULT_ADDITION_DIGITS,
            },
            val_fraction: 0.1,
            cache: None,
        },
        run: run_defaults(),
    }
}

/// nanoGPT's `train_shakespeare_char`.
fn shakespeare_char() -> TrainConfig {
    TrainConfig {
        model: ModelSection {
            n_layer: 6,
            n_head: 6,
            n_embd: 384,
            block_size: 256,
            dropout: 0.2,
            tied_head: true,
        },
        optim: OptimSection {
            learning_rate: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            max_iters: 5000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
        },
        train: TrainSection {
            batch_size: 64,
            eval_interval: 250,
            eval_iters: 200,
            log_interval: 10,
            grad_norm_interval: 100,
            checkpoint_interval: 1000,
            sample_count: 8,
            seed: 1337,
            device: Device::Auto,
            precision: Precision::Bf16,
        },
        data: DataSection {
            dataset: DatasetSpec::Shakespeare,
            val_fraction: 0.1,
            cache: None,
        },
        run: run_defaults(),
    }
}

/// GPT-2 small's shape (12 layers, 12 heads, 768 wide, 1024 context) for benchmarks; the
/// vocabulary comes from the data.
fn gpt2_124m() -> TrainConfig {
    TrainConfig {
        model: ModelSection {
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            block_size: 1024,
            dropout: 0.0,
            tied_head: true,
        },
        optim: OptimSection {
            learning_rate: 6e-4,
            min_lr: 6e-5,
            warmup_iters: 100,
            max_iters: 1000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
        },
        train: TrainSection {
            batch_size: 8,
            eval_interval: 250,
            eval_iters: 20,
            log_interval: 10,
            grad_norm_interval: 100,
            checkpoint_interval: 1000,
            sample_count: 4,
            seed: 1337,
            device: Device::Auto,
            precision: Precision::Bf16,
        },
        data: DataSection {
            dataset: DatasetSpec::Shakespeare,
            val_fraction: 0.1,
            cache: None,
        },
        run: run_defaults(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| vars.get(key).cloned()
    }

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn presets_are_valid_and_shakespeare_char_matches_nanogpt() {
        for name in PRESETS {
            assert_eq!(
                TrainConfig::preset(name).unwrap().problems(),
                Vec::<String>::new()
            );
        }
        let c = TrainConfig::preset("shakespeare-char").unwrap();
        let m = &c.model;
        assert_eq!(
            (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout),
            (6, 6, 384, 256, 0.2)
        );
        let o = &c.optim;
        assert_eq!(
            (o.learning_rate, o.min_lr, o.max_iters, o.warmup_iters),
            (1e-3, 1e-4, 5000, 100)
        );
        assert_eq!(
            (o.beta2, o.weight_decay, o.grad_clip, c.train.batch_size),
            (0.99, 0.1, 1.0, 64)
        );
        let g = TrainConfig::preset("gpt2-124m").unwrap().model;
        assert_eq!(
            (g.n_layer, g.n_head, g.n_embd, g.block_size),
            (12, 12, 768, 1024)
        );
        let err = TrainConfig::preset("huge").unwrap_err().to_string();
        assert!(err.contains("tiny, shakespeare-char, gpt2-124m"), "{err}");
    }

    #[test]
    fn layers_apply_in_order_preset_file_set_launch() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "c.toml",
            "preset = \"shakespeare-char\"\n[model]\nn_layer = 4\ndropout = 0.1\n\
             [optim]\nmax_iters = 300\n[run]\ntags = [\"a\"]\n",
        );
        let launch = env(&[(
            "WANDB_CONFIG",
            r#"{"optim.max_iters": 700, "train": {"seed": 7}, "branch": "main",
                "_wandb": {"x": 1}, "param_count": 5}"#,
        )]);
        let c = TrainConfig::load(
            None,
            Some(&file),
            &sets(&["n_layer=3", "optim.max_iters=500"]),
            launch,
        )
        .unwrap();
        // The file's preset is the base; the file beats it, --set beats the file, Launch beats all.
        assert_eq!(c.model.n_embd, 384);
        assert_eq!(c.model.dropout, 0.1);
        assert_eq!(c.model.n_layer, 3);
        assert_eq!(c.optim.max_iters, 700);
        assert_eq!(c.train.seed, 7);
        assert_eq!(c.run.tags, vec!["a".to_owned()]);
        // An explicit preset beats the file's.
        let c = TrainConfig::load(Some("tiny"), Some(&file), &[], no_env).unwrap();
        assert_eq!((c.model.n_embd, c.model.n_layer), (64, 4));
    }

    #[test]
    fn yaml_files_take_nested_and_dotted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "c.yaml",
            "model:\n  n_head: 4\ntrain.batch_size: 8\ndata:\n  dataset: file:/tmp/x.txt\n",
        );
        let c = TrainConfig::load(None, Some(&file), &[], no_env).unwrap();
        assert_eq!((c.model.n_head, c.train.batch_size), (4, 8));
        assert_eq!(c.data.dataset, DatasetSpec::File("/tmp/x.txt".into()));
        let bad = write(dir.path(), "c.json", "{}");
        let err = TrainConfig::load(None, Some(&bad), &[], no_env).unwrap_err();
        assert!(err.to_string().contains(".toml, .yaml or .yml"), "{err}");
        let broken = write(dir.path(), "b.toml", "[model\n");
        let err = format!(
            "{:#}",
            TrainConfig::load(None, Some(&broken), &[], no_env).unwrap_err()
        );
        assert!(err.contains("parsing") && err.contains("b.toml"), "{err}");
    }

    #[test]
    fn overrides_read_json_scalars_else_strings() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        for assignment in [
            "learning_rate=2e-4",
            "tied_head=false",
            "run.notes=42",
            "notes = try 42 ",
            "run.project=null",
            "run.tags=x, y,",
            "data.dataset=file:data/in.txt",
            "device=cuda:1",
        ] {
            c.set_from_text(assignment).unwrap();
        }
        assert_eq!(c.optim.learning_rate, 2e-4);
        assert!(!c.model.tied_head);
        assert_eq!(c.run.notes.as_deref(), Some("try 42"));
        assert_eq!(c.run.project, None);
        assert_eq!(c.run.tags, vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(c.train.device, Device::Cuda(1));
        c.set_from_text("run.tags=[\"p\"]").unwrap();
        assert_eq!(c.run.tags, vec!["p".to_owned()]);
        c.set_from_text("run.notes=42").unwrap();
        assert_eq!(c.run.notes.as_deref(), Some("42"));
    }

    #[test]
    fn bad_overrides_say_which_key_and_what_is_valid() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        let before = c.clone();
        let err = format!("{:#}", c.set_from_text("n_layers=3").unwrap_err());
        assert!(err.contains("unknown config key \"n_layers\""), "{err}");
        assert!(
            err.contains("model.n_layer") && err.contains("run.resume_from"),
            "{err}"
        );
        let err = format!("{:#}", c.set_from_text("model.n_layer=many").unwrap_err());
        assert!(
            err.contains("model.n_layer") && err.contains("many"),
            "{err}"
        );
        let err = format!("{:#}", c.set_from_text("model.n_layer=-1").unwrap_err());
        assert!(err.contains("model.n_layer"), "{err}");
        assert!(c.set_from_text("n_layer").is_err());
        assert_eq!(c, before, "failed overrides change nothing");
    }

    #[test]
    fn launch_chunks_are_concatenated_and_must_be_json_objects() {
        let chunked = env(&[
            ("WANDB_CONFIG_0", r#"{"model.n_layer": 5, "optim": {"max"#),
            ("WANDB_CONFIG_1", r#"_iters": 77}}"#),
            (
                "WANDB_CONFIG_3",
                r#"ignored: the chunks stop at the first gap"#,
            ),
        ]);
        let c = TrainConfig::load(None, None, &[], chunked).unwrap();
        assert_eq!((c.model.n_layer, c.optim.max_iters), (5, 77));

        let whole_wins = env(&[
            ("WANDB_CONFIG", r#"{"n_layer": 6}"#),
            ("WANDB_CONFIG_0", "not json"),
        ]);
        let c = TrainConfig::load(None, None, &[], whole_wins).unwrap();
        assert_eq!(c.model.n_layer, 6);

        for (value, needle) in [
            ("{\"n_layer\": 6", "WANDB_CONFIG is not valid JSON"),
            ("[1]", "JSON object"),
            ("{\"typo\": 1}", "unknown config key \"typo\""),
        ] {
            let err =
                TrainConfig::load(None, None, &[], env(&[("WANDB_CONFIG", value)])).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{value}: {err:#}");
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let assignments = sets(&[
            "n_embd=65",
            "n_head=2",
            "batch_size=0",
            "min_lr=1",
            "warmup_iters=5000",
            "beta2=1.0",
            "val_fraction=0",
            "eval_interval=0",
            "device=tpu",
            "dataset=synthetic-addition:12",
            "resume_from=artifact:a/b/c/d",
            "precision=fp16",
        ]);
        let err = TrainConfig::load(None, None, &assignments, no_env)
            .unwrap_err()
            .to_string();
        for needle in [
            "model.n_embd (65) must be a multiple of model.n_head (2)",
            "train.batch_size must be positive",
            "optim.min_lr",
            "optim.warmup_iters (5000)",
            "optim.beta2",
            "data.val_fraction",
            "train.eval_interval",
            "unknown device \"tpu\"",
            "digits must be 1 to 9",
            "run.resume_from = \"artifact:a/b/c/d\"",
            "unknown precision \"fp16\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn typed_values_round_trip_through_their_text() {
        let mut c = TrainConfig::preset("tiny").unwrap();
        for assignment in [
            "device=cuda:1",
            "precision=bf16",
            "dataset=artifact:team/proj/text:v2",
            "resume_from=artifact:proj/model-x:best",
        ] {
            c.set_from_text(assignment).unwrap();
        }
        let flat = c.to_wandb_config();
        assert_eq!(flat["train.device"], json!("cuda:1"));
        assert_eq!(flat["data.dataset"], json!("artifact:team/proj/text:v2"));
        assert_eq!(flat["run.resume_from"], json!("artifact:proj/model-x:best"));
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&text).unwrap(), c);
        // A failed set changes nothing.
        assert!(c.set_from_text("device=tpu").is_err());
        assert_eq!(c.train.device, Device::Cuda(1));
    }

    #[test]
    fn dataset_and_device_names_parse() {
        let parse = |s: &str| s.parse::<DatasetSpec>();
        assert_eq!(
            parse("synthetic-addition").unwrap(),
            DatasetSpec::Addition { digits: 2 }
        );
        assert_eq!(
            parse("synthetic-addition:3").unwrap(),
            DatasetSpec::Addition { digits: 3 }
        );
        assert_eq!(parse("shakespeare").unwrap(), DatasetSpec::Shakespeare);
        let DatasetSpec::Artifact(r) = parse("artifact:team/proj/text:v2").unwrap() else {
            panic!("not an artifact");
        };
        assert_eq!(r.to_string(), "team/proj/text:v2");
        for bad in [
            "synthetic-additionx",
            "file:",
            "artifact:a/b/c/d",
            "mnist",
            "artifact:",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("cuda".parse::<Device>().unwrap().to_string(), "cuda:0");
        assert!("cuda:x".parse::<Device>().is_err());
        assert!("fp16".parse::<Precision>().is_err());
        let c = TrainConfig::load(Some("gpt2-124m"), None, &["precision=tf32".into()], no_env);
        assert_eq!(c.unwrap().train.precision, Precision::Tf32);
    }

    #[test]
    fn wandb_config_is_flat_and_complete() {
        let c = TrainConfig::preset("tiny").unwrap();
        let flat = c.to_wandb_config();
        assert_eq!(flat["model.n_layer"], json!(2));
        assert_eq!(flat["optim.learning_rate"], json!(3e-3));
        assert_eq!(flat["run.tags"], json!([]));
        assert_eq!(flat["data.cache"], Value::Null);
        assert!(flat.values().all(|v| !v.is_object()));
        assert_eq!(flat.len(), valid_keys().len());
        // Every recorded key differs from the settable ones.
        assert!(keys::config::recorded().all(|k| !flat.contains_key(k)));
        // Sending the flat map back through Launch reproduces the config.
        let launch = serde_json::to_string(&flat).unwrap();
        let back = TrainConfig::load(
            Some("gpt2-124m"),
            None,
            &[],
            env(&[("WANDB_CONFIG", &launch)]),
        )
        .unwrap();
        assert_eq!(back, c);
    }
}
