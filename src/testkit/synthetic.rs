//! Runs shaped like the trainer's (flat dotted config with the recorded facts, the trainer's
//! history keys, a prediction table, console output, an exit code), logged through mlwf's own
//! client. `mlwf bench analyze` and the analyze tests seed the local server with them, so what
//! they analyze looks exactly like what `mlwf train` leaves behind.

use anyhow::Context;
use serde_json::{json, Value};

use crate::experiment::keys::{config, metric};
use crate::train::tracking::table::{predictions_table, Prediction};
use crate::wandb::{Client, Row, RunSpec, Stream};

/// One synthetic run.
#[derive(Debug, Clone)]
pub struct SyntheticRun {
    pub id: String,
    pub branch: String,
    pub commit: String,
    pub seed: u64,
    pub learning_rate: f64,
    /// The validation loss the run ends at; the curve decays towards it from 4.0.
    pub final_val_loss: f64,
    pub steps: u64,
    pub tags: Vec<String>,
    /// Console lines printed before the end (a failure's log).
    pub console: Vec<String>,
    /// Non-zero for a failed run.
    pub exit_code: i32,
}

impl SyntheticRun {
    /// A finished run of `branch`.
    pub fn finished(id: &str, branch: &str, commit: &str, seed: u64, final_val_loss: f64) -> Self {
        Self {
            id: id.to_owned(),
            branch: branch.to_owned(),
            commit: commit.to_owned(),
            seed,
            learning_rate: 3e-4,
            final_val_loss,
            steps: 200,
            tags: Vec::new(),
            console: Vec::new(),
            exit_code: 0,
        }
    }

    /// A run that prints `console` and exits with `exit_code` after `steps` steps.
    pub fn failed(id: &str, branch: &str, steps: u64, exit_code: i32, console: &[&str]) -> Self {
        Self {
            console: console.iter().map(|l| l.to_string()).collect(),
            exit_code,
            steps,
            ..Self::finished(id, branch, "f00d", 1, 3.0)
        }
    }

    fn config(&self) -> Row {
        let config = json!({
            "model.n_layer": 2, "model.n_embd": 64, "model.block_size": 32,
            "optim.learning_rate": self.learning_rate, "train.batch_size": 16,
            "train.seed": self.seed, "train.max_steps": self.steps, "data.dataset": "addition",
            config::BRANCH: self.branch, config::COMMIT: self.commit, config::DIRTY: false,
            config::DATASET_NAME: "addition", config::DATASET_SHA256: "9f2c",
            config::BACKEND: "cpu", config::DEVICE: "cpu", config::HOST: "ci",
            config::MLWF_VERSION: env!("CARGO_PKG_VERSION"), config::PARAM_COUNT: 110_000,
        });
        config.as_object().cloned().unwrap_or_default()
    }

    /// Validation loss at `step`: exponential decay from 4.0 at step 0 to the final value.
    fn val_loss(&self, step: u64) -> f64 {
        let progress = step as f64 / self.steps.max(1) as f64;
        let floor = (-5.0f64).exp();
        let shape = ((-5.0 * progress).exp() - floor) / (1.0 - floor);
        self.final_val_loss + (4.0 - self.final_val_loss) * shape
    }
}

fn row(value: Value) -> Row {
    value.as_object().cloned().unwrap_or_default()
}

/// Logs `spec` as a complete run: config, history every 10 steps, predictions, console, finish.
pub async fn log_run(
    client: &Client,
    entity: &str,
    project: &str,
    spec: &SyntheticRun,
) -> anyhow::Result<()> {
    let run = client
        .start_run(RunSpec {
            entity: Some(entity.to_owned()),
            project: Some(project.to_owned()),
            id: Some(spec.id.clone()),
            tags: spec.tags.clone(),
            config: spec.config(),
            commit: Some(spec.commit.clone()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("starting synthetic run {}", spec.id))?;
    for step in (0..=spec.steps).step_by(10) {
        let val = spec.val_loss(step);
        let mut values = row(json!({
            metric::TRAIN_LOSS: val * 0.97, metric::TRAIN_LR: spec.learning_rate,
            metric::TRAIN_GRAD_NORM: 1.0 / (1.0 + step as f64),
            metric::TRAIN_TOKENS_PER_SEC: 50_000.0, metric::TRAIN_STEP_MS: 4.0,
        }));
        if step % 50 == 0 || step == spec.steps {
            values.insert(metric::VAL_LOSS.into(), json!(val));
            values.insert(
                metric::VAL_ACCURACY.into(),
                json!((1.0 - val / 4.0).clamp(0.0, 1.0)),
            );
        }
        run.log_at(step, values)?;
    }
    if spec.exit_code == 0 {
        let predictions: Vec<Prediction> = (0..8)
            .map(|i| Prediction {
                prompt: format!("{i}+{i}="),
                prediction: format!("{}", 2 * i + usize::from(i % 3 == 2)),
                target: format!("{}", 2 * i),
                correct: i % 3 != 2,
            })
            .collect();
        let table = predictions_table(&predictions)
            .save(&run, metric::VAL_PREDICTIONS, spec.steps)
            .await?;
        let final_loss = spec.val_loss(spec.steps);
        run.summary_update(row(json!({
            metric::VAL_PREDICTIONS: table, metric::BEST_VAL_LOSS: final_loss,
            metric::VAL_LOSS: final_loss,
        })));
    }
    for line in &spec.console {
        run.console(&format!("{line}\n"), Stream::Stderr);
    }
    run.finish(spec.exit_code)
        .await
        .with_context(|| format!("finishing synthetic run {}", spec.id))
}
