//! Running git in a repository, and what a remote URL is to W&B Launch.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A git work tree (or bare repository) that commands run in.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `git args` and returns its trimmed stdout; a failure carries git's stderr.
    pub fn git<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let output = Command::new("git")
            .args(&args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .with_context(|| format!("running git {} (is git installed?)", shown.join(" ")))?;
        if !output.status.success() {
            bail!(
                "git {} failed in {}: {}",
                shown.join(" "),
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The branch checked out, `None` on a detached HEAD.
    pub fn current_branch(&self) -> Option<String> {
        self.git(["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()
            .filter(|b| !b.is_empty())
    }

    /// The commit `rev` names.
    pub fn commit_of(&self, rev: &str) -> anyhow::Result<String> {
        self.git([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .with_context(|| format!("{rev:?} names no commit in {}", self.dir.display()))
    }

    /// Tracked files that differ from HEAD, as `git status --porcelain` lists them.
    pub fn uncommitted_changes(&self) -> anyhow::Result<Vec<String>> {
        let status = self.git(["status", "--porcelain", "--untracked-files=no"])?;
        Ok(status.lines().map(str::to_owned).collect())
    }

    /// The URL of remote `name`, `None` when there is no such remote.
    pub fn remote_url(&self, name: &str) -> Option<String> {
        self.git(["remote", "get-url", name])
            .ok()
            .filter(|u| !u.is_empty())
    }

    /// The commit branch `branch` is at on remote `remote`, `None` when the remote has no
    /// such branch.
    pub fn remote_branch_commit(
        &self,
        remote: &str,
        branch: &str,
    ) -> anyhow::Result<Option<String>> {
        let listed = self.git([
            "ls-remote",
            "--heads",
            remote,
            &format!("refs/heads/{branch}"),
        ])?;
        Ok(listed
            .lines()
            .find_map(|line| line.split_whitespace().next().map(str::to_owned)))
    }

    /// Whether `ancestor` is reachable from `descendant` (false when either is unknown here).
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.git(["merge-base", "--is-ancestor", ancestor, descendant])
            .is_ok()
    }

    /// Whether `rev` names a commit here.
    pub fn has(&self, rev: &str) -> bool {
        self.commit_of(rev).is_ok()
    }

    /// A new branch `branch` at `base`, checked out in a new work tree at `path`.
    pub fn add_worktree(&self, path: &Path, branch: &str, base: &str) -> anyhow::Result<()> {
        self.git([
            "worktree".as_ref(),
            "add".as_ref(),
            "--quiet".as_ref(),
            "-b".as_ref(),
            OsStr::new(branch),
            path.as_os_str(),
            OsStr::new(base),
        ])
        .map(drop)
    }

    /// A work tree at `path` with `commit` checked out detached (no branch).
    pub fn add_detached_worktree(&self, path: &Path, commit: &str) -> anyhow::Result<()> {
        self.git([
            "worktree".as_ref(),
            "add".as_ref(),
            "--quiet".as_ref(),
            "--detach".as_ref(),
            path.as_os_str(),
            OsStr::new(commit),
        ])
        .map(drop)
    }

    /// Removes the work tree at `path`, uncommitted changes and all.
    pub fn remove_detached_worktree(&self, path: &Path) -> anyhow::Result<()> {
        self.git([
            "worktree".as_ref(),
            "remove".as_ref(),
            "--force".as_ref(),
            path.as_os_str(),
        ])
        .map(drop)
    }

    /// Removes the work tree at `path` and the local branch `branch` (undoing `add_worktree`).
    pub fn remove_worktree(&self, path: &Path, branch: &str) -> anyhow::Result<()> {
        self.remove_detached_worktree(path)?;
        self.git(["branch", "--quiet", "-D", branch]).map(drop)
    }

    /// Commits every change of the work tree (new files too) as `message`; returns the commit.
    pub fn commit_all(&self, message: &str) -> anyhow::Result<String> {
        self.git(["add", "--all"])?;
        self.git(["commit", "--quiet", "--message", message])?;
        self.commit_of("HEAD")
    }

    /// Pushes `refspecs` to `remote`.
    pub fn push(&self, remote: &str, refspecs: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["push", "--quiet", remote];
        args.extend_from_slice(refspecs);
        self.git(args).map(drop)
    }

    /// Fetches `refspecs` from `remote` (its branches and tags by default).
    pub fn fetch(&self, remote: &str, refspecs: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["fetch", "--quiet", "--tags", remote];
        args.extend_from_slice(refspecs);
        self.git(args).map(drop)
    }

    /// The branches of `remote` under `prefix` (e.g. `exp/`) and their commits.
    pub fn remote_branches(
        &self,
        remote: &str,
        prefix: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let listed = self.git([
            "ls-remote",
            "--heads",
            remote,
            &format!("refs/heads/{prefix}*"),
        ])?;
        Ok(listed
            .lines()
            .filter_map(|line| {
                let (commit, name) = line.split_once('\t')?;
                let branch = name.strip_prefix("refs/heads/")?;
                Some((branch.to_owned(), commit.to_owned()))
            })
            .collect())
    }

    /// The tags matching `pattern` (a glob), as `git tag --list` orders them.
    pub fn tags(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let listed = self.git(["tag", "--list", pattern])?;
        Ok(listed.lines().map(str::to_owned).collect())
    }

    /// An annotated tag `name` on `commit`.
    pub fn tag(&self, name: &str, commit: &str, message: &str) -> anyhow::Result<()> {
        self.git(["tag", "--annotate", "--message", message, name, commit])
            .map(drop)
    }

    /// The committer time of `rev`, in seconds since the epoch.
    pub fn commit_time(&self, rev: &str) -> anyhow::Result<i64> {
        let text = self.git(["log", "-1", "--format=%ct", rev])?;
        text.parse()
            .with_context(|| format!("git gave {text:?} as the time of {rev}"))
    }

    /// The commits of `range` along the first parent, newest first, with their subjects.
    pub fn first_parent_log(&self, range: &str) -> anyhow::Result<Vec<(String, String)>> {
        let listed = self.git(["log", "--first-parent", "--format=%H %s", range])?;
        Ok(listed
            .lines()
            .filter_map(|line| {
                let (commit, subject) = line.split_once(' ')?;
                Some((commit.to_owned(), subject.to_owned()))
            })
            .collect())
    }

    /// Reverts `commits` (in the order given) with one commit each.
    pub fn revert(&self, commits: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["revert", "--no-edit"];
        args.extend(commits.iter().map(String::as_str));
        self.git(args).map(drop)
    }
}

/// What a remote URL is to the official Launch agent, which clones only `https://`, `ssh://`
/// and scp-like `user@host:path` remotes and disables git's file protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteForm {
    /// `https://…`, `ssh://…`, `user@host:path`.
    Cloneable,
    /// A path or `file://` URL: only an agent on this machine can clone it.
    Local,
    /// `http://` or `git://`: unencrypted, refused by the official agent.
    Insecure,
}

impl RemoteForm {
    pub fn of(url: &str) -> Self {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("ssh://") {
            return Self::Cloneable;
        }
        if lower.starts_with("http://") || lower.starts_with("git://") {
            return Self::Insecure;
        }
        if lower.starts_with("file://") || url.starts_with('/') || url.starts_with('.') {
            return Self::Local;
        }
        // scp-like: `user@host:path`, where the part before ':' has no '/'.
        match url.split_once(':') {
            Some((host, path)) if host.contains('@') && !host.contains('/') && !path.is_empty() => {
                Self::Cloneable
            }
            _ => Self::Local,
        }
    }
}

/// The host of a remote URL (`github.com` for `https://github.com/o/r.git` and
/// `git@github.com:o/r.git`); `None` for local paths.
pub fn remote_host(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None if RemoteForm::of(url) == RemoteForm::Cloneable => url,
        None => return None,
    };
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_forms_follow_what_the_official_agent_clones() {
        for url in [
            "https://github.com/o/r.git",
            "ssh://git@host:22/r.git",
            "git@github.com:o/r.git",
            "git@localhost:/tmp/x/repo.git",
        ] {
            assert_eq!(RemoteForm::of(url), RemoteForm::Cloneable, "{url}");
        }
        for url in [
            "/srv/repo.git",
            "file:///srv/repo.git",
            "../repo",
            "repo.git",
        ] {
            assert_eq!(RemoteForm::of(url), RemoteForm::Local, "{url}");
        }
        for url in ["http://host/r.git", "git://host/r.git"] {
            assert_eq!(RemoteForm::of(url), RemoteForm::Insecure, "{url}");
        }
    }

    #[test]
    fn hosts_come_from_urls_and_scp_forms() {
        assert_eq!(
            remote_host("https://x:tok@GitHub.com/o/r.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            remote_host("git@github.com:o/r.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            remote_host("http://127.0.0.1:8080/r.git").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(remote_host("/srv/repo.git"), None);
    }
}
