//! One sticky comment per PR, found by a hidden marker and updated in place.
//!
//! Several `mlwf analyze` jobs may report on the same PR at once (a webhook delivered twice,
//! a scheduled reconcile). There is no lock on GitHub, so the comment converges instead: each
//! job lists every comment, merges all marked ones with its own report into the oldest, deletes
//! the others, and repeats until a pass changes nothing. The merge is deterministic and
//! idempotent, so concurrent jobs agree on the same body and duplicates created by a race are
//! folded back into one.

use anyhow::bail;

use super::GitHub;

/// Passes before giving up; two suffice unless other jobs keep writing.
const MAX_PASSES: usize = 8;

/// The comment as it stands after the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyOutcome {
    pub id: u64,
    pub url: Option<String>,
}

/// Makes PR `number` hold exactly one comment containing `marker`, with the body `merge` makes
/// from the bodies of all marked comments found (oldest first; none on a PR without one).
/// `merge` also returns what the caller wants to know of the merge (e.g. its newest verdict);
/// that of the pass that settled the comment comes back.
pub async fn upsert_sticky<T>(
    github: &GitHub,
    number: u64,
    marker: &str,
    merge: impl Fn(&[&str]) -> (String, T),
) -> anyhow::Result<(StickyOutcome, T)> {
    for _ in 0..MAX_PASSES {
        let mut ours: Vec<_> = github
            .comments(number)
            .await?
            .into_iter()
            .filter(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            .collect();
        ours.sort_by_key(|c| c.id);
        let Some(oldest) = ours.first() else {
            github.create_comment(number, &merge(&[]).0).await?;
            // The next pass checks for a concurrent job's comment.
            continue;
        };
        let bodies: Vec<&str> = ours.iter().filter_map(|c| c.body.as_deref()).collect();
        let (wanted, merged) = merge(&bodies);
        let mut changed = false;
        if oldest.body.as_deref() != Some(wanted.as_str()) {
            github.update_comment(oldest.id, &wanted).await?;
            changed = true;
        }
        for duplicate in &ours[1..] {
            github.delete_comment(duplicate.id).await?;
            changed = true;
        }
        if !changed {
            let outcome = StickyOutcome {
                id: oldest.id,
                url: oldest.html_url.clone(),
            };
            return Ok((outcome, merged));
        }
    }
    bail!("the report comment on PR #{number} kept changing under concurrent updates; gave up after {MAX_PASSES} passes")
}
