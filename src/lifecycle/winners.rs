//! `mlwf merge-winners`: every open experiment PR whose latest run beats the baseline beyond
//! noise, best first, is marked ready and squash-merged while its checks are green and it still
//! merges cleanly; then the base branch gets the baseline table, the tag `baseline-vN` and a
//! release, and the new baseline's seeds are launched.

use anyhow::Context;
use serde::Serialize;

use super::baseline::{self, BaselineRun, RunSettings};
use super::{notes, Workspace, BRANCH_PREFIX, REMOTE};
use crate::experiment::baseline as contract;
use crate::experiment::compare::{self, Against, BranchComparison};
use crate::experiment::verdict::{Direction, Verdict};
use crate::git::Repo;
use crate::github::{Checks, Pull};
use crate::launch::Progress;

#[derive(Debug, Clone)]
pub struct MergeWinners {
    /// Merge at most this many.
    pub max: Option<usize>,
    /// Launch the new baseline's seeds with this (`None`: say how instead).
    pub baseline_run: Option<RunSettings>,
    pub dry_run: bool,
}

/// One open experiment PR and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Considered {
    pub pr: u64,
    pub branch: String,
    pub title: String,
    pub verdict: Option<String>,
    pub delta_pct: Option<f64>,
    /// `merged`, `would-merge` (dry run) or `skipped`.
    pub outcome: &'static str,
    /// Why it was skipped.
    pub reason: Option<String>,
    pub merge_commit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    pub considered: Vec<Considered>,
    /// The new baseline tag, once something was merged.
    pub tag: Option<String>,
    pub commit: Option<String>,
    pub release_url: Option<String>,
    /// Which notes files were updated.
    pub updated: Vec<String>,
    pub promoted: Option<contract::Promoted>,
    pub baseline_run: Option<BaselineRun>,
    pub dry_run: bool,
}

pub async fn merge(
    ws: &Workspace<'_>,
    settings: &MergeWinners,
    progress: &dyn Progress,
) -> anyhow::Result<Merged> {
    let github = ws.github()?;
    let store = ws.store;
    let (client, entity, project) = (&store.client, &store.entity, &store.project);
    // A complete set of seeds that ended since the last look is the baseline the PRs face.
    let promoted = if settings.dry_run {
        None
    } else {
        contract::promote(client, entity, project).await?
    };
    let pulls: Vec<Pull> = github
        .open_pulls()
        .await?
        .into_iter()
        .filter(|p| p.head.branch.starts_with(BRANCH_PREFIX) && p.base.branch == ws.base)
        .collect();
    let mut considered = Vec::new();
    let mut winners: Vec<(Pull, BranchComparison)> = Vec::new();
    for pull in pulls {
        let compared = compare::branch(
            client,
            entity,
            project,
            &pull.head.branch,
            Against::Baseline(&ws.base),
            &ws.judging,
        )
        .await;
        match compared {
            Ok(c) if c.comparison.verdict == Verdict::Better => winners.push((pull, c)),
            Ok(c) => considered.push(skipped(
                &pull,
                Some(&c),
                format!("{} against the baseline", c.comparison.verdict.as_str()),
            )),
            Err(error) => considered.push(skipped(&pull, None, format!("{error:#}"))),
        }
    }
    let gain = |c: &BranchComparison| {
        let pct = c.comparison.delta_pct.unwrap_or(0.0);
        match ws.judging.direction {
            Direction::Lower => -pct,
            Direction::Higher => pct,
        }
    };
    winners.sort_by(|(_, a), (_, b)| gain(b).total_cmp(&gain(a)));

    let mut merged: Vec<(Pull, BranchComparison, String)> = Vec::new();
    for (pull, comparison) in winners {
        if settings.max.is_some_and(|max| merged.len() >= max) {
            considered.push(skipped(
                &pull,
                Some(&comparison),
                "--max reached".to_owned(),
            ));
            continue;
        }
        let pull = github.pull(pull.number).await?;
        let refusal = match github.checks(&pull.head.sha).await? {
            Checks::Failing(names) => Some(format!("checks failing: {}", names.join(", "))),
            Checks::Pending(names) => Some(format!("checks still running: {}", names.join(", "))),
            Checks::None | Checks::Green => match pull.mergeable {
                Some(true) => None,
                Some(false) if merged.is_empty() => {
                    Some(format!("does not merge cleanly into {}", ws.base))
                }
                Some(false) => Some(format!(
                    "no longer merges cleanly into {} after #{}: rebase it and run it again",
                    ws.base,
                    merged.last().map_or(0, |(p, ..)| p.number)
                )),
                None => Some("GitHub has not computed whether it merges cleanly".to_owned()),
            },
        };
        if let Some(reason) = refusal {
            considered.push(skipped(&pull, Some(&comparison), reason));
            continue;
        }
        if settings.dry_run {
            let mut row = skipped(&pull, Some(&comparison), String::new());
            row.outcome = "would-merge";
            row.reason = None;
            considered.push(row);
            // Only the first can be known to merge cleanly: later ones are checked after it.
            merged.push((pull, comparison, String::new()));
            continue;
        }
        github.mark_ready(&pull).await?;
        let commit = github.squash_merge(&pull).await?;
        let mut row = skipped(&pull, Some(&comparison), String::new());
        row.outcome = "merged";
        row.reason = None;
        row.merge_commit = Some(commit.clone());
        considered.push(row);
        merged.push((pull, comparison, commit));
    }
    considered.sort_by_key(|c| c.pr);
    let mut outcome = Merged {
        considered,
        tag: None,
        commit: None,
        release_url: None,
        updated: Vec::new(),
        promoted,
        baseline_run: None,
        dry_run: settings.dry_run,
    };
    if merged.is_empty() || settings.dry_run {
        if settings.dry_run && !merged.is_empty() {
            outcome.tag = Some(baseline::next_tag(&ws.repo)?);
        }
        return Ok(outcome);
    }

    // The table, the tag and the release of the new baseline.
    let repo = &ws.repo;
    repo.fetch(REMOTE, &[])?;
    let tag = baseline::next_tag(repo)?;
    let numbers: Vec<u64> = merged.iter().map(|(p, ..)| p.number).collect();
    let (commit, updated) = record_baseline(repo, &ws.base, &tag, &numbers, &merged[0].1)?;
    let message = format!("Baseline {tag}: merges {}", hashes(&numbers));
    repo.tag(&tag, &commit, &message)?;
    repo.push(REMOTE, &[&format!("refs/tags/{tag}")])?;
    let entries: Vec<(u64, String, &BranchComparison)> = merged
        .iter()
        .map(|(p, c, _)| (p.number, p.title.clone(), c))
        .collect();
    let release = github
        .create_release(
            &tag,
            &format!("Baseline {tag}"),
            &notes::release(&tag, &entries),
        )
        .await?;
    outcome.tag = Some(tag);
    outcome.commit = Some(commit);
    outcome.release_url = Some(release.html_url);
    outcome.updated = updated;
    if let Some(run) = &settings.baseline_run {
        outcome.baseline_run = Some(baseline::run(ws, run, progress).await?);
    }
    Ok(outcome)
}

fn skipped(pull: &Pull, c: Option<&BranchComparison>, reason: String) -> Considered {
    Considered {
        pr: pull.number,
        branch: pull.head.branch.clone(),
        title: pull.title.clone(),
        verdict: c.map(|c| c.comparison.verdict.as_str().to_owned()),
        delta_pct: c.and_then(|c| c.comparison.delta_pct),
        outcome: "skipped",
        reason: Some(reason),
        merge_commit: None,
    }
}

fn hashes(numbers: &[u64]) -> String {
    let shown: Vec<String> = numbers.iter().map(|n| format!("#{n}")).collect();
    shown.join(", ")
}

/// Today's date (UTC), as the baseline table writes it.
pub fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Commits the new row of the baseline table (`CLAUDE.md` where it has the markers, and
/// `docs/baselines.md`) onto the remote base branch; returns the commit and the files changed.
fn record_baseline(
    repo: &Repo,
    base: &str,
    tag: &str,
    merged: &[u64],
    best: &BranchComparison,
) -> anyhow::Result<(String, Vec<String>)> {
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let dir = scratch.path().join("baseline");
    let head = repo.commit_of(&format!("{REMOTE}/{base}"))?;
    repo.add_detached_worktree(&dir, &head)?;
    let tree = Repo::at(&dir);
    let result = (|| {
        let row = notes::TableRow {
            tag,
            commit: &head,
            merged,
            result: notes::result(best),
            date: today(),
        };
        let mut updated = Vec::new();
        let claude = dir.join(notes::CLAUDE_DOC);
        if let Ok(text) = std::fs::read_to_string(&claude) {
            match notes::with_table_row(&text, &row, notes::CLAUDE_ROWS) {
                Some(new) => {
                    std::fs::write(&claude, new)?;
                    updated.push(notes::CLAUDE_DOC.to_owned());
                }
                None => tracing::warn!(
                    "{} has no baseline table markers ({}): left alone",
                    notes::CLAUDE_DOC,
                    notes::TABLE_START
                ),
            }
        }
        let doc = dir.join(notes::BASELINES_DOC);
        let text = std::fs::read_to_string(&doc).unwrap_or_else(|_| notes::baselines_doc());
        let text = notes::with_table_row(&text, &row, usize::MAX)
            .or_else(|| notes::with_table_row(&notes::baselines_doc(), &row, usize::MAX))
            .context("the baseline table")?;
        if let Some(parent) = doc.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&doc, text)?;
        updated.push(notes::BASELINES_DOC.to_owned());
        let commit = tree.commit_all(&format!("Baseline {tag}: merges {}", hashes(merged)))?;
        tree.push(REMOTE, &[&format!("HEAD:refs/heads/{base}")])
            .with_context(|| format!("pushing the baseline table to {base}"))?;
        anyhow::Ok((commit, updated))
    })();
    if let Err(error) = repo.remove_detached_worktree(&dir) {
        tracing::warn!("could not remove the scratch worktree: {error:#}");
    }
    result
}
