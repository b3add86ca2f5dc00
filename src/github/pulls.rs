//! What the loop commands do to pull requests, issues and releases: open a draft PR, read its
//! mergeability and checks, mark it ready, squash-merge it, read an issue, publish a release.

use std::time::Duration;

use anyhow::Context;
use octocrab::Page;
use serde::Deserialize;
use serde_json::json;

use super::{describe, GitHub, PER_PAGE};

/// How often, and how long apart, a PR whose mergeability GitHub is still computing is asked
/// again (GitHub computes it in the background after each push).
const MERGEABLE_TRIES: u32 = 10;
const MERGEABLE_WAIT: Duration = Duration::from_millis(500);

/// A pull request as the loop reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: bool,
    pub html_url: String,
    /// The GraphQL id, for what REST cannot do (mark ready for review).
    pub node_id: String,
    pub head: Ref,
    pub base: Ref,
    /// `None` while GitHub is still computing it (only single-PR reads carry it).
    #[serde(default)]
    pub mergeable: Option<bool>,
    #[serde(default)]
    pub merged: bool,
}

/// A PR's head or base.
#[derive(Debug, Clone, Deserialize)]
pub struct Ref {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

/// What a new PR says.
#[derive(Debug, Clone)]
pub struct NewPull<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// An issue's title and body (an experiment's seed).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// Set when the number is a pull request's.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// The checks of a commit, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checks {
    /// No check ran on the commit.
    None,
    /// Every check completed with success, neutral or skipped.
    Green,
    /// Checks still queued or running, by name.
    Pending(Vec<String>),
    /// Checks that completed otherwise (failure, cancelled, timed out…), by name.
    Failing(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct CheckRuns {
    check_runs: Vec<CheckRun>,
}

#[derive(Debug, Deserialize)]
struct CheckRun {
    name: String,
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Merged {
    sha: String,
}

/// A published release.
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    pub html_url: String,
}

impl GitHub {
    /// Every open PR of this repository, following all pages.
    pub async fn open_pulls(&self) -> anyhow::Result<Vec<Pull>> {
        let params = json!({"state": "open", "per_page": PER_PAGE});
        let first: Page<Pull> = self
            .octo
            .get(self.route("/pulls"), Some(&params))
            .await
            .map_err(describe)
            .context("listing the open PRs")?;
        self.octo
            .all_pages(first)
            .await
            .map_err(describe)
            .context("listing the open PRs")
    }

    /// PR `number`, once GitHub knows whether it merges cleanly (`mergeable` stays `None` if it
    /// never says).
    pub async fn pull(&self, number: u64) -> anyhow::Result<Pull> {
        let mut tries = 0;
        loop {
            let pull: Pull = self
                .octo
                .get(self.route(&format!("/pulls/{number}")), None::<&()>)
                .await
                .map_err(describe)
                .with_context(|| format!("reading PR #{number}"))?;
            tries += 1;
            if pull.mergeable.is_some() || pull.merged || tries >= MERGEABLE_TRIES {
                return Ok(pull);
            }
            tokio::time::sleep(MERGEABLE_WAIT).await;
        }
    }

    pub async fn create_pull(&self, new: &NewPull<'_>) -> anyhow::Result<Pull> {
        let body = json!({
            "title": new.title,
            "head": new.head,
            "base": new.base,
            "body": new.body,
            "draft": new.draft,
        });
        self.octo
            .post(self.route("/pulls"), Some(&body))
            .await
            .map_err(describe)
            .with_context(|| format!("opening a PR from {} into {}", new.head, new.base))
    }

    /// Marks a draft PR ready for review (GraphQL: REST cannot).
    pub async fn mark_ready(&self, pull: &Pull) -> anyhow::Result<()> {
        if !pull.draft {
            return Ok(());
        }
        let payload = json!({
            "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: \
                      $id}) { pullRequest { isDraft } } }",
            "variables": {"id": pull.node_id},
        });
        let _: serde_json::Value = self
            .octo
            .graphql(&payload)
            .await
            .map_err(describe)
            .with_context(|| format!("marking PR #{} ready for review", pull.number))?;
        Ok(())
    }

    /// Squash-merges `pull` if its head is still `pull.head.sha`; returns the merge commit.
    pub async fn squash_merge(&self, pull: &Pull) -> anyhow::Result<String> {
        let body = json!({
            "merge_method": "squash",
            "sha": pull.head.sha,
            "commit_title": format!("{} (#{})", pull.title, pull.number),
        });
        let merged: Merged = self
            .octo
            .put(
                self.route(&format!("/pulls/{}/merge", pull.number)),
                Some(&body),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("merging PR #{}", pull.number))?;
        Ok(merged.sha)
    }

    /// The check runs of `commit`.
    pub async fn checks(&self, commit: &str) -> anyhow::Result<Checks> {
        let runs: CheckRuns = self
            .octo
            .get(
                self.route(&format!("/commits/{commit}/check-runs")),
                Some(&json!({"per_page": PER_PAGE})),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("reading the checks of {commit:.10}"))?;
        Ok(summarize_checks(runs.check_runs))
    }

    /// Issue `number`; a pull request's number is refused.
    pub async fn issue(&self, number: u64) -> anyhow::Result<Issue> {
        let issue: Issue = self
            .octo
            .get(self.route(&format!("/issues/{number}")), None::<&()>)
            .await
            .map_err(describe)
            .with_context(|| format!("reading issue #{number} of {}", self.repo))?;
        if issue.pull_request.is_some() {
            anyhow::bail!("#{number} of {} is a pull request, not an issue", self.repo);
        }
        Ok(issue)
    }

    /// Publishes a release of the existing tag `tag`.
    pub async fn create_release(
        &self,
        tag: &str,
        name: &str,
        body: &str,
    ) -> anyhow::Result<Release> {
        let payload = json!({"tag_name": tag, "name": name, "body": body});
        self.octo
            .post(self.route("/releases"), Some(&payload))
            .await
            .map_err(describe)
            .with_context(|| format!("publishing the release of {tag}"))
    }
}

fn summarize_checks(runs: Vec<CheckRun>) -> Checks {
    if runs.is_empty() {
        return Checks::None;
    }
    let pending: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "completed")
        .map(|r| r.name.clone())
        .collect();
    let failing: Vec<String> = runs
        .iter()
        .filter(|r| r.status == "completed")
        .filter(|r| {
            !matches!(
                r.conclusion.as_deref(),
                Some("success" | "neutral" | "skipped")
            )
        })
        .map(|r| r.name.clone())
        .collect();
    if !failing.is_empty() {
        Checks::Failing(failing)
    } else if !pending.is_empty() {
        Checks::Pending(pending)
    } else {
        Checks::Green
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, status: &str, conclusion: Option<&str>) -> CheckRun {
        CheckRun {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_owned),
        }
    }

    #[test]
    fn checks_are_green_only_when_all_completed_well() {
        assert_eq!(summarize_checks(vec![]), Checks::None);
        assert_eq!(
            summarize_checks(vec![
                run("ci", "completed", Some("success")),
                run("lint", "completed", Some("skipped"))
            ]),
            Checks::Green
        );
        assert_eq!(
            summarize_checks(vec![
                run("ci", "in_progress", None),
                run("lint", "completed", Some("success"))
            ]),
            Checks::Pending(vec!["ci".into()])
        );
        assert_eq!(
            summarize_checks(vec![
                run("ci", "in_progress", None),
                run("lint", "completed", Some("failure"))
            ]),
            Checks::Failing(vec!["lint".into()])
        );
    }
}
