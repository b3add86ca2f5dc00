//! Every run ends with `finish` and the right exit code, however training ends: success, an
//! error, a panic, SIGTERM (preemption), SIGINT (Ctrl-C) or the Stop button in the W&B UI.
//!
//! A stop request does not kill training: it sets a flag that the loop polls between steps, so
//! the loop can save a checkpoint before returning. A second signal exits at once, because a
//! user pressing Ctrl-C twice wants out even while the final upload retries.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::console::Console;
use crate::wandb::{AlertLevel, Row, Run};

/// Why training was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM: the machine is being taken away; the run is marked preempting.
    Terminate,
    /// The Stop button in the W&B UI.
    Remote,
}

impl StopReason {
    /// The shell's convention for death by signal (128 + signal number); the UI's Stop counts
    /// as an interrupt.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt | Self::Remote => 130,
            Self::Terminate => 143,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Interrupt => 1,
            Self::Terminate => 2,
            Self::Remote => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Interrupt),
            2 => Some(Self::Terminate),
            3 => Some(Self::Remote),
            _ => None,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "interrupted (SIGINT)",
            Self::Terminate => "terminated (SIGTERM, preempted)",
            Self::Remote => "stopped from the W&B UI",
        })
    }
}

/// The stop flag the training loop polls.
#[derive(Clone)]
pub struct Cancel {
    reason: Arc<AtomicU8>,
    run: Arc<Run>,
}

impl Cancel {
    fn new(run: Arc<Run>) -> Self {
        Self {
            reason: Arc::new(AtomicU8::new(0)),
            run,
        }
    }

    /// Why training should stop, if it should: a signal, or the UI's Stop button.
    pub fn requested(&self) -> Option<StopReason> {
        StopReason::from_code(self.reason.load(Ordering::SeqCst))
            .or_else(|| self.run.stopped().then_some(StopReason::Remote))
    }

    /// Asks training to stop; the first reason given sticks.
    pub fn request(&self, reason: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason.code(), Ordering::SeqCst, Ordering::SeqCst);
    }

    fn signalled(&self) -> bool {
        self.reason.load(Ordering::SeqCst) != 0
    }
}

/// How training ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran to the end; the final metrics.
    Finished(Row),
    /// Stopped early on request, after the loop saved what it could.
    Stopped(StopReason, Row),
    Failed(anyhow::Error),
}

/// What [`supervise`] reports once the run is finished.
#[derive(Debug)]
pub struct RunEnd {
    pub exit_code: i32,
    pub outcome: Outcome,
    /// The run could not be finished on the server (its data may be incomplete there).
    pub finish_error: Option<anyhow::Error>,
}

/// The error a stopped run's training ends with, carrying the process exit code.
#[derive(Debug, thiserror::Error)]
#[error("training {reason}; the run was finished with exit code {exit_code}")]
pub struct Stopped {
    pub reason: StopReason,
    pub exit_code: i32,
}

impl RunEnd {
    /// `Ok` for a finished run; otherwise the training error, or [`Stopped`] (which callers
    /// turn into the process exit code).
    pub fn into_result(self) -> anyhow::Result<()> {
        let result = match self.outcome {
            Outcome::Finished(_) => Ok(()),
            Outcome::Stopped(reason, _) => Err(Stopped {
                reason,
                exit_code: self.exit_code,
            }
            .into()),
            Outcome::Failed(err) => Err(err),
        };
        match (result, self.finish_error) {
            (Ok(()), Some(err)) => Err(err),
            (result, _) => result,
        }
    }
}

/// Runs `training` with a stop flag, then finishes `run` with the exit code the ending calls
/// for and sends an alert saying how it ended. SIGTERM and SIGINT are handled from the start
/// until the run is finished.
pub async fn supervise<F, Fut>(run: Arc<Run>, console: Arc<Console>, training: F) -> RunEnd
where
    F: FnOnce(Cancel) -> Fut,
    Fut: Future<Output = anyhow::Result<Row>>,
{
    let cancel = Cancel::new(run.clone());
    let signals = match listen(cancel.clone(), run.clone(), console.clone()) {
        Ok(task) => Some(task),
        Err(err) => {
            console.err(format!(
                "mlwf: cannot watch for SIGTERM/SIGINT ({err:#}); the run is finished only if \
                 training ends by itself"
            ));
            None
        }
    };
    let result = {
        let _hook = PanicToConsole::install(console.clone());
        AssertUnwindSafe(training(cancel.clone()))
            .catch_unwind()
            .await
    };
    let (exit_code, outcome) = match result {
        Ok(Ok(metrics)) => match cancel.requested() {
            None => (0, Outcome::Finished(metrics)),
            Some(reason) => (reason.exit_code(), Outcome::Stopped(reason, metrics)),
        },
        Ok(Err(err)) => (1, Outcome::Failed(err)),
        // Rust's own exit code for a panic.
        Err(panic) => (
            101,
            Outcome::Failed(anyhow::anyhow!(
                "training panicked: {}",
                panic_message(&*panic)
            )),
        ),
    };
    let (title, text, level) = describe(&run, &outcome);
    // The cause goes into the run's log, where the failure report looks for it.
    if let Outcome::Failed(err) = &outcome {
        console.err(format!("error: {err:#}"));
    }
    console.out(format!("mlwf: {title}"));
    if let Err(err) = run.alert(&title, &text, level).await {
        console.err(format!("mlwf: could not send the end-of-run alert: {err}"));
    }
    let finish_error = run
        .finish(exit_code)
        .await
        .map_err(|err| anyhow::Error::new(err).context(format!("finishing run {}", run.id())))
        .err();
    if let Some(task) = signals {
        task.abort();
    }
    RunEnd {
        exit_code,
        outcome,
        finish_error,
    }
}

fn describe(run: &Run, outcome: &Outcome) -> (String, String, AlertLevel) {
    let name = run.display_name().unwrap_or(run.id());
    match outcome {
        Outcome::Finished(metrics) => (
            format!("run {name} finished"),
            metrics_text(metrics),
            AlertLevel::Info,
        ),
        Outcome::Stopped(reason, metrics) => (
            format!("run {name} {reason}"),
            metrics_text(metrics),
            AlertLevel::Warn,
        ),
        Outcome::Failed(err) => (
            format!("run {name} failed"),
            format!("{err:#}"),
            AlertLevel::Error,
        ),
    }
}

/// `key=value` lines, numbers with at most 4 decimals.
fn metrics_text(metrics: &Row) -> String {
    if metrics.is_empty() {
        return "no metrics".into();
    }
    metrics
        .iter()
        .map(|(key, value)| match value {
            Value::Number(n) if n.is_f64() => {
                format!("{key}={:.4}", n.as_f64().unwrap_or(f64::NAN))
            }
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// While installed, panics are reported through the console, so the run's log keeps the panic
/// message and its location (`thread 'main' panicked at src/x.rs:12:5`), as the terminal would
/// show them. The previous hook comes back on drop.
struct PanicToConsole;

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

static PREVIOUS_HOOK: std::sync::Mutex<Option<PanicHook>> = std::sync::Mutex::new(None);

impl PanicToConsole {
    fn install(console: Arc<Console>) -> Self {
        let previous = std::panic::take_hook();
        *PREVIOUS_HOOK.lock().unwrap_or_else(|p| p.into_inner()) = Some(previous);
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            console.err(format!("thread '{name}' {info}"));
        }));
        Self
    }
}

impl Drop for PanicToConsole {
    fn drop(&mut self) {
        let previous = PREVIOUS_HOOK
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(previous) = previous {
            std::panic::set_hook(previous);
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Watches SIGTERM and SIGINT: the first sets the stop flag (SIGTERM also tells W&B the run is
/// being preempted); a second exits the process at once.
#[cfg(unix)]
fn listen(cancel: Cancel, run: Arc<Run>, console: Arc<Console>) -> anyhow::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        loop {
            let reason = tokio::select! {
                Some(()) = term.recv() => StopReason::Terminate,
                Some(()) = int.recv() => StopReason::Interrupt,
                else => return,
            };
            on_signal(&cancel, &run, &console, reason);
        }
    }))
}

#[cfg(not(unix))]
fn listen(cancel: Cancel, run: Arc<Run>, console: Arc<Console>) -> anyhow::Result<JoinHandle<()>> {
    Ok(tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            on_signal(&cancel, &run, &console, StopReason::Interrupt);
        }
    }))
}

fn on_signal(cancel: &Cancel, run: &Run, console: &Console, reason: StopReason) {
    if cancel.signalled() {
        console.err(format!(
            "mlwf: {reason} again: exiting now; run {} stays unfinished",
            run.id()
        ));
        std::process::exit(reason.exit_code());
    }
    if reason == StopReason::Terminate {
        run.mark_preempting();
    }
    console.err(format!(
        "mlwf: {reason}: stopping after the current step and saving a checkpoint \
         (signal again to exit at once)"
    ));
    cancel.request(reason);
}
