//! The GitHub side of `mlwf analyze`: the REST client (octocrab, `GITHUB_API_URL` honoured),
//! pull-request lookup by head branch, the sticky report comment, labels, and the Actions
//! workflow-command files (`actions`).
//!
//! Only the few fields mlwf reads are deserialised, so GitHub Enterprise servers and API
//! versions that add or drop unrelated fields do not break it.

pub mod actions;
mod pulls;
mod settings;
mod sticky;

use std::time::Duration;

use anyhow::{bail, Context};
use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde_json::json;

use crate::secrets::Secret;

pub use pulls::{Checks, Issue, NewPull, Pull, Ref, Release};
pub use settings::{seal, Change, PublicKey, WorkflowRun};
pub use sticky::{upsert_sticky, StickyOutcome};

/// Comments per page: GitHub's maximum, so a PR with 150 comments takes two requests.
const PER_PAGE: u8 = 100;

/// `owner/name`, validated the way GitHub names repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl std::str::FromStr for Repo {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Repo {
                owner: owner.to_owned(),
                name: name.to_owned(),
            }),
            _ => bail!("{text:?} is not a GitHub repository (expected owner/name)"),
        }
    }
}

impl Repo {
    /// The repository a GitHub remote URL points at (`https://github.com/o/r.git`,
    /// `git@github.com:o/r.git`, `ssh://git@github.com/o/r`), `None` for other forms.
    pub fn from_remote_url(url: &str) -> Option<Self> {
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.split_once('/')?.1,
            None => url.split_once(':')?.1,
        };
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let mut parts = path.rsplitn(3, '/');
        let name = parts.next()?;
        let owner = parts.next()?;
        format!("{owner}/{name}").parse().ok()
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// An open pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
}

/// An issue or PR comment.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Label {
    name: String,
}

/// A GitHub REST client for one repository.
#[derive(Clone)]
pub struct GitHub {
    octo: Octocrab,
    repo: Repo,
}

impl GitHub {
    /// A client for `repo` at `api_url` (`https://api.github.com`, or a GHES `.../api/v3`).
    pub fn new(api_url: &str, token: &Secret, repo: Repo) -> anyhow::Result<Self> {
        let octo = Octocrab::builder()
            .base_uri(api_url)
            .with_context(|| format!("GitHub API URL {api_url:?}"))?
            .personal_token(token.expose_secret().to_owned())
            // Octocrab retries 5xx, 429 and connection errors three times; a hung GitHub must
            // not hold the job until its timeout.
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .context("configuring the GitHub client")?;
        Ok(Self { octo, repo })
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.repo.owner, self.repo.name)
    }

    /// The open PR whose head is `branch` in this repository (not a fork's), if any.
    pub async fn open_pr_for_branch(&self, branch: &str) -> anyhow::Result<Option<PullRequest>> {
        let head = format!("{}:{branch}", self.repo.owner);
        let params = json!({"state": "open", "head": head, "per_page": 10});
        let prs: Vec<PullRequest> = self
            .octo
            .get(self.route("/pulls"), Some(&params))
            .await
            .map_err(describe)
            .with_context(|| format!("looking up the open PR of branch {branch:?}"))?;
        Ok(prs.into_iter().min_by_key(|pr| pr.number))
    }

    /// Every comment of issue or PR `number`, following all pages.
    pub async fn comments(&self, number: u64) -> anyhow::Result<Vec<Comment>> {
        let params = json!({"per_page": PER_PAGE});
        let first: Page<Comment> = self
            .octo
            .get(
                self.route(&format!("/issues/{number}/comments")),
                Some(&params),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("listing the comments of PR #{number}"))?;
        self.octo
            .all_pages(first)
            .await
            .map_err(describe)
            .with_context(|| format!("listing the comments of PR #{number}"))
    }

    pub async fn create_comment(&self, number: u64, body: &str) -> anyhow::Result<Comment> {
        self.octo
            .post(
                self.route(&format!("/issues/{number}/comments")),
                Some(&json!({"body": body})),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("commenting on PR #{number}"))
    }

    pub async fn update_comment(&self, id: u64, body: &str) -> anyhow::Result<Comment> {
        self.octo
            .patch(
                self.route(&format!("/issues/comments/{id}")),
                Some(&json!({"body": body})),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("updating comment {id}"))
    }

    /// Deletes a comment; one already gone (another run removed it) is not an error.
    pub async fn delete_comment(&self, id: u64) -> anyhow::Result<()> {
        let route = self.route(&format!("/issues/comments/{id}"));
        let response = self
            .octo
            ._delete(route.as_str(), None::<&()>)
            .await
            .map_err(describe)
            .with_context(|| format!("deleting comment {id}"))?;
        if response.status().is_success() || response.status().as_u16() == 404 {
            return Ok(());
        }
        octocrab::map_github_error(response)
            .await
            .map(drop)
            .map_err(describe)
            .with_context(|| format!("deleting comment {id}"))
    }

    /// Makes the PR's `mlwf:` labels exactly `wanted` (creating labels the repository lacks),
    /// leaving labels of other tools alone.
    pub async fn set_mlwf_labels(
        &self,
        number: u64,
        wanted: &[&str],
        all: &[(&str, &str, &str)],
    ) -> anyhow::Result<()> {
        let current: Vec<Label> = self
            .octo
            .get(
                self.route(&format!("/issues/{number}/labels")),
                Some(&json!({"per_page": PER_PAGE})),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("reading the labels of PR #{number}"))?;
        for label in &current {
            let ours = all.iter().any(|(name, ..)| *name == label.name);
            if ours && !wanted.contains(&label.name.as_str()) {
                self.remove_label(number, &label.name).await?;
            }
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|w| !current.iter().any(|l| l.name == *w))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for name in &missing {
            if let Some((_, color, description)) = all.iter().find(|(n, ..)| n == name) {
                self.ensure_label(name, color, description).await?;
            }
        }
        let _: Vec<Label> = self
            .octo
            .post(
                self.route(&format!("/issues/{number}/labels")),
                Some(&json!({"labels": missing})),
            )
            .await
            .map_err(describe)
            .with_context(|| format!("labelling PR #{number}"))?;
        Ok(())
    }

    async fn remove_label(&self, number: u64, name: &str) -> anyhow::Result<()> {
        let route = self.route(&format!(
            "/issues/{number}/labels/{}",
            percent_encode_segment(name)
        ));
        let response = self
            .octo
            ._delete(route.as_str(), None::<&()>)
            .await
            .map_err(describe)?;
        if response.status().is_success() || response.status().as_u16() == 404 {
            return Ok(());
        }
        octocrab::map_github_error(response)
            .await
            .map(drop)
            .map_err(describe)
            .with_context(|| format!("removing label {name} from PR #{number}"))
    }

    /// Creates a repository label; one that exists already (422) is fine.
    async fn ensure_label(&self, name: &str, color: &str, description: &str) -> anyhow::Result<()> {
        let body = json!({"name": name, "color": color, "description": description});
        let result: Result<Label, _> = self.octo.post(self.route("/labels"), Some(&body)).await;
        match result {
            Ok(_) => Ok(()),
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 422 => {
                Ok(())
            }
            Err(error) => Err(describe(error)).with_context(|| format!("creating label {name}")),
        }
    }
}

/// Octocrab's errors print a backtrace; keep the status and GitHub's message only.
fn describe(error: octocrab::Error) -> anyhow::Error {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            anyhow::anyhow!("GitHub answered {}: {}", source.status_code, source.message)
        }
        octocrab::Error::Hyper { source, .. } => anyhow::anyhow!("HTTP error: {source}"),
        octocrab::Error::Service { source, .. } => anyhow::anyhow!("cannot reach GitHub: {source}"),
        octocrab::Error::Serde { source, .. } => {
            anyhow::anyhow!("unexpected answer from GitHub: {source}")
        }
        octocrab::Error::Json { source, .. } => {
            anyhow::anyhow!(
                "unexpected answer from GitHub at {}: {}",
                source.path(),
                source.inner()
            )
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// Label names may hold spaces and `:`; a path segment must not.
fn percent_encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_validated() {
        let repo: Repo = "octo-org/my.repo_1".parse().unwrap();
        assert_eq!(repo.owner, "octo-org");
        assert_eq!(repo.to_string(), "octo-org/my.repo_1");
        for bad in ["", "a", "a/", "/b", "a/b/c", "a b/c", "a/$(x)"] {
            assert!(bad.parse::<Repo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn remotes_name_their_repository() {
        for url in [
            "https://github.com/octo/app.git",
            "https://x-access-token:t@github.com/octo/app",
            "git@github.com:octo/app.git",
            "ssh://git@github.com/octo/app/",
        ] {
            let repo = Repo::from_remote_url(url).unwrap();
            assert_eq!(repo.to_string(), "octo/app", "{url}");
        }
        assert_eq!(Repo::from_remote_url("/srv/app.git"), None);
    }

    #[test]
    fn label_names_become_safe_path_segments() {
        assert_eq!(percent_encode_segment("mlwf:better"), "mlwf%3Abetter");
        assert_eq!(percent_encode_segment("a b/c"), "a%20b%2Fc");
    }
}
