//! Launch scaffolding shared by the tests and `mlwf bench agent`: a fake `ssh` that lets the
//! official tools clone `git@localhost:<path>` remotes with no network
//! (`shared/reference/wandb-launch-observed.md` F3), and job artifacts made by hand.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Map;

use crate::wandb::launch::{JobFile, JOB_FILE, JOB_TYPE, REQUIREMENTS_FILE};
use crate::wandb::{ArtifactSpec, Client, RunSpec};

/// Writes the fake ssh into `dir`; children get it as `GIT_SSH_COMMAND` with
/// `GIT_SSH_VARIANT=simple`, which calls it as `fakessh [options] host command`.
pub fn fake_ssh(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("fakessh.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -p|-o|-i|-l) shift 2;; -*) shift;; *) break;; esac; done\nshift\nexec sh -c \"$*\"\n",
    )
    .context("writing the fake ssh")?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The environment that routes git's ssh through [`fake_ssh`].
pub fn fake_ssh_env(fakessh: &Path) -> [(&'static str, String); 2] {
    [
        ("GIT_SSH_COMMAND", fakessh.display().to_string()),
        ("GIT_SSH_VARIANT", "simple".to_owned()),
    ]
}

/// A job to log by hand: a git job at `commit` of `remote`.
pub struct HandMadeJob<'a> {
    pub name: &'a str,
    pub remote: &'a str,
    pub commit: &'a str,
    pub entrypoint: &'a [&'a str],
    /// The `requirements.frozen.txt`, empty for none.
    pub requirements: &'a str,
}

/// Logs `job` from a run of the client's entity and project, with the two files the official
/// agent needs, written in `files`; returns `entity/project/name:vN`.
pub async fn log_job(
    client: &Client,
    job: &HandMadeJob<'_>,
    files: &Path,
) -> anyhow::Result<String> {
    let HandMadeJob {
        name,
        remote,
        commit,
        entrypoint,
        requirements,
    } = *job;
    let entrypoint = entrypoint.iter().map(|s| (*s).to_owned()).collect();
    let job = JobFile::git(remote, commit, entrypoint, &Map::new());
    std::fs::create_dir_all(files)?;
    std::fs::write(files.join(JOB_FILE), serde_json::to_vec(&job)?)?;
    std::fs::write(files.join(REQUIREMENTS_FILE), requirements)?;
    let run = client
        .start_run(RunSpec {
            job_type: Some("cli_create_job".into()),
            ..RunSpec::default()
        })
        .await?;
    let logged = run
        .log_artifact(
            ArtifactSpec::new(name, JOB_TYPE)
                .file(JOB_FILE, files.join(JOB_FILE))
                .file(REQUIREMENTS_FILE, files.join(REQUIREMENTS_FILE)),
        )
        .await?;
    run.finish(0).await?;
    Ok(format!(
        "{}/{}/{name}:{}",
        run.entity(),
        run.project(),
        logged.version.context("the job got no version")?
    ))
}
