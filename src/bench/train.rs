//! `mlwf bench train`: training speed of a preset's model (tokens/s, ms/step) on random tokens,
//! with no run around it.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::train::backend::Backend;
use crate::train::backend::Precision;
use crate::train::config::TrainConfig;
use crate::train::cpu::CpuBackend;
use crate::train::data::Batch;
use crate::train::device::{self, Device, Selected};
use crate::train::model::{Gpt, ModelConfig};
use crate::train::rng::SplitMix64;
use crate::train::trainer::train_step;

/// What `bench train` measures.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The model and batch shape: a preset's.
    pub preset: String,
    /// Timed steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// The preset's batch size unless given.
    pub batch_size: Option<usize>,
    /// Vocabulary of the random tokens: GPT-2's for `gpt2-124m`, Tiny Shakespeare's 65
    /// characters otherwise, unless given.
    pub vocab: Option<usize>,
    pub device: Device,
    /// The preset's GPU matmul precision unless given.
    pub precision: Option<Precision>,
}

/// Step times of one `bench train` measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSpeed {
    pub preset: String,
    pub device: String,
    pub parameters: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub steps: usize,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub tokens_per_sec: f64,
}

/// Times training steps of a preset's model on random tokens: the trainer's own step, with no
/// data loading, evaluation or W&B run around it.
pub fn train(args: &TrainOptions) -> anyhow::Result<TrainSpeed> {
    let config = TrainConfig::preset(&args.preset)?;
    let batch_size = args.batch_size.unwrap_or(config.train.batch_size);
    let vocab = args.vocab.unwrap_or(if args.preset == "gpt2-124m" {
        50257
    } else {
        65
    });
    let model = config.model.model_config(vocab);
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let precision = args.precision.unwrap_or(config.train.precision);
    match device::select(&args.device, precision)? {
        Selected::Cpu { why } => {
            if let Some(why) = why {
                eprintln!("mlwf: {why}");
            }
            time_train_steps(
                CpuBackend::new(),
                "cpu".into(),
                model,
                &config,
                batch_size,
                args,
            )
        }
        Selected::Cuda(backend) => {
            let name = format!("{} ({precision})", backend.gpu_facts().name);
            time_train_steps(backend, name, model, &config, batch_size, args)
        }
    }
}

fn time_train_steps<B: Backend>(
    backend: B,
    device: String,
    model: ModelConfig,
    config: &TrainConfig,
    batch_size: usize,
    args: &TrainOptions,
) -> anyhow::Result<TrainSpeed> {
    let seq = model.block_size;
    let vocab = model.vocab_size as u64;
    let mut gpt = Gpt::new(model, backend, config.train.seed)?;
    let o = &config.optim;
    let optimizer = o.adamw();
    let mut rng = SplitMix64::new(config.train.seed);
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let mut ids = || -> Vec<u32> {
            (0..batch_size * seq)
                .map(|_| rng.below(vocab) as u32)
                .collect()
        };
        let batch = Batch {
            inputs: ids(),
            targets: ids(),
        };
        let begun = Instant::now();
        train_step(
            &mut gpt,
            &optimizer,
            &batch,
            (batch_size, seq),
            o.learning_rate as f32,
            o.grad_clip as f32,
            false,
        )?;
        if i >= args.warmup {
            times.push(begun.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = ms(times[times.len() / 2]);
    Ok(TrainSpeed {
        preset: args.preset.clone(),
        device,
        parameters: gpt.num_parameters(),
        batch_size,
        seq_len: seq,
        steps: args.steps,
        ms_per_step_median: median,
        ms_per_step_min: ms(times[0]),
        tokens_per_sec: (batch_size * seq) as f64 / (median / 1e3),
    })
}
