//! An experiment's life on the command line: started as a branch with a worktree and a draft PR
//! (`new`), listed with its latest verdict (`list`), relaunched after a fix (`relaunch`), merged
//! when it beats the baseline (`winners`), and the baseline it moves — shown, re-run, rolled
//! back (`baseline`). Each step is git (argument vectors, `git::Repo`), GitHub (the REST
//! client) and the store, in the order that leaves nothing half done.

pub mod baseline;
pub mod jobs;
pub mod list;
pub mod new;
pub mod notes;
pub mod relaunch;
pub mod winners;

use anyhow::Context;

use crate::connect::Store;
use crate::experiment::verdict::Judging;
use crate::git::Repo;
use crate::github::GitHub;

/// The remote experiments are pushed to and merged on.
pub const REMOTE: &str = "origin";
/// Experiment branches are named under this prefix.
pub const BRANCH_PREFIX: &str = "exp/";

/// What every loop step works with, resolved once by the command.
pub struct Workspace<'a> {
    pub store: &'a Store,
    /// The user's checkout.
    pub repo: Repo,
    /// `None` when no GitHub token is set: steps that need GitHub refuse with the fix.
    pub github: Option<GitHub>,
    /// The branch experiments start from and merge into.
    pub base: String,
    pub judging: Judging,
}

impl Workspace<'_> {
    pub fn github(&self) -> anyhow::Result<&GitHub> {
        self.github.as_ref().context(
            "no GitHub token: set GITHUB_TOKEN (a token that may push, open and merge PRs) or \
             pass --github-token",
        )
    }
}
