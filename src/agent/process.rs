//! A job's process: started in its own process group (so a stop reaches everything it spawned),
//! its output echoed with a prefix and its tail kept for the failure message, stopped by SIGTERM
//! to the group and SIGKILL after a grace period.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::secrets::Redactor;

/// Lines of output kept for a failure message.
const TAIL_LINES: usize = 40;
/// How long output still in the pipes is echoed after the process exited.
const ECHO_DRAIN: Duration = Duration::from_secs(2);

pub struct JobProcess {
    child: Child,
    pid: Option<u32>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: Vec<tokio::task::JoinHandle<()>>,
}

/// What a process was started with.
pub struct Launch<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    pub cwd: &'a Path,
    /// The whole environment: nothing of the agent's is inherited beyond it.
    pub env: &'a [(OsString, OsString)],
    /// Put before each echoed line.
    pub prefix: String,
    pub redactor: Redactor,
}

impl JobProcess {
    pub fn start(launch: Launch<'_>) -> anyhow::Result<Self> {
        let mut command = Command::new(launch.program);
        command
            .args(launch.args)
            .current_dir(launch.cwd)
            .env_clear()
            .envs(launch.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent's. The
        // job dies with the agent even when the agent is SIGKILLed and cannot stop it, so
        // its run goes silent and the server marks it crashed instead of a stray job going on.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", launch.program.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let redactor = Arc::new(launch.redactor);
        let mut echo = Vec::new();
        if let Some(out) = child.stdout.take() {
            echo.push(spawn_echo(
                out,
                launch.prefix.clone(),
                tail.clone(),
                redactor.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            echo.push(spawn_echo(err, launch.prefix, tail.clone(), redactor));
        }
        Ok(Self {
            pid: child.id(),
            child,
            tail,
            echo,
        })
    }

    /// Waits for the process to exit, ends what it left running in its group, and lets its
    /// last output be echoed.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.signal(Signal::Kill);
        for mut task in self.echo.drain(..) {
            if tokio::time::timeout(ECHO_DRAIN, &mut task).await.is_err() {
                task.abort();
            }
        }
        Ok(status)
    }

    /// Asks the whole group to stop (SIGTERM).
    pub fn terminate(&self) {
        self.signal(Signal::Term);
    }

    /// SIGTERM, then SIGKILL to the group if it has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.terminate();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.wait().await.map(|_| status)
            }
            Err(_) => {
                self.signal(Signal::Kill);
                self.wait().await
            }
        }
    }

    /// The last lines the job printed.
    pub fn tail(&self) -> String {
        let tail = self.tail.lock().expect("tail");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn signal(&self, signal: Signal) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let number = match signal {
                Signal::Term => libc::SIGTERM,
                Signal::Kill => libc::SIGKILL,
            };
            // SAFETY: kill(2) with a negative pid signals the process group we created; it
            // touches no memory of ours.
            unsafe {
                libc::kill(-pid, number);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

fn spawn_echo(
    stream: impl AsyncRead + Unpin + Send + 'static,
    prefix: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    redactor: Arc<Redactor>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = redactor.redact(&line);
            println!("{prefix}{line}");
            let mut tail = tail.lock().expect("tail");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str, cwd: &Path) -> JobProcess {
        let path: Vec<(OsString, OsString)> =
            vec![("PATH".into(), std::env::var_os("PATH").unwrap_or_default())];
        JobProcess::start(Launch {
            program: Path::new("/bin/sh"),
            args: &["-c".into(), script.into()],
            cwd,
            env: &path,
            prefix: "[t] ".into(),
            redactor: Redactor::new(["supersecret-token"]),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn output_is_kept_redacted_and_the_exit_code_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = sh("echo one; echo supersecret-token >&2; exit 3", dir.path());
        let status = job.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
        let tail = job.tail();
        assert!(
            tail.contains("one") && tail.contains("[REDACTED]"),
            "{tail}"
        );
        assert!(!tail.contains("supersecret-token"));
    }

    #[tokio::test]
    async fn a_stop_reaches_the_whole_group_and_kills_what_ignores_it() {
        let dir = tempfile::tempdir().unwrap();
        // The child shell ignores SIGTERM and has a grandchild: both must go.
        let mut job = sh("trap '' TERM; sleep 30 & wait", dir.path());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let status = job.stop(Duration::from_millis(300)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!status.success());
    }
}
