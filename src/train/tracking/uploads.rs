//! Checkpoint uploads off the hot path: each checkpoint is linked aside (the next one replaces
//! `latest`) and logged as a version of the run's model artifact in the background, while
//! training goes on. Uploads run one after another, so versions keep the order of their steps;
//! the transfer itself retries as every artifact upload does. The run's finish waits for them
//! all ([`Uploads::finish`]), and a failure is reported on the console and in the run's log,
//! with the local copy kept, never dropped silently.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::checkpoint;
use super::console::Console;
use crate::experiment::keys;
use crate::wandb::{Row, Run};

/// The uploads of one run.
#[derive(Default)]
pub struct Uploads {
    /// The newest upload; it waits for the one before it, and so on.
    last: Option<JoinHandle<()>>,
    /// Steps whose upload failed, with why.
    failed: Arc<Mutex<Vec<(u64, String)>>>,
}

/// One checkpoint to upload.
pub struct Upload {
    pub run: Arc<Run>,
    pub console: Arc<Console>,
    pub step: u64,
    pub aliases: Vec<String>,
    pub metadata: Row,
}

impl Uploads {
    /// Links the checkpoint in `dir` aside and uploads it after the uploads queued before it.
    /// Returns once the files are linked: training may overwrite `dir` at once.
    pub fn push(&mut self, dir: &Path, upload: Upload) -> anyhow::Result<()> {
        let staged = stage(dir, upload.step)?;
        let before = self.last.take();
        let failed = self.failed.clone();
        self.last = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let Upload {
                run,
                console,
                step,
                aliases,
                metadata,
            } = upload;
            let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
            match checkpoint::log_artifact(&run, &staged, &aliases, metadata).await {
                Ok(logged) => {
                    let version = logged.version.unwrap_or_else(|| "new version".into());
                    console.out(format!(
                        "mlwf: checkpoint of step {step} uploaded (artifact {}:{version})",
                        keys::checkpoint_artifact(run.id())
                    ));
                    let _ = std::fs::remove_dir_all(&staged);
                }
                Err(err) => {
                    let why = format!("{err:#}");
                    console.err(format!(
                        "mlwf: warning: the checkpoint of step {step} was not uploaded ({why}); \
                         it stays in {}",
                        staged.display()
                    ));
                    lock(&failed).push((step, why));
                }
            }
        }));
        Ok(())
    }

    /// Waits for every queued upload; the steps whose upload failed, with why.
    pub async fn finish(&mut self) -> Vec<(u64, String)> {
        if let Some(last) = self.last.take() {
            let _ = last.await;
        }
        std::mem::take(&mut *lock(&self.failed))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `dir`'s files hard-linked into `upload-step-<N>` beside it: a checkpoint's files are never
/// rewritten in place (a new one is written beside and renamed), so the links keep this one's
/// bytes however soon the next replaces it, at no copying cost.
fn stage(dir: &Path, step: u64) -> anyhow::Result<PathBuf> {
    let staged = dir.with_file_name(format!("upload-step-{step}"));
    if staged.exists() {
        std::fs::remove_dir_all(&staged)
            .with_context(|| format!("removing the stale {}", staged.display()))?;
    }
    std::fs::create_dir_all(&staged).with_context(|| format!("creating {}", staged.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let target = staged.join(entry.file_name());
        std::fs::hard_link(entry.path(), &target)
            .or_else(|_| std::fs::copy(entry.path(), &target).map(drop))
            .with_context(|| format!("staging {} for upload", entry.path().display()))?;
    }
    Ok(staged)
}
