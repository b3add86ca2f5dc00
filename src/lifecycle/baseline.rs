//! `mlwf baseline show|run|rollback`. A baseline is a commit of the base branch tagged
//! `baseline-vN` in git, and the finished runs of that commit tagged `baseline` in W&B.

use anyhow::{bail, Context};
use serde::Serialize;

use super::jobs::{self, JobTemplate};
use super::{notes, Workspace, REMOTE};
use crate::experiment::baseline::{self as contract, Promoted, CANDIDATE_TAG, SEEDS_TAG_PREFIX};
use crate::git::Repo;
use crate::github::NewPull;
use crate::launch::{self, Launched, Outcome, Progress};

/// Git tags of baselines: `baseline-v1`, `baseline-v2`, …
pub const TAG_PREFIX: &str = "baseline-v";

/// The baseline as `baseline show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub run: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// The `baseline-vN` tags on its commit.
    pub tags: Vec<String>,
    pub metric: String,
    /// `(run, value)` of each seed, the baseline run first.
    pub seeds: Vec<(String, f64)>,
    pub tagged: bool,
}

pub async fn show(ws: &Workspace<'_>) -> anyhow::Result<Option<Shown>> {
    let store = ws.store;
    let metric = &ws.judging.metric;
    let Some(found) = contract::find(
        &store.client,
        &store.entity,
        &store.project,
        &ws.base,
        metric,
        "",
    )
    .await?
    else {
        return Ok(None);
    };
    let commit = contract::code_of(&found.run);
    if let Err(error) = ws.repo.fetch(REMOTE, &[]) {
        tracing::warn!("could not fetch {REMOTE}'s tags: {error:#}");
    }
    let tags = match &commit {
        Some(commit) => tags_of(&ws.repo, commit),
        None => Vec::new(),
    };
    Ok(Some(Shown {
        tagged: found
            .run
            .tags
            .iter()
            .any(|t| t == crate::experiment::BASELINE_TAG),
        run: found.run.id.clone(),
        branch: crate::experiment::compare::branch_of(&found.run),
        commit,
        tags,
        metric: metric.clone(),
        seeds: found.seeds,
    }))
}

/// The `baseline-vN` tags on `commit`, as far as this clone knows them.
fn tags_of(repo: &Repo, commit: &str) -> Vec<String> {
    let pattern = format!("{TAG_PREFIX}*");
    repo.git(["tag", "--list", &pattern, "--points-at", commit])
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The numbers of the `baseline-vN` tags, ascending.
fn versions(repo: &Repo) -> anyhow::Result<Vec<u32>> {
    let mut numbers: Vec<u32> = repo
        .tags(&format!("{TAG_PREFIX}*"))?
        .iter()
        .filter_map(|t| t.strip_prefix(TAG_PREFIX)?.parse().ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// The next baseline tag.
pub fn next_tag(repo: &Repo) -> anyhow::Result<String> {
    let last = versions(repo)?.last().copied().unwrap_or(0);
    Ok(format!("{TAG_PREFIX}{}", last + 1))
}

/// Tags `commit` as the next baseline and pushes the tag; returns the tag.
pub fn tag_next(repo: &Repo, commit: &str, message: &str) -> anyhow::Result<String> {
    let tag = next_tag(repo)?;
    repo.tag(&tag, commit, message)?;
    repo.push(REMOTE, &[&format!("refs/tags/{tag}")])
        .with_context(|| format!("pushing tag {tag}"))?;
    Ok(tag)
}

/// What `baseline run` launches.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub seeds: usize,
    pub template: JobTemplate,
    /// Wait for the seeds and promote them.
    pub wait: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineRun {
    pub commit: String,
    pub tag: String,
    /// The tag was made by this run (the commit had none).
    pub tagged_now: bool,
    pub launched: Vec<Launched>,
    pub promoted: Option<Promoted>,
    pub dry_run: bool,
}

/// Launches the base branch's pushed commit `seeds` times as baseline candidates, tagging the
/// commit `baseline-vN` if it has no such tag yet.
pub async fn run(
    ws: &Workspace<'_>,
    settings: &RunSettings,
    progress: &dyn Progress,
) -> anyhow::Result<BaselineRun> {
    if settings.seeds == 0 {
        bail!("--seeds 0 launches nothing: give 1 or more");
    }
    let repo = &ws.repo;
    repo.fetch(REMOTE, &[])?;
    let commit = repo
        .commit_of(&format!("{REMOTE}/{}", ws.base))
        .with_context(|| format!("{REMOTE} has no branch {:?}", ws.base))?;
    let sets = |seed: usize| {
        vec![
            format!("train.seed={seed}"),
            format!(
                "run.tags={CANDIDATE_TAG},{SEEDS_TAG_PREFIX}{}",
                settings.seeds
            ),
        ]
    };
    // Every launch is checked before the first is pushed.
    let planned: Vec<launch::LaunchSettings> = (1..=settings.seeds)
        .map(|seed| {
            jobs::settings(
                repo.dir(),
                Some(&ws.base),
                &settings.template,
                &sets(seed),
                None,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let existing = tags_of(repo, &commit);
    let (tag, tagged_now) = match existing.last() {
        Some(tag) => (tag.clone(), false),
        None if settings.dry_run => (next_tag(repo)?, true),
        None => {
            let message = format!("Baseline: {} at {commit:.10}", ws.base);
            (tag_next(repo, &commit, &message)?, true)
        }
    };
    let mut outcome = BaselineRun {
        commit,
        tag,
        tagged_now,
        launched: Vec::new(),
        promoted: None,
        dry_run: settings.dry_run,
    };
    if settings.dry_run {
        return Ok(outcome);
    }
    fast_forward(repo, &ws.base)?;
    for launch_settings in &planned {
        outcome
            .launched
            .push(launch::launch(ws.store, launch_settings).await?);
    }
    if settings.wait {
        for launched in &outcome.launched {
            if let Outcome::Failed { .. } | Outcome::Gone =
                launch::wait(ws.store, launched, progress).await?
            {
                tracing::warn!("baseline seed item {} did not run", launched.item);
            }
        }
        let store = ws.store;
        outcome.promoted = contract::promote(&store.client, &store.entity, &store.project).await?;
    }
    Ok(outcome)
}

/// Brings the local base branch up to the remote's (launches run the local branch's commit,
/// which must be the pushed one); refuses when it has commits of its own.
pub fn fast_forward(repo: &Repo, base: &str) -> anyhow::Result<()> {
    let remote = format!("{REMOTE}/{base}");
    let target = repo.commit_of(&remote)?;
    let local = format!("refs/heads/{base}");
    if !repo.has(&local) {
        return repo.git(["branch", base, &target]).map(drop);
    }
    if repo.commit_of(&local)? == target {
        return Ok(());
    }
    if !repo.is_ancestor(&local, &target) {
        bail!(
            "local {base} has commits that are not on {REMOTE}: push or reset them first \
             (`git -C {} log {remote}..{base}`)",
            repo.dir().display()
        );
    }
    if repo.current_branch().as_deref() == Some(base) {
        repo.git(["merge", "--quiet", "--ff-only", &remote])
            .map(drop)
    } else {
        repo.git(["fetch", "--quiet", ".", &format!("{remote}:{base}")])
            .map(drop)
    }
}

/// What `baseline rollback` does.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// `None`: the baseline before the current one.
    pub to: Option<String>,
    pub reason: Option<String>,
    pub merge: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub to: String,
    pub commit: String,
    /// The base branch's commits undone, newest first, with their subjects.
    pub reverted: Vec<(String, String)>,
    pub branch: String,
    pub pr: Option<u64>,
    pub pr_url: Option<String>,
    pub merged: Option<String>,
    /// The runs now tagged `baseline`; `None` when the tag's commit has no finished run.
    pub baseline: Option<Promoted>,
    pub dry_run: bool,
}

/// Opens a PR that reverts the base branch's commits since baseline `to` (never a force-push),
/// merges it with `--merge`, and moves the `baseline` tag back to that baseline's runs.
pub async fn rollback(ws: &Workspace<'_>, settings: &Rollback) -> anyhow::Result<RolledBack> {
    let github = ws.github()?;
    let repo = &ws.repo;
    repo.fetch(REMOTE, &[])?;
    let numbers = versions(repo)?;
    let to = match &settings.to {
        Some(tag) => tag.clone(),
        None => match numbers.as_slice() {
            [.., before, _] => format!("{TAG_PREFIX}{before}"),
            _ => bail!("there is no earlier baseline to roll back to (tags: {numbers:?}); name one with --to"),
        },
    };
    let commit = repo
        .commit_of(&format!("refs/tags/{to}"))
        .with_context(|| {
            format!("there is no tag {to:?}: `git tag --list '{TAG_PREFIX}*'` lists the baselines")
        })?;
    let head = format!("{REMOTE}/{}", ws.base);
    let reverted = repo.first_parent_log(&format!("{commit}..{head}"))?;
    if reverted.is_empty() {
        bail!("{} is at {to} already: nothing to roll back", ws.base);
    }
    let branch = format!("rollback/{to}-{:.7}", repo.commit_of(&head)?);
    let mut outcome = RolledBack {
        to: to.clone(),
        commit: commit.clone(),
        reverted: reverted.clone(),
        branch: branch.clone(),
        pr: None,
        pr_url: None,
        merged: None,
        baseline: None,
        dry_run: settings.dry_run,
    };
    if settings.dry_run {
        return Ok(outcome);
    }
    let reason = settings
        .reason
        .clone()
        .unwrap_or_else(|| "no reason given".to_owned());
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let tree_dir = scratch.path().join("rollback");
    repo.add_worktree(&tree_dir, &branch, &head)?;
    let tree = Repo::at(&tree_dir);
    let result = async {
        let commits: Vec<String> = reverted.iter().map(|(c, _)| c.clone()).collect();
        tree.revert(&commits)?;
        record_rollback(&tree, &to, &reverted, &reason)?;
        tree.push(REMOTE, &[&branch])?;
        let title = format!("Roll back {} to {to}", ws.base);
        let body = rollback_body(&to, &reverted, &reason);
        github
            .create_pull(&NewPull {
                title: &title,
                head: &branch,
                base: &ws.base,
                body: &body,
                draft: false,
            })
            .await
    }
    .await;
    if let Err(error) = repo.remove_worktree(&tree_dir, &branch) {
        tracing::warn!("could not remove the rollback worktree: {error:#}");
    }
    let pull = result.context("opening the rollback PR")?;
    outcome.pr = Some(pull.number);
    outcome.pr_url = Some(pull.html_url.clone());
    if settings.merge {
        let pull = github.pull(pull.number).await?;
        outcome.merged = Some(github.squash_merge(&pull).await?);
    }
    let retire: Vec<String> = reverted.iter().map(|(c, _)| c.clone()).collect();
    let store = ws.store;
    outcome.baseline = contract::move_to(
        &store.client,
        &store.entity,
        &store.project,
        &commit,
        &retire,
    )
    .await?;
    Ok(outcome)
}

/// Appends the rollback and its reason to `docs/baselines.md` and commits it.
fn record_rollback(
    tree: &Repo,
    to: &str,
    reverted: &[(String, String)],
    reason: &str,
) -> anyhow::Result<()> {
    let path = tree.dir().join(notes::BASELINES_DOC);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| notes::baselines_doc());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let commits: Vec<String> = reverted.iter().map(|(c, _)| format!("`{c:.10}`")).collect();
    text += &format!(
        "- {}: rolled back to {to}, reverting {}. Why: {reason}\n",
        super::winners::today(),
        commits.join(", ")
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    tree.commit_all(&format!("Record the rollback to {to}"))
        .map(drop)
}

fn rollback_body(to: &str, reverted: &[(String, String)], reason: &str) -> String {
    let mut body = format!(
        "Rolls the baseline back to `{to}` by reverting the merges since (no force-push).\n\n\
         **Why:** {reason}\n\n## Reverted\n\n"
    );
    for (commit, subject) in reverted {
        body += &format!("- `{commit:.10}` {subject}\n");
    }
    body
}
