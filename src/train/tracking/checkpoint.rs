//! Checkpoints: a directory that resumes training exactly, and its W&B `model` artifact.
//!
//! Layout (format 1):
//! - `model.safetensors`: the parameters as named f32 tensors (nanoGPT's names), readable by
//!   any safetensors loader;
//! - `optimizer.safetensors`: AdamW's moments, `adam_m.<name>` and `adam_v.<name>`;
//! - `config.json`: `{"format", "model": ModelConfig, "train": TrainConfig, "tokenizer"}`;
//! - `state.json`: `{"format", "step", "rng_counter", "sampler_draws", "val_loss",
//!   "best_val_loss", "run_id"}`.
//!
//! safetensors files keep tensors sorted by name; the model's own order, which
//! [`ModelState`] relies on, is kept in each file's metadata under `mlwf.order`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context};
use safetensors::{Dtype, SafeTensors, View};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::f32_json;

use crate::experiment::keys;
use crate::train::config::{ResumeFrom, TrainConfig};
use crate::train::data::CharTokenizer;
use crate::train::model::{ModelConfig, ModelState, NamedTensor};
use crate::wandb::{ArtifactSpec, Client, LoggedArtifact, Row, Run};

pub const FORMAT: u32 = 1;
const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const ORDER_KEY: &str = "mlwf.order";
const ADAM_M: &str = "adam_m.";
const ADAM_V: &str = "adam_v.";

/// Where training stood, besides the model's own state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Position of the training batch sampler (`data::BatchSampler::draws`).
    pub sampler_draws: u64,
    /// Validation loss at this checkpoint, when it was measured.
    pub val_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    /// The W&B run that wrote the checkpoint.
    pub run_id: Option<String>,
}

/// Everything to continue a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub model: ModelConfig,
    pub config: TrainConfig,
    pub tokenizer: CharTokenizer,
    pub state: ModelState,
    pub progress: Progress,
}

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    format: u32,
    model: ModelConfig,
    train: TrainConfig,
    tokenizer: CharTokenizer,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    step: u64,
    rng_counter: u64,
    #[serde(flatten)]
    progress: Progress,
}

impl Checkpoint {
    /// Writes the checkpoint to `dir`, replacing what was there only once every file is
    /// written: an interrupted save leaves the previous checkpoint intact.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let partial = sibling(dir, "partial")?;
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing the stale {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        self.write_files(&partial)
            .with_context(|| format!("writing a checkpoint into {}", partial.display()))?;
        let old = sibling(dir, "old")?;
        if dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)
                    .with_context(|| format!("removing {}", old.display()))?;
            }
            std::fs::rename(dir, &old)
                .with_context(|| format!("moving the previous checkpoint {}", dir.display()))?;
        }
        std::fs::rename(&partial, dir)
            .with_context(|| format!("moving the new checkpoint into {}", dir.display()))?;
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("removing the previous checkpoint {}", old.display()))?;
        }
        Ok(())
    }

    fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        let s = &self.state;
        write_tensors(&dir.join(MODEL_FILE), [("", &s.params)])?;
        write_tensors(
            &dir.join(OPTIMIZER_FILE),
            [(ADAM_M, &s.adam_m), (ADAM_V, &s.adam_v)],
        )?;
        write_json(
            &dir.join(CONFIG_FILE),
            &ConfigFile {
                format: FORMAT,
                model: self.model.clone(),
                train: self.config.clone(),
                tokenizer: self.tokenizer.clone(),
            },
        )?;
        write_json(
            &dir.join(STATE_FILE),
            &StateFile {
                format: FORMAT,
                step: s.step,
                rng_counter: s.rng_counter,
                progress: self.progress.clone(),
            },
        )
    }

    /// Reads a checkpoint directory, checking that its files agree with each other.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        Self::read_files(dir).with_context(|| format!("reading the checkpoint {}", dir.display()))
    }

    fn read_files(dir: &Path) -> anyhow::Result<Self> {
        let config: ConfigFile = read_json(&dir.join(CONFIG_FILE))?;
        let state: StateFile = read_json(&dir.join(STATE_FILE))?;
        for (file, format) in [(CONFIG_FILE, config.format), (STATE_FILE, state.format)] {
            ensure!(
                format == FORMAT,
                "{file} is checkpoint format {format}; this mlwf reads format {FORMAT}"
            );
        }
        let params = read_tensors(&dir.join(MODEL_FILE), &[""])?.remove(0);
        let mut moments = read_tensors(&dir.join(OPTIMIZER_FILE), &[ADAM_M, ADAM_V])?;
        let adam_v = moments.remove(1);
        let adam_m = moments.remove(0);
        for (kind, tensors) in [("adam_m", &adam_m), ("adam_v", &adam_v)] {
            let agree = tensors.len() == params.len()
                && tensors
                    .iter()
                    .zip(&params)
                    .all(|(t, p)| t.name == p.name && t.shape == p.shape);
            ensure!(
                agree,
                "{OPTIMIZER_FILE}: the {kind} tensors do not match the parameters in {MODEL_FILE}"
            );
        }
        ensure!(
            config.model.vocab_size == config.tokenizer.vocab_size(),
            "{CONFIG_FILE}: the model's vocabulary ({}) differs from the tokenizer's ({})",
            config.model.vocab_size,
            config.tokenizer.vocab_size()
        );
        Ok(Self {
            model: config.model,
            config: config.train,
            tokenizer: config.tokenizer,
            state: ModelState {
                params,
                adam_m,
                adam_v,
                step: state.step,
                rng_counter: state.rng_counter,
            },
            progress: state.progress,
        })
    }
}

/// `<dir>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("checkpoint directory {} has no name", dir.display()))?;
    let mut name = name.to_os_string();
    name.push(format!(".{suffix}"));
    Ok(dir.with_file_name(name))
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(value).context("encoding JSON")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A tensor as safetensors writes it: little-endian f32.
struct F32View<'a>(&'a NamedTensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// Writes groups of tensors into one file, each name behind its group's prefix; the order of
/// the first group's names goes into the metadata.
fn write_tensors<'a>(
    path: &Path,
    groups: impl IntoIterator<Item = (&'a str, &'a Vec<NamedTensor>)>,
) -> anyhow::Result<()> {
    let mut order = None;
    let mut views = Vec::new();
    for (prefix, tensors) in groups {
        for t in tensors {
            ensure!(
                t.data.len() == t.shape.iter().product::<usize>(),
                "tensor {} has {} values for shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            );
            views.push((format!("{prefix}{}", t.name), F32View(t)));
        }
        order.get_or_insert_with(|| tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    }
    let metadata = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (
            ORDER_KEY.to_owned(),
            json!(order.unwrap_or_default()).to_string(),
        ),
    ]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads one group of tensors per prefix, in the order the metadata records.
fn read_tensors(path: &Path, prefixes: &[&str]) -> anyhow::Result<Vec<Vec<NamedTensor>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("reading the header of {}", path.display()))?;
    let order: Vec<String> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ORDER_KEY))
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| anyhow!("{} has no tensor order ({ORDER_KEY})", path.display()))?;
    ensure!(
        file.len() == order.len() * prefixes.len(),
        "{} holds {} tensors, expected {}",
        path.display(),
        file.len(),
        order.len() * prefixes.len()
    );
    prefixes
        .iter()
        .map(|prefix| {
            order
                .iter()
                .map(|name| {
                    let full = format!("{prefix}{name}");
                    let view = file
                        .tensor(&full)
                        .with_context(|| format!("{}: tensor {full}", path.display()))?;
                    ensure!(
                        view.dtype() == Dtype::F32,
                        "{}: tensor {full} is {:?}, not F32",
                        path.display(),
                        view.dtype()
                    );
                    let data = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Ok(NamedTensor {
                        name: name.clone(),
                        shape: view.shape().to_vec(),
                        data,
                    })
                })
                .collect()
        })
        .collect()
}

/// Logs the checkpoint in `dir` as a new version of the run's `model` artifact with
/// `aliases` (besides `latest`, which every new version gets). `metadata` (branch, commit,
/// dataset, ...) is recorded with the checkpoint's step and losses.
pub async fn log_artifact(
    run: &Run,
    dir: &Path,
    aliases: &[&str],
    metadata: Row,
) -> anyhow::Result<LoggedArtifact> {
    let state: StateFile = read_json(&dir.join(STATE_FILE))?;
    let mut metadata = metadata;
    metadata.insert("step".into(), json!(state.step));
    let loss = |value: Option<f32>| value.map_or(Value::Null, f32_json);
    metadata.insert("val_loss".into(), loss(state.progress.val_loss));
    metadata.insert("best_val_loss".into(), loss(state.progress.best_val_loss));
    metadata.insert("format".into(), json!(FORMAT));
    let mut spec = ArtifactSpec::new(keys::checkpoint_artifact(run.id()), "model")
        .dir(dir)
        .with_context(|| format!("listing the checkpoint {}", dir.display()))?
        .metadata(metadata);
    spec.description = Some(format!(
        "mlwf checkpoint of run {} at step {}",
        run.id(),
        state.step
    ));
    for alias in aliases {
        spec = spec.alias(*alias);
    }
    run.log_artifact(spec)
        .await
        .with_context(|| format!("logging the checkpoint {} as an artifact", dir.display()))
}

/// Reads the checkpoint `from` points to; a model artifact is first downloaded into
/// `downloads` (every file checked against its manifest MD5) with `client`.
pub async fn load(
    from: &ResumeFrom,
    client: Option<&Client>,
    downloads: &Path,
) -> anyhow::Result<Checkpoint> {
    let dir = match from {
        ResumeFrom::Dir(dir) => dir.clone(),
        ResumeFrom::Artifact(reference) => {
            let client = client.ok_or_else(|| {
                anyhow!("resuming from {from} needs a W&B connection to download it")
            })?;
            let dir = downloads.join(format!("{}-{}", reference.name, reference.alias));
            client
                .download_artifact(reference, &dir)
                .await
                .with_context(|| format!("downloading the checkpoint {from}"))?;
            dir
        }
    };
    tokio::task::spawn_blocking(move || Checkpoint::read(&dir))
        .await
        .context("the checkpoint reader stopped")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, shape: &[usize], start: f32) -> NamedTensor {
        let n: usize = shape.iter().product();
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: (0..n).map(|i| start + i as f32 * 0.5).collect(),
        }
    }

    /// Names deliberately out of sorted order, to check that the model's order survives.
    pub(crate) fn sample() -> Checkpoint {
        let names = [("wte", vec![3, 2]), ("h.1.b", vec![2]), ("h.0.b", vec![2])];
        let set = |start: f32| -> Vec<NamedTensor> {
            names
                .iter()
                .enumerate()
                .map(|(i, (n, s))| tensor(n, s, start + i as f32))
                .collect()
        };
        let config = TrainConfig::preset("tiny").unwrap();
        Checkpoint {
            model: ModelConfig {
                vocab_size: 3,
                block_size: 4,
                n_layer: 2,
                n_head: 1,
                n_embd: 2,
                dropout: 0.0,
                tied_head: true,
            },
            config,
            tokenizer: CharTokenizer::from_text("abc"),
            state: ModelState {
                params: set(0.0),
                adam_m: set(10.0),
                adam_v: set(-10.0),
                step: 42,
                rng_counter: 7,
            },
            progress: Progress {
                sampler_draws: 42 * 32,
                val_loss: Some(1.25),
                best_val_loss: Some(1.125),
                run_id: Some("abc123".into()),
            },
        }
    }

    #[test]
    fn checkpoints_round_trip_and_keep_the_model_order() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt_dir = dir.path().join("latest");
        let ckpt = sample();
        ckpt.write(&ckpt_dir).unwrap();
        assert_eq!(Checkpoint::read(&ckpt_dir).unwrap(), ckpt);

        // Any safetensors reader sees the parameters by name.
        let bytes = std::fs::read(ckpt_dir.join(MODEL_FILE)).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("wte").unwrap().shape(), [3, 2]);
        let bytes = std::fs::read(ckpt_dir.join(OPTIMIZER_FILE)).unwrap();
        let names = SafeTensors::deserialize(&bytes).unwrap().names().len();
        assert_eq!(names, 6);
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ckpt_dir.join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(
            state,
            json!({"format": 1, "step": 42, "rng_counter": 7, "sampler_draws": 1344,
                   "val_loss": 1.25, "best_val_loss": 1.125, "run_id": "abc123"})
        );

        // Writing again replaces the checkpoint and leaves nothing beside it.
        let mut next = ckpt.clone();
        next.state.step = 43;
        next.write(&ckpt_dir).unwrap();
        assert_eq!(Checkpoint::read(&ckpt_dir).unwrap().state.step, 43);
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn damaged_or_inconsistent_checkpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt_dir = dir.path().join("c");
        sample().write(&ckpt_dir).unwrap();

        let mut other = sample();
        other.state.adam_m[1].shape = vec![1, 2];
        let odd_dir = dir.path().join("odd");
        other.write(&odd_dir).unwrap();
        std::fs::copy(odd_dir.join(OPTIMIZER_FILE), ckpt_dir.join(OPTIMIZER_FILE)).unwrap();
        let err = format!("{:#}", Checkpoint::read(&ckpt_dir).unwrap_err());
        assert!(err.contains("adam_m tensors do not match"), "{err}");

        sample().write(&ckpt_dir).unwrap();
        let state = ckpt_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state).unwrap();
        std::fs::write(&state, text.replace("\"format\": 1", "\"format\": 9")).unwrap();
        let err = format!("{:#}", Checkpoint::read(&ckpt_dir).unwrap_err());
        assert!(err.contains("format 9"), "{err}");

        sample().write(&ckpt_dir).unwrap();
        std::fs::write(ckpt_dir.join(MODEL_FILE), b"junk").unwrap();
        let err = format!("{:#}", Checkpoint::read(&ckpt_dir).unwrap_err());
        assert!(
            err.contains("not a safetensors file") && err.contains("c"),
            "{err}"
        );

        let mut bad = sample();
        bad.state.params[0].data.pop();
        assert!(bad.write(&dir.path().join("bad")).is_err());
        assert!(Checkpoint::read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn resume_sources_parse() {
        assert_eq!(
            "out/latest".parse::<ResumeFrom>().unwrap(),
            ResumeFrom::Dir("out/latest".into())
        );
        let from: ResumeFrom = "artifact:team/proj/model-abc:best".parse().unwrap();
        assert_eq!(from.to_string(), "artifact:team/proj/model-abc:best");
        assert!("artifact:a/b/c/d".parse::<ResumeFrom>().is_err());
        assert!("".parse::<ResumeFrom>().is_err());
    }
}
