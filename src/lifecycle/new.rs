//! `mlwf experiment new`: an idea (or an issue) becomes a branch `exp/<slug>` in its own git
//! worktree, with a short design note as its first commit, pushed, and a draft PR.
//!
//! Everything that can refuse is checked first (a clean tree, a token, a free branch name and
//! folder, the issue); if a step after the first change fails, the steps before it are undone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::{notes, Workspace, BRANCH_PREFIX, REMOTE};
use crate::git::{self, Repo};
use crate::github::{Issue, NewPull};

/// Longest slug taken from an idea, in characters.
const SLUG_LEN: usize = 40;

/// What to start.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    /// The idea in a sentence; `None` with an issue: the issue's title.
    pub idea: Option<String>,
    pub from_issue: Option<u64>,
    /// Where the worktree goes; default `<repo>-worktrees/<slug>` beside the repository.
    pub worktree: Option<PathBuf>,
    pub dry_run: bool,
}

/// A started experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    pub worktree: PathBuf,
    /// The design note, relative to the worktree.
    pub note: PathBuf,
    /// `None` in a dry run.
    pub commit: Option<String>,
    pub pr: Option<u64>,
    pub pr_url: Option<String>,
    pub issue: Option<u64>,
    pub dry_run: bool,
}

pub async fn start(ws: &Workspace<'_>, new: &NewExperiment) -> anyhow::Result<Started> {
    let repo = &ws.repo;
    let changes = repo.uncommitted_changes()?;
    if !changes.is_empty() {
        bail!(
            "the work tree has uncommitted changes ({} files): commit or stash them first, so that \
             the experiment starts from a known base",
            changes.len()
        );
    }
    let github = if new.dry_run && new.from_issue.is_none() {
        ws.github.as_ref()
    } else {
        Some(ws.github()?)
    };
    let issue: Option<Issue> = match (new.from_issue, github) {
        (Some(number), Some(github)) => Some(github.issue(number).await?),
        _ => None,
    };
    let idea = match (&new.idea, &issue) {
        (Some(idea), _) if !idea.trim().is_empty() => idea.trim().to_owned(),
        (_, Some(issue)) => issue.title.trim().to_owned(),
        _ => bail!(
            "say what the experiment tries: `mlwf experiment new \"warm up the learning rate\"`"
        ),
    };
    let slug = slug(&idea);
    if slug.is_empty() {
        bail!(
            "{idea:?} has no letters or digits to name a branch after: describe the idea in words"
        );
    }
    let slug = match new.from_issue {
        Some(number) => format!("{number}-{slug}"),
        None => slug,
    };
    let branch = format!("{BRANCH_PREFIX}{slug}");
    git::valid_branch(&branch)?;

    repo.fetch(REMOTE, &[])
        .with_context(|| format!("fetching {REMOTE} to start from its {}", ws.base))?;
    let base_ref = format!("{REMOTE}/{}", ws.base);
    let base_commit = repo
        .commit_of(&base_ref)
        .with_context(|| format!("{REMOTE} has no branch {:?}: push it first", ws.base))?;
    if repo.has(&format!("refs/heads/{branch}"))
        || repo.remote_branch_commit(REMOTE, &branch)?.is_some()
    {
        bail!(
            "branch {branch:?} exists already: pick another wording for the idea, or work on it \
             (`git worktree add … {branch}`)"
        );
    }
    let worktree = match &new.worktree {
        Some(path) => std::path::absolute(path)?,
        None => default_worktree(repo.dir(), &slug),
    };
    if worktree.exists() {
        bail!(
            "{} exists already: remove it or pass --worktree DIR",
            worktree.display()
        );
    }
    let note = PathBuf::from("docs/experiments").join(format!("{branch}.md"));
    let mut started = Started {
        branch: branch.clone(),
        base: ws.base.clone(),
        base_commit: base_commit.clone(),
        worktree: worktree.clone(),
        note: note.clone(),
        commit: None,
        pr: None,
        pr_url: None,
        issue: new.from_issue,
        dry_run: new.dry_run,
    };
    if new.dry_run {
        return Ok(started);
    }
    let github = github.context("a GitHub client")?;

    repo.add_worktree(&worktree, &branch, &base_commit)?;
    let tree = Repo::at(&worktree);
    let undo_local = || {
        if let Err(error) = repo.remove_worktree(&worktree, &branch) {
            tracing::warn!("could not remove the worktree of {branch}: {error:#}");
        }
    };
    let text = notes::experiment(
        &idea,
        &branch,
        &ws.base,
        &base_commit,
        issue.as_ref(),
        &ws.judging,
    );
    let committed = write_note(&worktree.join(&note), &text)
        .and_then(|()| tree.commit_all(&format!("Start experiment: {idea}")));
    let commit = match committed {
        Ok(commit) => commit,
        Err(error) => {
            undo_local();
            return Err(error.context("writing the experiment's note"));
        }
    };
    if let Err(error) = tree.push(REMOTE, &["--set-upstream", &branch]) {
        undo_local();
        return Err(error.context(format!("pushing {branch}; nothing was left behind")));
    }
    let body = notes::pull_body(&idea, issue.as_ref(), &note);
    let title = format!("Experiment: {idea}");
    let pull = github
        .create_pull(&NewPull {
            title: &title,
            head: &branch,
            base: &ws.base,
            body: &body,
            draft: true,
        })
        .await;
    let pull = match pull {
        Ok(pull) => pull,
        Err(error) => {
            if let Err(undo) = tree.push(REMOTE, &["--delete", &branch]) {
                tracing::warn!("could not delete {branch} from {REMOTE}: {undo:#}");
            }
            undo_local();
            return Err(error.context(format!(
                "opening the draft PR of {branch}; the branch and worktree were removed again"
            )));
        }
    };
    started.commit = Some(commit);
    started.pr = Some(pull.number);
    started.pr_url = Some(pull.html_url);
    Ok(started)
}

fn write_note(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `<parent>/<repo>-worktrees/<slug>`: beside the repository, so its own tree stays clean.
fn default_worktree(root: &Path, slug: &str) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_owned());
    root.parent()
        .unwrap_or(root)
        .join(format!("{name}-worktrees"))
        .join(slug)
}

/// Lower-case words of letters and digits joined by `-`, at most [`SLUG_LEN`] characters, cut
/// at a word boundary.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let extra = if slug.is_empty() { 0 } else { 1 };
        if slug.len() + extra + word.len() > SLUG_LEN {
            if slug.is_empty() {
                slug = word.chars().take(SLUG_LEN).collect();
            }
            break;
        }
        if extra == 1 {
            slug.push('-');
        }
        slug.push_str(&word);
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_lower_case_words() {
        assert_eq!(slug("Warm up the LR (x2)!"), "warm-up-the-lr-x2");
        assert_eq!(slug("  ünïcode & símbols  "), "n-code-s-mbols");
        assert_eq!(slug("$$$"), "");
        let long = slug("a much longer idea that goes on and on beyond forty characters");
        assert!(long.len() <= SLUG_LEN && !long.ends_with('-'), "{long}");
        assert_eq!(slug(&"x".repeat(90)).len(), SLUG_LEN);
    }

    #[test]
    fn worktrees_go_beside_the_repository() {
        assert_eq!(
            default_worktree(Path::new("/src/model"), "lr"),
            PathBuf::from("/src/model-worktrees/lr")
        );
    }
}
