//! Why a run failed: its state, exit code and console log, classified by rules into a cause,
//! the evidence line, and a suggested fix.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

/// What killed a run, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    BuildError,
    OutOfMemory,
    CudaError,
    NonFiniteLoss,
    /// A Rust panic, with `file:line:col` when the message has it.
    Panic {
        location: Option<String>,
    },
    /// Stopped from outside: SIGTERM/SIGKILL, preemption, a user's stop.
    Killed,
    Timeout,
    Unknown,
}

impl Cause {
    pub fn title(&self) -> &'static str {
        match self {
            Cause::BuildError => "build/compile error",
            Cause::OutOfMemory => "out of memory",
            Cause::CudaError => "CUDA error",
            Cause::NonFiniteLoss => "NaN/inf loss",
            Cause::Panic { .. } => "panic",
            Cause::Killed => "killed/preempted",
            Cause::Timeout => "timeout",
            Cause::Unknown => "unknown",
        }
    }

    /// The rule's advice for this cause.
    pub fn suggestion(&self) -> &'static str {
        match self {
            Cause::BuildError => {
                "The job did not compile. Run `cargo build --release --locked` on the branch \
                 and fix the first error shown; check that `Cargo.lock` is committed."
            }
            Cause::OutOfMemory => {
                "Lower `train.batch_size` (or use gradient accumulation), shorten the context \
                 (`model.block_size`), or shrink the model (`model.n_layer`, `model.n_embd`); \
                 on a shared GPU check that nothing else holds memory."
            }
            Cause::CudaError => {
                "Check the driver and CUDA versions on the agent (`nvidia-smi`), run the kernel \
                 tests with the GPU opt-in, and retry on the CPU backend (`backend=cpu`) to see \
                 whether the error is in a kernel."
            }
            Cause::NonFiniteLoss => {
                "Training diverged: lower `optim.learning_rate` (try ÷3), add or lengthen \
                 warm-up, enable gradient clipping (`optim.grad_clip`), and look at \
                 `train/grad_norm` just before the NaN."
            }
            Cause::Panic { .. } => {
                "Open the panic location, reproduce with `RUST_BACKTRACE=1` and the run's \
                 config, and add a test for the failing case."
            }
            Cause::Killed => {
                "The run was stopped from outside (preemption, SIGTERM or a stop request). \
                 Relaunch it; it resumes from its last checkpoint when checkpoints are on."
            }
            Cause::Timeout => {
                "The run hit a time limit. Raise the job's timeout, cut `train.max_steps`, or \
                 check the log for a hang (data loading, a stuck collective)."
            }
            Cause::Unknown => {
                "No rule matched. Read the log tail below; rerun with `MLWF_LOG=debug` for more."
            }
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Panic {
                location: Some(location),
            } => write!(f, "panic at {location}"),
            other => f.write_str(other.title()),
        }
    }
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub cause: Cause,
    /// Index of the log line that decided it, if a line did.
    pub evidence_line: Option<usize>,
}

/// Classifies a failed run from its final state, exit code and console log.
pub fn diagnose(state: &str, exit_code: Option<i64>, log: &str) -> Diagnosis {
    let lines: Vec<&str> = log.lines().collect();
    for (cause, pattern) in rules() {
        // The last matching line is nearest the failure.
        if let Some(index) = lines.iter().rposition(|line| pattern.is_match(line)) {
            let cause = match cause {
                Cause::Panic { .. } => Cause::Panic {
                    location: panic_location(lines[index]),
                },
                other => other.clone(),
            };
            return Diagnosis {
                cause,
                evidence_line: Some(index),
            };
        }
    }
    let cause = match (state, exit_code) {
        ("killed" | "preempted" | "preempting", _) => Cause::Killed,
        (_, Some(130 | 137 | 143)) => Cause::Killed,
        (_, Some(124)) => Cause::Timeout,
        (_, Some(101)) => Cause::Panic { location: None },
        _ => Cause::Unknown,
    };
    Diagnosis {
        cause,
        evidence_line: None,
    }
}

/// Rules in priority order: a NaN run that then panics is a NaN run; an OOM reported through
/// CUDA is an OOM.
fn rules() -> &'static [(Cause, Regex)] {
    static RULES: OnceLock<Vec<(Cause, Regex)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let rules: &[(Cause, &str)] = &[
            (
                Cause::BuildError,
                r"^error\[E\d{4}\]: |could not compile `|^error: linking with|^error: failed to (run custom build|compile)",
            ),
            (
                Cause::OutOfMemory,
                r"(?i)CUDA_ERROR_OUT_OF_MEMORY|out of memory|\bOOM\b|memory allocation of \d+ bytes failed|cannot allocate memory",
            ),
            (
                Cause::CudaError,
                r"CUDA_ERROR_\w+|cudaError\w*|CUBLAS_STATUS_\w+|(?i)\bcuda (driver )?error\b|DriverError\(",
            ),
            (
                Cause::NonFiniteLoss,
                r"(?i)\bloss\b[^\n]{0,40}\b(nan|inf|infinite|non-finite)\b|\b(nan|non-finite)\b[^\n]{0,40}\bloss\b",
            ),
            (Cause::Panic { location: None }, r"panicked at "),
            (
                Cause::Killed,
                r"(?i)\bSIGTERM\b|\bSIGKILL\b|\bpreempted\b|\bstop(ped)? requested\b|\bterminated by signal\b",
            ),
            (
                Cause::Timeout,
                r"(?i)\btimed out\b|\btimeout expired\b|deadline exceeded",
            ),
        ];
        rules
            .iter()
            .map(|(cause, re)| (cause.clone(), Regex::new(re).expect("valid diagnosis rule")))
            .collect()
    })
}

/// `src/x.rs:12:5` from `thread 'main' panicked at src/x.rs:12:5:` (Rust ≥ 1.73) or from the
/// older `panicked at 'msg', src/x.rs:12:5`.
fn panic_location(line: &str) -> Option<String> {
    static LOCATION: OnceLock<Regex> = OnceLock::new();
    let location = LOCATION
        .get_or_init(|| Regex::new(r"([\w./\\-]+\.rs:\d+(:\d+)?)").expect("valid location"));
    location.captures(line).map(|c| c[1].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(log: &str) -> Cause {
        diagnose("failed", Some(1), log).cause
    }

    #[test]
    fn each_rule_recognises_its_failure() {
        assert_eq!(
            cause("Compiling mlwf\nerror[E0308]: mismatched types\n --> src/a.rs:1:1"),
            Cause::BuildError
        );
        assert_eq!(
            cause("step 3\nError: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"),
            Cause::OutOfMemory
        );
        assert_eq!(
            cause("launch failed: CUDA_ERROR_ILLEGAL_ADDRESS"),
            Cause::CudaError
        );
        assert_eq!(
            cause("step 10 loss 2.1\nerror: loss is NaN at step 11\nthread 'main' panicked at src/train/mod.rs:88:9:\nboom"),
            Cause::NonFiniteLoss
        );
        assert_eq!(
            cause("thread 'main' panicked at src/train/model.rs:12:5:\nindex out of bounds"),
            Cause::Panic {
                location: Some("src/train/model.rs:12:5".into())
            }
        );
        assert_eq!(cause("received SIGTERM, saving checkpoint"), Cause::Killed);
        assert_eq!(cause("data loader timed out after 600 s"), Cause::Timeout);
        assert_eq!(cause("something odd"), Cause::Unknown);
    }

    #[test]
    fn state_and_exit_code_decide_when_the_log_is_silent() {
        assert_eq!(diagnose("killed", None, "").cause, Cause::Killed);
        assert_eq!(diagnose("failed", Some(137), "").cause, Cause::Killed);
        assert_eq!(diagnose("failed", Some(124), "").cause, Cause::Timeout);
        assert_eq!(
            diagnose("crashed", Some(101), "").cause,
            Cause::Panic { location: None }
        );
    }

    #[test]
    fn evidence_is_the_line_nearest_the_end() {
        let d = diagnose(
            "failed",
            Some(1),
            "a\nthread 'x' panicked at a.rs:1:1:\nb\nthread 'main' panicked at b.rs:2:3:\n",
        );
        assert_eq!(d.evidence_line, Some(3));
        assert_eq!(d.cause.to_string(), "panic at b.rs:2:3");
    }
}
