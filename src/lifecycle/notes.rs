//! The text the loop writes: an experiment's design note and PR body, the baseline table that
//! `CLAUDE.md` and `docs/baselines.md` hold between markers, and a baseline's release notes.

use std::path::Path;

use crate::experiment::compare::BranchComparison;
use crate::experiment::verdict::{Direction, Judging};
use crate::github::Issue;

/// The baseline table sits between these lines in `CLAUDE.md` and `docs/baselines.md`.
pub const TABLE_START: &str = "<!-- mlwf:baselines:start -->";
pub const TABLE_END: &str = "<!-- mlwf:baselines:end -->";
const TABLE_HEADER: &str = "| baseline | commit | merged | result | date |\n|---|---|---|---|---|";
/// Rows of the table in `CLAUDE.md` (`docs/baselines.md` keeps them all).
pub const CLAUDE_ROWS: usize = 5;
/// The project's baseline history.
pub const BASELINES_DOC: &str = "docs/baselines.md";
pub const CLAUDE_DOC: &str = "CLAUDE.md";

/// `docs/experiments/<branch>.md`: what the experiment tries and how it is judged.
pub fn experiment(
    idea: &str,
    branch: &str,
    base: &str,
    base_commit: &str,
    issue: Option<&Issue>,
    judging: &Judging,
) -> String {
    let mut text =
        format!("# Experiment: {idea}\n\nBranch `{branch}`, from `{base}` at `{base_commit:.10}`");
    if let Some(issue) = issue {
        text += &format!(", for #{}", issue.number);
    }
    text += ".\n\n## Hypothesis\n\n";
    match issue
        .and_then(|i| i.body.as_deref())
        .filter(|b| !b.trim().is_empty())
    {
        Some(body) => {
            text += &format!(
                "{idea}.\n\nFrom #{}:\n\n{}\n",
                issue.map_or(0, |i| i.number),
                quote(body)
            )
        }
        None => text += &format!("{idea}.\n"),
    }
    let better = match judging.direction {
        Direction::Lower => "lower",
        Direction::Higher => "higher",
    };
    text += &format!(
        "\n## What changes\n\n- (the code or config this branch changes, and why it should help)\n\n\
         ## How it is judged\n\n`mlwf launch` trains this branch; its run is compared with the \
         baseline's seeds on `{metric}` ({better} is better). Beyond the noise band \
         ({noise:.1}% or twice the seeds' spread) it is `better` and `mlwf merge-winners` merges \
         it; within it, it is noise. A failed run gets a diagnosis on the PR: fix it, push, and \
         `mlwf experiment relaunch`.\n",
        metric = judging.metric,
        noise = judging.noise_threshold * 100.0,
    );
    text
}

fn quote(text: &str) -> String {
    text.trim()
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The draft PR's body.
pub fn pull_body(idea: &str, issue: Option<&Issue>, note: &Path) -> String {
    let mut body = format!(
        "**Idea:** {idea}\n\nDesign note: `{}`. The run's report will be posted here by mlwf.\n",
        note.display()
    );
    if let Some(issue) = issue {
        body += &format!("\nCloses #{}\n", issue.number);
    }
    body
}

/// One row of the baseline table.
pub struct TableRow<'a> {
    pub tag: &'a str,
    pub commit: &'a str,
    pub merged: &'a [u64],
    pub result: String,
    pub date: String,
}

impl TableRow<'_> {
    fn markdown(&self) -> String {
        let merged: Vec<String> = self.merged.iter().map(|n| format!("#{n}")).collect();
        format!(
            "| {} | `{:.10}` | {} | {} | {} |",
            self.tag,
            self.commit,
            if merged.is_empty() {
                "-".to_owned()
            } else {
                merged.join(", ")
            },
            self.result,
            self.date
        )
    }
}

/// `text` with `row` first in the table between the markers (at most `keep` rows); `None` when
/// the text has no markers.
pub fn with_table_row(text: &str, row: &TableRow<'_>, keep: usize) -> Option<String> {
    let start = text.find(TABLE_START)?;
    let inner_start = start + TABLE_START.len();
    let end = inner_start + text[inner_start..].find(TABLE_END)?;
    let old_rows: Vec<&str> = text[inner_start..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.starts_with("| baseline |") && !l.starts_with("|---"))
        .collect();
    let mut rows = vec![row.markdown()];
    rows.extend(old_rows.iter().map(|r| (*r).to_owned()));
    rows.truncate(keep);
    Some(format!(
        "{}{TABLE_START}\n{TABLE_HEADER}\n{}\n{}",
        &text[..start],
        rows.join("\n"),
        &text[end..]
    ))
}

/// A new `docs/baselines.md`.
pub fn baselines_doc() -> String {
    format!(
        "# Baselines\n\nEach baseline is a tag `baseline-vN` on `main`, written by `mlwf \
         merge-winners`; its runs are tagged `baseline` in W&B. Roll back with `mlwf baseline \
         rollback --to baseline-vN`.\n\n{TABLE_START}\n{TABLE_HEADER}\n{TABLE_END}\n\n## Rollbacks\n\n"
    )
}

/// A winner's result as the table and the notes name it.
pub fn result(c: &BranchComparison) -> String {
    let value = c
        .comparison
        .value
        .map_or("?".to_owned(), |v| format!("{v:.4}"));
    match c.comparison.delta_pct {
        Some(pct) => format!("{} {value} ({pct:+.1}%)", c.metric),
        None => format!("{} {value}", c.metric),
    }
}

/// The release notes of a new baseline: the merged PRs and their metrics against the baseline.
pub fn release(tag: &str, merged: &[(u64, String, &BranchComparison)]) -> String {
    let mut text =
        format!("Baseline `{tag}`: the winners merged by `mlwf merge-winners`.\n\n## Merged\n\n");
    for (number, title, c) in merged {
        text += &format!("- #{number} {title} (run `{}`)\n", c.run.id);
    }
    text += "\n## Metrics\n\n| PR | metric | run | baseline | Δ | noise | verdict |\n|---|---|---|---|---|---|---|\n";
    let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
    for (number, _, c) in merged {
        let x = &c.comparison;
        text += &format!(
            "| #{number} | {} | {} | {} | {} | ±{} | {} |\n",
            c.metric,
            num(x.value),
            num(x.baseline),
            x.delta_pct.map_or("-".to_owned(), |p| format!("{p:+.2}%")),
            num(x.noise),
            x.verdict.as_str()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(tag: &'a str, merged: &'a [u64]) -> TableRow<'a> {
        TableRow {
            tag,
            commit: "0123456789abcdef",
            merged,
            result: "val/loss 0.8".into(),
            date: "2026-12-04".into(),
        }
    }

    #[test]
    fn the_table_between_markers_gets_the_new_row_first() {
        let text = format!("# P\n\nintro\n{TABLE_START}\n{TABLE_END}\nafter\n");
        let once = with_table_row(&text, &row("baseline-v1", &[]), 5).unwrap();
        let twice = with_table_row(&once, &row("baseline-v2", &[3, 5]), 5).unwrap();
        assert!(twice.starts_with("# P\n\nintro\n"), "{twice}");
        assert!(twice.ends_with(&format!("{TABLE_END}\nafter\n")), "{twice}");
        let rows: Vec<&str> = twice
            .lines()
            .filter(|l| l.starts_with("| baseline-v"))
            .collect();
        assert_eq!(rows.len(), 2, "{twice}");
        assert!(
            rows[0].contains("baseline-v2") && rows[0].contains("#3, #5"),
            "{twice}"
        );
        assert!(rows[1].contains("`0123456789`"), "{twice}");
        let kept = with_table_row(&twice, &row("baseline-v3", &[]), 2).unwrap();
        assert!(!kept.contains("baseline-v1"), "{kept}");
        assert_eq!(with_table_row("no markers", &row("v", &[]), 5), None);
        assert!(with_table_row(&baselines_doc(), &row("baseline-v1", &[]), 99).is_some());
    }
}
