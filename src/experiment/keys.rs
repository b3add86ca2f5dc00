//! The names a run is recorded under. The trainer writes them, the reporter and the loop
//! commands read them; nobody else spells them out.

/// Config keys the trainer records beside the hyperparameters (which are `model.*`, `optim.*`,
/// `train.*`, `data.*` and `run.*`). They are facts, not settings.
pub mod config {
    pub const BRANCH: &str = "branch";
    pub const COMMIT: &str = "commit";
    /// Whether tracked files differed from the commit.
    pub const DIRTY: &str = "dirty";
    pub const HOST: &str = "host";
    pub const MLWF_VERSION: &str = "mlwf_version";
    pub const PARAM_COUNT: &str = "param_count";
    /// `cpu` or `cuda`.
    pub const BACKEND: &str = "backend";
    /// `cpu` or `cuda:N`.
    pub const DEVICE: &str = "device.resolved";
    pub const DATASET_NAME: &str = "dataset.name";
    pub const DATASET_SHA256: &str = "dataset.sha256";
    pub const DATASET_VOCAB_SIZE: &str = "dataset.vocab_size";
    pub const DATASET_TRAIN_TOKENS: &str = "dataset.train_tokens";
    pub const DATASET_VAL_TOKENS: &str = "dataset.val_tokens";
    pub const RESUMED_FROM: &str = "resumed_from";
    pub const RESUMED_STEP: &str = "resumed_step";

    /// What a GPU run records of its device, in this order.
    pub const GPU: [&str; 7] = [
        "device.gpu_name",
        "device.gpu_memory_bytes",
        "device.compute_capability",
        "device.multiprocessors",
        "device.cuda_driver_version",
        "device.nvrtc_version",
        "device.precision",
    ];

    /// Every recorded fact. None is settable: a Launch config copied from an earlier run
    /// carries them, so the trainer skips them there.
    pub fn recorded() -> impl Iterator<Item = &'static str> {
        [
            BRANCH,
            COMMIT,
            DIRTY,
            HOST,
            MLWF_VERSION,
            PARAM_COUNT,
            BACKEND,
            DEVICE,
            DATASET_NAME,
            DATASET_SHA256,
            DATASET_VOCAB_SIZE,
            DATASET_TRAIN_TOKENS,
            DATASET_VAL_TOKENS,
            RESUMED_FROM,
            RESUMED_STEP,
        ]
        .into_iter()
        .chain(GPU)
    }

    pub fn is_recorded(key: &str) -> bool {
        recorded().any(|k| k == key)
    }

    /// Facts that differ between any two runs and say nothing about the experiment: a config
    /// diff leaves them out.
    pub const INCIDENTAL: [&str; 5] = [BRANCH, COMMIT, DIRTY, HOST, DEVICE];

    /// The run-filter path of config key `key` (W&B stores config values under `value`).
    pub fn filter_path(key: &str) -> String {
        format!("config.{key}.value")
    }
}

/// The W&B artifact name of a run's checkpoints, as W&B's own integrations name them: what a
/// resumed or requeued run resumes from.
pub fn checkpoint_artifact(run_id: &str) -> String {
    format!("model-{run_id}")
}

/// History and summary keys.
pub mod metric {
    /// The mean training loss since the last logged row.
    pub const TRAIN_LOSS: &str = "train/loss";
    pub const TRAIN_LR: &str = "train/lr";
    /// The global gradient norm before clipping.
    pub const TRAIN_GRAD_NORM: &str = "train/grad_norm";
    pub const TRAIN_TOKENS_PER_SEC: &str = "train/tokens_per_sec";
    pub const TRAIN_STEP_MS: &str = "train/step_ms";
    /// Summary: optimizer steps taken.
    pub const TRAIN_STEPS: &str = "train/steps";
    pub const VAL_LOSS: &str = "val/loss";
    /// Exact-match accuracy of the sample predictions, where the task has one.
    pub const VAL_ACCURACY: &str = "val/accuracy";
    /// Summary: the step of the last evaluation.
    pub const VAL_STEP: &str = "val/step";
    /// The W&B Table of sample predictions (prompt, prediction, target, correct).
    pub const VAL_PREDICTIONS: &str = "val/predictions";
    pub const BEST_VAL_LOSS: &str = "best/val_loss";
    pub const BEST_STEP: &str = "best/step";
    /// Resident memory of the trainer.
    pub const MEMORY_MB: &str = "diag/memory_mb";

    /// The gradient norm of one parameter group (`block.3`, `embedding`, ...).
    pub fn grad_norm(group: &str) -> String {
        format!("diag/grad_norm/{group}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn recorded_keys_are_distinct() {
        let all: Vec<&str> = config::recorded().collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len());
        assert!(config::INCIDENTAL.iter().all(|k| config::is_recorded(k)));
        assert!(!config::is_recorded("model.n_layer"));
    }
}
