//! `mlwf train`: the config from its layers (preset, file, `--set`, W&B Launch), where the run
//! goes, and where checkpoints and downloads are kept.

use std::process::ExitCode;

use super::{env, store_settings};
use crate::cli::{StoreArgs, TrainArgs};
use crate::connect;
use crate::train::config::TrainConfig;
use crate::train::data;
use crate::train::trainer::{self, Fault, Settings};

pub async fn run(store: &StoreArgs, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut sets = args.set;
    if let Some(device) = args.device {
        sets.push(format!("train.device={device}"));
    }
    let config = TrainConfig::load(args.preset.as_deref(), args.config.as_deref(), &sets, env)?;
    let fault = Fault::from_env(env("MLWF_FAULT").as_deref())?;
    let checkpoints = match &config.run.checkpoint_dir {
        Some(dir) => dir.clone(),
        None => connect::project_store_dir()?.join("checkpoints"),
    };
    let data_cache = config
        .data
        .cache
        .clone()
        .unwrap_or_else(|| data::default_cache_dir(env));
    let settings = Settings {
        store: store_settings(store, config.run.project.as_deref(), env),
        config,
        checkpoints,
        data_cache,
        fault,
    };
    Ok(ExitCode::from(trainer::run(settings).await?))
}
