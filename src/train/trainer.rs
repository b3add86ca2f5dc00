//! `mlwf train`: one training run, start to finish, tracked in W&B.
//!
//! The run is started as soon as the config is known, before the data is loaded, so that every
//! later failure (a missing dataset, a diverging loss, a panic, a signal) ends as a finished W&B
//! run with its state, exit code and console log, which is what the PR report diagnoses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};

use crate::connect::{self, Purpose, Store, StoreSettings};
use crate::experiment::keys;
use crate::git::GitFacts;
use crate::train::backend::{Backend, DeviceError, MetricSource};
use crate::train::config::{DatasetSpec, ResumeFrom, TrainConfig};
use crate::train::cpu::CpuBackend;
use crate::train::data::{self, Batch, BatchSampler, Dataset};
use crate::train::device::{self, Selected};
use crate::train::eval::{Evaluation, Evaluator};
use crate::train::model::{Gpt, GradNorms};
use crate::train::optim::{lr_at, AdamW};
use crate::train::tracking::checkpoint::{self, Checkpoint, Progress};
use crate::train::tracking::console::Console;
use crate::train::tracking::f32_json;
use crate::train::tracking::guard::{self, Cancel, Outcome, RunEnd};
use crate::train::tracking::sysmetrics::{self, ProcessMetrics, Sampler};
use crate::train::tracking::table::predictions_table;
use crate::train::tracking::uploads::{Upload, Uploads};
use crate::wandb::{safe_artifact_name, ArtifactRef, ArtifactSpec, Row, Run, RunSpec};

/// What one training run needs, resolved by `commands/train.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: TrainConfig,
    pub store: StoreSettings,
    /// Local checkpoints go to `<checkpoints>/<run id>/latest`.
    pub checkpoints: PathBuf,
    /// Where downloaded datasets and checkpoints are kept.
    pub data_cache: PathBuf,
    pub fault: Fault,
}

/// Trains as `settings` say and returns the process exit code: 0 finished, 1 failed, 101
/// panicked, 130 interrupted, 143 terminated (preempted).
pub async fn run(settings: Settings) -> Result<u8> {
    let store = connect::open(&settings.store, Purpose::Training).await?;
    let result = train(&store, settings).await;
    store.close().await;
    result
}

async fn train(store: &Store, settings: Settings) -> Result<u8> {
    let Settings {
        config,
        checkpoints,
        data_cache,
        fault,
        ..
    } = settings;
    let console = Arc::new(Console::new());
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let git = GitFacts::of(&cwd);
    let mut run_config = config.to_wandb_config();
    for (key, value) in [
        (keys::config::BRANCH, json!(git.branch)),
        (keys::config::COMMIT, json!(git.commit)),
        (keys::config::DIRTY, json!(git.dirty)),
        (keys::config::HOST, json!(crate::wandb::hostname())),
        (keys::config::MLWF_VERSION, json!(env!("CARGO_PKG_VERSION"))),
    ] {
        run_config.insert(key.into(), value);
    }
    let run = store
        .client
        .start_run(RunSpec {
            entity: Some(store.entity.clone()),
            project: Some(store.project.clone()),
            notes: config.run.notes.clone(),
            tags: config.run.tags.clone(),
            job_type: Some("train".into()),
            config: run_config,
            commit: git.commit.clone(),
            ..RunSpec::default()
        })
        .await
        .with_context(|| format!("starting a run on the {}", store.location))?;
    let run = Arc::new(run);
    console.attach(run.clone());
    // Where it is stored was said when the store was opened, and the summary says it again.
    console.out(format!(
        "mlwf: run {}/{}/{}",
        run.entity(),
        run.project(),
        run.id()
    ));

    let started = Instant::now();
    let setup = Setup {
        config,
        checkpoints,
        data_cache,
        git,
        run: run.clone(),
        console: console.clone(),
        store,
        fault,
    };
    let end = guard::supervise(run.clone(), console.clone(), |cancel| setup.train(cancel)).await;
    console.finish_progress();
    print_summary(store, &run, &end, started.elapsed());
    // The guard has reported how training ended (in the console and the run's log). A run the
    // server could not finish may have lost data there, which is a failure of the command.
    let code = match (end.exit_code, &end.finish_error) {
        (0, Some(_)) => 1,
        (code, _) => code,
    };
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Everything the supervised part of a run starts from.
struct Setup<'a> {
    config: TrainConfig,
    checkpoints: PathBuf,
    data_cache: PathBuf,
    git: GitFacts,
    run: Arc<Run>,
    console: Arc<Console>,
    store: &'a Store,
    fault: Fault,
}

impl Setup<'_> {
    /// A resumed run's own latest checkpoint (`model-<run id>:latest`), if it has one: a Launch
    /// requeue (or `WANDB_RESUME`) brings a preempted or crashed run back under its id, and
    /// it carries on from there by itself. An explicit `run.resume_from` wins.
    async fn own_checkpoint(&self) -> Result<Option<ResumeFrom>> {
        let run = &self.run;
        if !run.resumed() {
            return Ok(None);
        }
        let reference = ArtifactRef {
            entity: Some(run.entity().to_owned()),
            project: Some(run.project().to_owned()),
            name: keys::checkpoint_artifact(run.id()),
            alias: "latest".to_owned(),
        };
        match self.store.client.artifact(&reference).await {
            Ok(_) => {
                self.console.out(format!(
                    "mlwf: run {} resumes from its latest checkpoint ({})",
                    run.id(),
                    reference
                ));
                Ok(Some(ResumeFrom::Artifact(reference)))
            }
            Err(crate::wandb::Error::NotFound(_)) => Ok(None),
            Err(err) => Err(err).context("looking for the resumed run's checkpoint"),
        }
    }

    /// Loads the data, builds (or resumes) the model on the chosen device and trains it.
    async fn train(self, cancel: Cancel) -> Result<Row> {
        let config = &self.config;
        let client = &self.store.client;
        let cache = &self.data_cache;
        let spec = &config.data.dataset;
        let dataset = data::load(spec, config.data.val_fraction, cache, Some(client)).await?;
        dataset.check_fits(config.model.block_size)?;
        self.record_dataset(spec, &dataset, cache).await?;

        let resume_from = match &config.run.resume_from {
            Some(from) => Some(from.clone()),
            None => self.own_checkpoint().await?,
        };
        let resumed = match &resume_from {
            Some(from) => {
                let downloads = cache.join("checkpoints");
                let ckpt = checkpoint::load(from, Some(client), &downloads).await?;
                Some((from.clone(), ckpt))
            }
            None => None,
        };
        let model_config = config.model.model_config(dataset.tokenizer.vocab_size());
        if let Some((from, ckpt)) = &resumed {
            ensure!(
                ckpt.model == model_config,
                "the checkpoint {from} holds a model {:?}, but this config builds {:?}; resume \
                 with the checkpoint's model.* settings",
                ckpt.model,
                model_config
            );
            ensure!(
                ckpt.tokenizer == dataset.tokenizer,
                "the checkpoint {from} was trained with another vocabulary than dataset {}",
                dataset.name
            );
        }
        let checkpoints = self.checkpoints.clone();

        match device::select(&config.train.device, config.train.precision)? {
            Selected::Cpu { why } => {
                if let Some(why) = why {
                    self.console.out(format!("mlwf: {why}"));
                }
                let model = Gpt::new(model_config, CpuBackend::new(), config.train.seed)?;
                self.fit(model, dataset, resumed, checkpoints, cancel).await
            }
            Selected::Cuda(backend) => {
                self.console.out(format!(
                    "mlwf: training on {} ({}, {} matmuls)",
                    backend
                        .facts()
                        .get(keys::config::DEVICE)
                        .unwrap_or(&Value::Null),
                    backend.gpu_facts().name,
                    backend.precision()
                ));
                let model = Gpt::new(model_config, backend, config.train.seed)?;
                self.fit(model, dataset, resumed, checkpoints, cancel).await
            }
        }
    }

    async fn fit<B: Backend>(
        self,
        model: Gpt<B>,
        dataset: Dataset,
        resumed: Option<(ResumeFrom, Checkpoint)>,
        checkpoints: PathBuf,
        cancel: Cancel,
    ) -> Result<Row> {
        let session = Session::new(self, model, dataset, resumed, checkpoints).await?;
        session.fit(cancel).await
    }

    /// Records the data in the run: its facts in the config, and the run's input artifact
    /// (the artifact itself, or the text logged as a `dataset` artifact).
    async fn record_dataset(
        &self,
        spec: &DatasetSpec,
        dataset: &Dataset,
        cache: &std::path::Path,
    ) -> Result<()> {
        self.run
            .config_update(dataset.facts())
            .await
            .context("recording the dataset in the run config")?;
        match spec {
            DatasetSpec::Artifact(reference) => {
                self.run
                    .use_artifact(reference)
                    .await
                    .with_context(|| format!("recording the use of {reference}"))?;
            }
            _ => {
                // Kept by digest, so the same data is written (and uploaded) once; written
                // beside and renamed, so an interrupted write is never taken for the data.
                let dir = cache.join("logged").join(&dataset.sha256);
                let path = dir.join("data.txt");
                if !path.exists() {
                    let text = dataset.tokenizer.decode(&dataset.train)
                        + &dataset.tokenizer.decode(&dataset.val);
                    let partial = dir.join("data.txt.partial");
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&partial, text))
                        .and_then(|()| std::fs::rename(&partial, &path))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                let spec = ArtifactSpec::new(dataset_artifact_name(&dataset.name), "dataset")
                    .file("data.txt", &path)
                    .metadata(dataset.facts());
                if let Err(err) = self.run.log_artifact(spec).await {
                    self.console.err(format!(
                        "mlwf: warning: could not log the dataset as an artifact: {err:#}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `synthetic-addition:3` → `dataset-synthetic-addition-3`.
fn dataset_artifact_name(name: &str) -> String {
    format!("dataset-{}", safe_artifact_name(name).trim_matches('-'))
}

/// A training run in progress on backend `B`.
struct Session<'a, B: Backend> {
    setup: Setup<'a>,
    model: Gpt<B>,
    data: Dataset,
    evaluator: Evaluator,
    sampler: BatchSampler,
    optimizer: AdamW,
    /// The last evaluation's step and validation loss, and its accuracy where the task has one.
    last_eval: Option<(u64, f32)>,
    last_accuracy: Option<f32>,
    best: Option<(u64, f32)>,
    /// Where this run's latest checkpoint is written.
    checkpoint_dir: PathBuf,
    /// What every checkpoint artifact records besides its step and losses.
    checkpoint_metadata: Row,
    /// Checkpoint uploads in flight, and the step of the newest checkpoint queued.
    uploads: Uploads,
    last_checkpoint: Option<u64>,
    /// Stops sampling system metrics when the session ends, however it ends.
    _system_metrics: Option<Sampler>,
}

impl<'a, B: Backend> Session<'a, B> {
    async fn new(
        setup: Setup<'a>,
        mut model: Gpt<B>,
        data: Dataset,
        resumed: Option<(ResumeFrom, Checkpoint)>,
        checkpoints: PathBuf,
    ) -> Result<Session<'a, B>> {
        let config = &setup.config;
        let seed = config.train.seed;
        let mut facts = model.backend().facts();
        facts.insert(
            keys::config::PARAM_COUNT.into(),
            json!(model.num_parameters()),
        );
        let mut sampler = BatchSampler::new(seed);
        let mut best = None;
        if let Some((from, ckpt)) = &resumed {
            model.load_state(&ckpt.state)?;
            sampler = BatchSampler::resume(seed, ckpt.progress.sampler_draws);
            best = ckpt.progress.best_val_loss.map(|v| (ckpt.state.step, v));
            facts.insert(keys::config::RESUMED_FROM.into(), json!(from.to_string()));
            facts.insert(keys::config::RESUMED_STEP.into(), json!(ckpt.state.step));
            setup.console.out(format!(
                "mlwf: resuming from {from} at step {}",
                ckpt.state.step
            ));
        }
        setup
            .run
            .config_update(facts.clone())
            .await
            .context("recording the device and model in the run config")?;
        let system_metrics = start_system_metrics(&setup, model.backend().metric_sources());
        let evaluator = Evaluator::new(
            &data,
            seed,
            config.train.eval_iters,
            config.train.batch_size,
            config.model.block_size,
            config.train.sample_count,
        );
        let optimizer = config.optim.adamw();
        let mut checkpoint_metadata = facts;
        for (key, value) in [
            (keys::config::BRANCH, json!(setup.git.branch)),
            (keys::config::COMMIT, json!(setup.git.commit)),
            (keys::config::DATASET_NAME, json!(data.name)),
            (keys::config::DATASET_SHA256, json!(data.sha256)),
        ] {
            checkpoint_metadata.insert(key.into(), value);
        }
        Ok(Session {
            checkpoint_dir: checkpoints.join(setup.run.id()).join("latest"),
            setup,
            model,
            data,
            evaluator,
            sampler,
            optimizer,
            last_eval: None,
            last_accuracy: None,
            best,
            checkpoint_metadata,
            uploads: Uploads::default(),
            last_checkpoint: None,
            _system_metrics: system_metrics,
        })
    }

    /// The training loop: steps until `optim.max_iters` or a stop request, evaluating,
    /// logging and checkpointing at their intervals. Returns the final metrics.
    async fn fit(mut self, cancel: Cancel) -> Result<Row> {
        let (t, o) = (
            self.setup.config.train.clone(),
            self.setup.config.optim.clone(),
        );
        let (total, batch, seq) = (
            o.max_iters,
            t.batch_size,
            self.setup.config.model.block_size,
        );
        let start = self.model.steps();
        ensure!(
            start < total,
            "the checkpoint is at step {start}, which is already optim.max_iters = {total}; \
             raise optim.max_iters to train further"
        );
        let console = self.setup.console.clone();
        console.out(format!(
            "mlwf: training {} parameters for {} steps of {batch}×{seq} tokens",
            self.model.num_parameters(),
            total - start
        ));
        if start == 0 {
            let mut row = Row::new();
            self.evaluate(0, &mut row).await?;
            self.log(0, row);
        }
        let bar = console.progress(total, start);
        let mut window = Window::default();
        for step in start..total {
            if let Some(reason) = cancel.requested() {
                console.out(format!(
                    "mlwf: {reason} at step {step}; saving a checkpoint"
                ));
                self.checkpoint(step)?;
                self.finish_uploads().await?;
                return Ok(self.final_metrics(&window));
            }
            let done = step + 1;
            self.setup.fault.before_step(done);
            let begun = Instant::now();
            let lr = lr_at(
                step,
                o.learning_rate as f32,
                o.min_lr as f32,
                o.warmup_iters,
                total,
            );
            let data = self
                .sampler
                .sample(&self.data.source(data::Split::Train), batch, seq)?;
            let want_groups = done.is_multiple_of(t.grad_norm_interval);
            let Step {
                loss,
                grad_norm: norm,
                groups,
            } = train_step(
                &mut self.model,
                &self.optimizer,
                &data,
                (batch, seq),
                lr,
                o.grad_clip as f32,
                want_groups,
            )
            .map_err(|err| {
                let context = if err.is::<NonFiniteLoss>() {
                    format!(
                        "step {done}: training diverged; lower optim.learning_rate (now {}) or \
                         set optim.grad_clip (now {})",
                        o.learning_rate, o.grad_clip
                    )
                } else {
                    format!("training step {done}")
                };
                err.context(context)
            })?;
            window.add(loss, begun.elapsed(), batch * seq);
            bar.set_position(done);

            let mut row = Row::new();
            if done.is_multiple_of(t.log_interval) || done == total {
                let line = window.log(&mut row, lr, norm);
                console.progress_line(&format!("step {done:>6}/{total}"), &line);
            } else if done == start + 1 {
                bar.set_message(format!("loss {loss:.4}"));
            }
            if let Some(groups) = groups {
                for (group, value) in groups.groups {
                    row.insert(keys::metric::grad_norm(&group), f32_json(value));
                }
            }
            if done.is_multiple_of(t.eval_interval) || done == total {
                self.evaluate(done, &mut row).await?;
            }
            self.log(done, row);
            if done.is_multiple_of(t.checkpoint_interval) || done == total {
                self.checkpoint(done)?;
            }
        }
        console.finish_progress();
        self.finish_uploads().await?;
        Ok(self.final_metrics(&window))
    }

    /// Evaluates at `step` into `row`: validation loss, accuracy and the predictions table.
    async fn evaluate(&mut self, step: u64, row: &mut Row) -> Result<()> {
        let Evaluation {
            val_loss,
            accuracy,
            predictions,
        } = self.evaluator.run(&mut self.model, &self.data)?;
        ensure!(
            val_loss.is_finite(),
            "validation loss is {val_loss} at step {step}: the model diverged"
        );
        row.insert(keys::metric::VAL_LOSS.into(), f32_json(val_loss));
        let mut line = format!("val loss {val_loss:.4}");
        if let Some(accuracy) = accuracy {
            row.insert(keys::metric::VAL_ACCURACY.into(), f32_json(accuracy));
            line += &format!(", accuracy {:.1}%", 100.0 * accuracy);
        }
        if !predictions.is_empty() {
            let table = predictions_table(&predictions);
            match table
                .save(&self.setup.run, keys::metric::VAL_PREDICTIONS, step)
                .await
            {
                Ok(value) => {
                    row.insert(keys::metric::VAL_PREDICTIONS.into(), value);
                }
                Err(err) => self.setup.console.err(format!(
                    "mlwf: warning: the predictions table of step {step} was not saved: {err:#}"
                )),
            }
        }
        self.last_eval = Some((step, val_loss));
        self.last_accuracy = accuracy;
        if self.best.is_none_or(|(_, best)| val_loss < best) {
            self.best = Some((step, val_loss));
            self.setup.run.summary_update(Row::from_iter([
                (keys::metric::BEST_VAL_LOSS.to_owned(), f32_json(val_loss)),
                (keys::metric::BEST_STEP.to_owned(), json!(step)),
            ]));
        }
        self.setup.console.out(format!("step {step:>6}  {line}"));
        Ok(())
    }

    /// Logs `row` at training step `step` (so runs compare step for step). A resumed W&B run
    /// whose history is already past `step` drops the row with a warning, as the official
    /// client does.
    fn log(&self, step: u64, row: Row) {
        if row.is_empty() {
            return;
        }
        if let Err(err) = self.setup.run.log_at(step, row) {
            self.setup.console.err(format!(
                "mlwf: warning: metrics of step {step} dropped: {err}"
            ));
        }
    }

    /// Writes the checkpoint of `step` and queues its upload as a version of the run's model
    /// artifact (`best` too when its validation loss is the best so far); training goes on
    /// while it uploads. A checkpoint that cannot be written is a warning, except the last.
    fn checkpoint(&mut self, step: u64) -> Result<()> {
        let at_eval = self.last_eval.filter(|(s, _)| *s == step);
        let ckpt = Checkpoint {
            model: self.model.config().clone(),
            config: self.setup.config.clone(),
            tokenizer: self.data.tokenizer.clone(),
            state: self.model.state()?,
            progress: Progress {
                sampler_draws: self.sampler.draws(),
                val_loss: at_eval.map(|(_, loss)| loss),
                best_val_loss: self.best.map(|(_, loss)| loss),
                run_id: Some(self.setup.run.id().to_owned()),
            },
        };
        let is_best = at_eval.is_some() && self.best.is_some_and(|(s, _)| s == step);
        let aliases = if is_best {
            vec!["best".to_owned()]
        } else {
            Vec::new()
        };
        let dir = self.checkpoint_dir.clone();
        let upload = Upload {
            run: self.setup.run.clone(),
            console: self.setup.console.clone(),
            step,
            aliases,
            metadata: self.checkpoint_metadata.clone(),
        };
        let written = ckpt
            .write(&dir)
            .and_then(|()| self.uploads.push(&dir, upload));
        let last = step == self.setup.config.optim.max_iters;
        match written {
            Ok(()) => {
                self.last_checkpoint = Some(step);
                self.setup.console.out(format!(
                    "mlwf: checkpoint of step {step} in {} (uploading as {})",
                    dir.display(),
                    keys::checkpoint_artifact(self.setup.run.id())
                ));
                Ok(())
            }
            Err(err) if last => {
                Err(err.context(format!("saving the final checkpoint (step {step})")))
            }
            Err(err) => {
                self.setup.console.err(format!(
                    "mlwf: warning: the checkpoint of step {step} was not saved: {err:#}"
                ));
                Ok(())
            }
        }
    }

    /// Waits for the checkpoint uploads. Each failed one was reported as it failed; the newest
    /// one failing fails the run, since it is what a resume would need.
    async fn finish_uploads(&mut self) -> Result<()> {
        let failed = self.uploads.finish().await;
        match failed
            .iter()
            .find(|(step, _)| Some(*step) == self.last_checkpoint)
        {
            Some((step, why)) => Err(anyhow!(
                "the checkpoint of step {step} was not uploaded: {why}"
            )),
            None => Ok(()),
        }
    }

    /// The metrics the end-of-run alert reports, also set in the summary.
    fn final_metrics(&self, window: &Window) -> Row {
        let mut metrics = Row::new();
        metrics.insert(keys::metric::TRAIN_STEPS.into(), json!(self.model.steps()));
        if let Some(loss) = window.last_loss {
            metrics.insert(keys::metric::TRAIN_LOSS.into(), f32_json(loss));
        }
        if let Some((step, loss)) = self.last_eval {
            metrics.insert(keys::metric::VAL_LOSS.into(), f32_json(loss));
            metrics.insert(keys::metric::VAL_STEP.into(), json!(step));
        }
        if let Some(accuracy) = self.last_accuracy {
            metrics.insert(keys::metric::VAL_ACCURACY.into(), f32_json(accuracy));
        }
        if let Some((step, loss)) = self.best {
            metrics.insert(keys::metric::BEST_VAL_LOSS.into(), f32_json(loss));
            metrics.insert(keys::metric::BEST_STEP.into(), json!(step));
        }
        self.setup.run.summary_update(metrics.clone());
        metrics
    }
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// Per-group gradient norms, when asked for.
    pub groups: Option<GradNorms>,
}

/// A training loss of NaN or infinity: the run has diverged.
#[derive(Debug, thiserror::Error)]
#[error("loss is {loss}")]
pub struct NonFiniteLoss {
    pub loss: f32,
}

/// One optimizer step on `batch` (`dims` = sequences × tokens): forward, backward, clip,
/// AdamW. A loss that is not finite fails the step before the weights change; a device that
/// runs out of memory fails it with what to change.
pub fn train_step<B: Backend>(
    model: &mut Gpt<B>,
    optimizer: &AdamW,
    batch: &Batch,
    dims: (usize, usize),
    lr: f32,
    grad_clip: f32,
    group_norms: bool,
) -> Result<Step> {
    let (sequences, seq) = dims;
    let mut step = || -> Result<Step> {
        model.zero_grad()?;
        let loss = model
            .forward(&batch.inputs, Some(&batch.targets), sequences, seq, true)?
            .ok_or_else(|| anyhow!("the model returned no loss for a batch with targets"))?;
        if !loss.is_finite() {
            return Err(NonFiniteLoss { loss }.into());
        }
        model.backward()?;
        let groups = group_norms.then(|| model.grad_norms()).transpose()?;
        let grad_norm = model.step(optimizer, lr, grad_clip)?;
        Ok(Step {
            loss,
            grad_norm,
            groups,
        })
    };
    step().map_err(|err| {
        let out_of_memory = err
            .chain()
            .any(|e| matches!(e.downcast_ref(), Some(DeviceError::OutOfMemory { .. })));
        if out_of_memory {
            err.context(format!(
                "a batch of {sequences} sequences of {seq} tokens does not fit: lower \
                 train.batch_size or model.block_size, or shrink the model"
            ))
        } else {
            err
        }
    })
}

/// System metrics in the background: this process (CPU, memory) and the device's (`device`).
fn start_system_metrics(setup: &Setup<'_>, device: Vec<Box<dyn MetricSource>>) -> Option<Sampler> {
    let mut sources = device;
    match ProcessMetrics::new() {
        Ok(process) => sources.push(Box::new(process)),
        Err(err) => setup
            .console
            .err(format!("mlwf: warning: no process metrics: {err:#}")),
    }
    match Sampler::start(setup.run.clone(), sysmetrics::DEFAULT_INTERVAL, sources) {
        Ok(sampler) => Some(sampler),
        Err(err) => {
            setup
                .console
                .err(format!("mlwf: warning: no system metrics: {err:#}"));
            None
        }
    }
}

/// Training steps since the last logged row: their losses and compute time.
#[derive(Default)]
struct Window {
    steps: u32,
    loss_sum: f64,
    busy: Duration,
    tokens: usize,
    last_loss: Option<f32>,
}

impl Window {
    fn add(&mut self, loss: f32, busy: Duration, tokens: usize) {
        self.steps += 1;
        self.loss_sum += f64::from(loss);
        self.busy += busy;
        self.tokens += tokens;
        self.last_loss = Some(loss);
    }

    /// Puts the window's averages into `row`, starts a new window, and returns a console line.
    fn log(&mut self, row: &mut Row, lr: f32, grad_norm: f32) -> String {
        let steps = self.steps.max(1);
        let loss = (self.loss_sum / f64::from(steps)) as f32;
        let seconds = self.busy.as_secs_f64().max(1e-9);
        let tokens_per_sec = self.tokens as f64 / seconds;
        let step_ms = 1e3 * seconds / f64::from(steps);
        row.insert(keys::metric::TRAIN_LOSS.into(), f32_json(loss));
        row.insert(keys::metric::TRAIN_LR.into(), f32_json(lr));
        row.insert(keys::metric::TRAIN_GRAD_NORM.into(), f32_json(grad_norm));
        row.insert(
            keys::metric::TRAIN_TOKENS_PER_SEC.into(),
            json!(tokens_per_sec.round()),
        );
        row.insert(
            keys::metric::TRAIN_STEP_MS.into(),
            json!((step_ms * 1e3).round() / 1e3),
        );
        if let Some(mb) = sysmetrics::rss_mb() {
            row.insert(keys::metric::MEMORY_MB.into(), json!(mb.round()));
        }
        let last_loss = self.last_loss;
        *self = Self {
            last_loss,
            ..Self::default()
        };
        format!(
            "loss {loss:.4}  lr {lr:.2e}  grad norm {grad_norm:.3}  {step_ms:.1} ms/step  \
             {tokens_per_sec:.0} tok/s"
        )
    }
}

/// Faults the run guard's tests inject into a real training process (`MLWF_FAULT`):
/// `panic-at-step:N` panics just before step `N`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    panic_at_step: Option<u64>,
}

impl Fault {
    pub fn from_env(value: Option<&str>) -> Result<Self> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        let step = value
            .strip_prefix("panic-at-step:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("MLWF_FAULT={value:?} is not panic-at-step:N"))?;
        Ok(Self {
            panic_at_step: Some(step),
        })
    }

    fn before_step(&self, step: u64) {
        if self.panic_at_step == Some(step) {
            panic!("MLWF_FAULT: injected panic before step {step}");
        }
    }
}

/// The one screen a user sees at the end: how the run ended, its numbers, where to look next.
fn print_summary(store: &Store, run: &Run, end: &RunEnd, elapsed: Duration) {
    let (state, metrics) = match &end.outcome {
        Outcome::Finished(metrics) => ("finished".to_owned(), Some(metrics)),
        Outcome::Stopped(reason, metrics) => (format!("stopped: {reason}"), Some(metrics)),
        Outcome::Failed(_) => ("failed".to_owned(), None),
    };
    let mut lines = vec![format!(
        "run {}/{}/{}: {state} (exit code {}) after {:.1} s",
        run.entity(),
        run.project(),
        run.id(),
        end.exit_code,
        elapsed.as_secs_f64()
    )];
    let number = |metrics: &Row, key: &str| metrics.get(key).and_then(Value::as_f64);
    if let Some(metrics) = metrics {
        if let Some(steps) = metrics.get(keys::metric::TRAIN_STEPS) {
            lines.push(format!("  steps         {steps}"));
        }
        for key in [
            keys::metric::TRAIN_LOSS,
            keys::metric::VAL_LOSS,
            keys::metric::VAL_ACCURACY,
        ] {
            if let Some(value) = number(metrics, key) {
                lines.push(format!("  {key:<12}  {value:.4}"));
            }
        }
        if let (Some(loss), Some(step)) = (
            number(metrics, keys::metric::BEST_VAL_LOSS),
            metrics.get(keys::metric::BEST_STEP),
        ) {
            lines.push(format!("  best/val_loss {loss:.4} at step {step}"));
        }
    }
    if let Some(err) = &end.finish_error {
        lines.push(format!("  warning: {err:#}"));
    }
    lines.push(format!("  stored in     the {}", store.location));
    lines.push(format!(
        "  look          mlwf results summary --run {}",
        run.id()
    ));
    eprintln!("{}", lines.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_artifact_names_are_safe() {
        assert_eq!(
            dataset_artifact_name("synthetic-addition:3"),
            "dataset-synthetic-addition-3"
        );
        assert_eq!(
            dataset_artifact_name("file:/data/my text.txt"),
            "dataset-file--data-my-text.txt"
        );
        assert_eq!(dataset_artifact_name("shakespeare"), "dataset-shakespeare");
    }

    #[test]
    fn faults_parse_or_say_what_they_take() {
        assert_eq!(Fault::from_env(None).unwrap(), Fault::default());
        let fault = Fault::from_env(Some("panic-at-step:7")).unwrap();
        assert_eq!(fault.panic_at_step, Some(7));
        assert!(Fault::from_env(Some("panic"))
            .unwrap_err()
            .to_string()
            .contains("panic-at-step:N"));
    }
}
