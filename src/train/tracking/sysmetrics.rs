//! System metrics (`system.*` in W&B), sampled on a thread of their own every few seconds,
//! with the key names and units of the official client.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::train::backend::MetricSource;
use crate::wandb::{Row, Run};

/// The official client's default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

const MIB: f64 = 1024.0 * 1024.0;

/// This process and the host: `cpu` (process CPU % of all cores), `proc.memory.rssMB`,
/// `proc.memory.percent`, `proc.memory.availableMB`, `proc.cpu.threads`, `memory_percent`.
pub struct ProcessMetrics {
    system: System,
    pid: Pid,
    cores: f64,
}

impl ProcessMetrics {
    pub fn new() -> anyhow::Result<Self> {
        let pid = sysinfo::get_current_pid()
            .map_err(|err| anyhow::anyhow!("{err}"))
            .context("finding this process for system metrics")?;
        let system = System::new()
            .map_err(|err| anyhow::anyhow!("{err}"))
            .context("reading system information")?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let mut metrics = Self { system, pid, cores };
        // CPU use is a difference between two readings: take the first now.
        metrics.refresh();
        Ok(metrics)
    }

    fn refresh(&mut self) {
        self.system.refresh_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_tasks(),
        );
    }
}

impl MetricSource for ProcessMetrics {
    fn sample(&mut self, row: &mut Row) {
        self.refresh();
        let total = self.system.total_memory() as f64;
        let available = self.system.available_memory() as f64;
        if total > 0.0 {
            row.insert(
                "memory_percent".into(),
                json!(100.0 * (total - available) / total),
            );
            row.insert("proc.memory.availableMB".into(), json!(available / MIB));
        }
        let Some(process) = self.system.process(self.pid) else {
            return;
        };
        // sysinfo counts 100% per core; W&B's `cpu` is a share of the whole machine.
        row.insert(
            "cpu".into(),
            json!(f64::from(process.cpu_usage()) / self.cores),
        );
        let rss = process.memory() as f64;
        row.insert("proc.memory.rssMB".into(), json!(rss / MIB));
        if total > 0.0 {
            row.insert("proc.memory.percent".into(), json!(100.0 * rss / total));
        }
        if let Some(tasks) = process.tasks() {
            // Linux lists the threads besides the main one.
            row.insert("proc.cpu.threads".into(), json!(tasks.len().max(1)));
        }
    }
}

/// A running sampler; [`Sampler::stop`] ends it.
/// Stops sampling when stopped or dropped, so a run that ends by a panic stops it too.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Samples `sources` every `interval` and sends each sample with [`Run::system_metrics`].
    /// The first sample comes one interval after the start.
    pub fn start(
        run: Arc<Run>,
        interval: Duration,
        sources: Vec<Box<dyn MetricSource>>,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mlwf-sysmetrics".into())
            .spawn(move || {
                let mut sources = sources;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let mut row = Row::new();
                    for source in &mut sources {
                        source.sample(&mut row);
                    }
                    if !row.is_empty() {
                        run.system_metrics(row);
                    }
                }
            })
            .context("starting the system metrics thread")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops sampling and waits for the thread (at most one sample in progress).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // A send error means the thread is gone already, which is what stopping wants.
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the system metrics thread panicked");
            }
        }
    }
}

/// This process's resident memory in MiB, for the training log; `None` where it cannot be read.
pub fn rss_mb() -> Option<f64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory(),
    );
    Some(system.process(pid)?.memory() as f64 / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn_cpu() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }

    #[test]
    fn process_metrics_have_the_official_keys_and_sane_values() {
        // CPU time before the first reading and between the two: sysinfo computes no share for
        // a process whose first reading shows no CPU time at all.
        burn_cpu();
        let mut metrics = ProcessMetrics::new().unwrap();
        burn_cpu();
        let mut row = Row::new();
        metrics.sample(&mut row);
        let get = |key: &str| {
            row.get(key)
                .and_then(|v| v.as_f64())
                .unwrap_or_else(|| panic!("no {key} in {row:?}"))
        };
        assert!(get("proc.memory.rssMB") > 1.0);
        assert!((0.0..=100.0).contains(&get("proc.memory.percent")));
        assert!((0.0..=100.0).contains(&get("memory_percent")));
        assert!(get("proc.memory.availableMB") > 0.0);
        let cpu = get("cpu");
        assert!(cpu > 0.0 && cpu <= 100.0, "{cpu}");
        assert!(get("proc.cpu.threads") >= 1.0);
    }
}
