//! Which code a run trained: branch, commit and whether the work tree had uncommitted changes.

use std::path::Path;
use std::process::Command;

/// Facts about the git work tree; each is `None` where git cannot tell (no git, no repository,
/// no commit yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitFacts {
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// Tracked files differ from the commit. Untracked files do not count: outputs and data
    /// written into the tree (checkpoints, the `.mlwf` store) would otherwise mark every run.
    pub dirty: Option<bool>,
}

impl GitFacts {
    /// The facts of the work tree containing `dir`.
    pub fn of(dir: &Path) -> Self {
        Self::read(dir, "git", |name| std::env::var(name).ok())
    }

    fn read(dir: &Path, git: &str, env: impl Fn(&str) -> Option<String>) -> Self {
        let run = |args: &[&str]| -> Option<String> {
            let output = Command::new(git)
                .args(args)
                .current_dir(dir)
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let commit = run(&["rev-parse", "--verify", "HEAD"]).filter(|c| !c.is_empty());
        let branch = run(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .filter(|b| !b.is_empty())
            .or_else(|| ci_branch(&env))
            .or_else(|| launched_branch(&env, commit.as_deref()?));
        let dirty = commit
            .as_ref()
            .and_then(|_| run(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|changes| !changes.is_empty());
        Self {
            branch,
            commit,
            dirty,
        }
    }
}

/// CI checks out a detached HEAD; GitHub Actions names the branch in the environment (the pull
/// request's source branch, else the pushed branch).
fn ci_branch(env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    ["GITHUB_HEAD_REF", "GITHUB_REF_NAME"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| !v.is_empty()))
}

/// W&B Launch agents check out the job's commit detached; `mlwf launch` names the branch and
/// its commit in the run config the agent hands over as `WANDB_CONFIG`. The branch counts only
/// for that very commit: a config copied from an older run names someone else's.
fn launched_branch(env: &impl Fn(&str) -> Option<String>, commit: &str) -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(&env("WANDB_CONFIG")?).ok()?;
    (config.get("commit")?.as_str()? == commit)
        .then(|| config.get("branch")?.as_str().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "git {args:?}: {status:?}");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_branch_commit_and_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q", "-b", "feat-x"]);
        // No commit yet: nothing to tell but the branch.
        let facts = GitFacts::read(root, "git", no_env);
        assert_eq!((facts.commit, facts.dirty), (None, None));

        std::fs::write(root.join("a.txt"), "1").unwrap();
        git(root, &["add", "a.txt"]);
        git(root, &["commit", "-q", "-m", "one"]);
        let facts = GitFacts::read(root, "git", no_env);
        assert_eq!(facts.branch.as_deref(), Some("feat-x"));
        assert_eq!(facts.commit.as_ref().map(String::len), Some(40));
        assert_eq!(facts.dirty, Some(false));

        std::fs::write(root.join("untracked.bin"), "x").unwrap();
        assert_eq!(GitFacts::read(root, "git", no_env).dirty, Some(false));
        std::fs::write(root.join("a.txt"), "2").unwrap();
        assert_eq!(GitFacts::read(root, "git", no_env).dirty, Some(true));

        // Detached (as CI checks out): the branch comes from the CI environment.
        git(root, &["checkout", "-q", "--detach"]);
        assert_eq!(GitFacts::read(root, "git", no_env).branch, None);
        let ci = |name: &str| (name == "GITHUB_REF_NAME").then(|| "main".to_owned());
        assert_eq!(
            GitFacts::read(root, "git", ci).branch.as_deref(),
            Some("main")
        );

        // Detached by a launch agent: the launch's config names the branch of this commit.
        let commit = GitFacts::read(root, "git", no_env).commit.unwrap();
        let launched =
            |config: String| move |name: &str| (name == "WANDB_CONFIG").then(|| config.clone());
        let ours = format!(r#"{{"branch": "feat-x", "commit": "{commit}"}}"#);
        let copied = r#"{"branch": "someone-else", "commit": "0123"}"#.to_owned();
        assert_eq!(
            GitFacts::read(root, "git", launched(ours))
                .branch
                .as_deref(),
            Some("feat-x")
        );
        assert_eq!(GitFacts::read(root, "git", launched(copied)).branch, None);
    }

    #[test]
    fn no_repository_or_no_git_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            GitFacts::read(dir.path(), "git", no_env),
            GitFacts::default()
        );
        assert_eq!(
            GitFacts::read(dir.path(), "/nonexistent/git", no_env),
            GitFacts::default()
        );
    }
}
