//! What the trainer prints goes to the terminal and to the run's console log (`output.log`).
//!
//! A progress bar redraws many times a second; those redraws stay on the terminal only. The W&B
//! log gets the lines the trainer prints on purpose (one per `log_interval`), so the run page
//! reads like a clean log instead of a terminal recording. Lines printed before the run exists
//! (config, data loading) are kept and sent when it is attached.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::wandb::{Run, Stream};

#[derive(Default)]
struct State {
    run: Option<Arc<Run>>,
    /// Lines printed before a run was attached.
    pending: Vec<(String, Stream)>,
    bar: Option<ProgressBar>,
}

/// The trainer's printer. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Default)]
pub struct Console {
    state: Mutex<State>,
}

impl Console {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the lines printed so far to `run`, and every later line as it is printed.
    pub fn attach(&self, run: Arc<Run>) {
        let mut state = self.lock();
        for (line, stream) in state.pending.drain(..) {
            run.console(&line, stream);
        }
        state.run = Some(run);
    }

    /// Prints a line to stdout and the run's log.
    pub fn out(&self, line: impl AsRef<str>) {
        self.print(line.as_ref(), Stream::Stdout);
    }

    /// Prints a line to stderr and the run's log (where W&B marks it as an error line).
    pub fn err(&self, line: impl AsRef<str>) {
        self.print(line.as_ref(), Stream::Stderr);
    }

    fn print(&self, line: &str, stream: Stream) {
        let mut state = self.lock();
        let write = || {
            // A closed terminal must not stop training; the run's log still gets the line.
            let _ = match stream {
                Stream::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
                Stream::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
            };
        };
        match &state.bar {
            // Clears the bar, prints above it, and draws it again.
            Some(bar) => bar.suspend(write),
            None => write(),
        }
        match &state.run {
            Some(run) => run.console(line, stream),
            None => state.pending.push((line.to_owned(), stream)),
        }
    }

    /// A training progress line, `step` then `details` (loss, tok/s): on a terminal the details
    /// become the progress bar's message (the bar shows the step), so the terminal shows one
    /// live bar with the evaluations above it; piped (or under CI) the line is printed plain.
    /// The run's log gets the line either way.
    pub fn progress_line(&self, step: &str, details: &str) {
        let line = format!("{step}  {details}");
        let mut state = self.lock();
        let Some(bar) = state.bar.as_ref().filter(|bar| !bar.is_hidden()).cloned() else {
            drop(state);
            return self.out(line);
        };
        bar.set_message(details.to_owned());
        match &state.run {
            Some(run) => run.console(&line, Stream::Stdout),
            None => state.pending.push((line, Stream::Stdout)),
        }
    }

    /// Starts a progress bar over `len` steps at `position`, drawn on stderr when it is a
    /// terminal. Its redraws never reach the run's log.
    pub fn progress(&self, len: u64, position: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style);
        bar.set_position(position);
        bar.enable_steady_tick(Duration::from_millis(500));
        let mut state = self.lock();
        if let Some(old) = state.bar.replace(bar.clone()) {
            old.finish_and_clear();
        }
        bar
    }

    /// Removes the progress bar from the terminal.
    pub fn finish_progress(&self) {
        if let Some(bar) = self.lock().bar.take() {
            bar.finish_and_clear();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Printing never leaves the state half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
