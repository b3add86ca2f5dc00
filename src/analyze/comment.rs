//! The sticky PR comment: a hidden report marker, a headline and table of all runs (newest
//! first), then one section per run between hidden markers that carry the section's meta.
//!
//! Merging is by run id and never goes backwards: a section is replaced only by a newer
//! version of the same run, and the headline always describes the newest run, so an old run
//! reported late cannot overwrite a newer one. The body stays under GitHub's 65,536-character
//! limit by trimming the oldest sections first.

use std::fmt::Write as _;

use base64::Engine as _;

use super::markdown::{cell, code};
use super::report::{Section, SectionMeta};

/// Identifies mlwf's report comment on a PR.
pub const MARKER: &str = "<!-- mlwf:report -->";
const SECTION_START: &str = "<!-- mlwf:run ";
const SECTION_END: &str = "<!-- mlwf:end -->";
/// GitHub refuses comments over 65,536 characters; stay clear of it.
pub const MAX_COMMENT_CHARS: usize = 60_000;
/// Runs listed at most; older ones drop out of the comment (they stay on W&B).
const MAX_RUNS: usize = 100;

/// Sections found in comment bodies (unreadable ones are skipped).
pub fn parse(body: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(SECTION_START) {
        let after = &rest[start + SECTION_START.len()..];
        let Some(meta_end) = after.find(" -->") else {
            break;
        };
        let encoded = &after[..meta_end];
        let content = &after[meta_end + " -->".len()..];
        let Some(end) = content.find(SECTION_END) else {
            break;
        };
        if let Some(meta) = decode_meta(encoded) {
            let body = content[..end].trim_matches('\n').to_owned();
            sections.push(Section { meta, body });
        }
        rest = &content[end + SECTION_END.len()..];
    }
    sections
}

fn decode_meta(encoded: &str) -> Option<SectionMeta> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn encode_meta(meta: &SectionMeta) -> String {
    let json = serde_json::to_vec(meta).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// All sections of `existing` comment bodies and `new`, one per run: the newest version of
/// each run wins (a tie keeps what is already posted, so concurrent jobs agree), newest run
/// first.
pub fn merge(existing: &[&str], new: &[Section]) -> Vec<Section> {
    let mut merged: Vec<Section> = Vec::new();
    let incoming = existing
        .iter()
        .flat_map(|body| parse(body))
        .chain(new.iter().cloned());
    for section in incoming {
        match merged.iter_mut().find(|s| s.meta.id == section.meta.id) {
            Some(current) => {
                if section.meta.version.is_newer_than(&current.meta.version) {
                    *current = section;
                }
            }
            None => merged.push(section),
        }
    }
    merged.sort_by(|a, b| (b.meta.created, &b.meta.id).cmp(&(a.meta.created, &a.meta.id)));
    merged.truncate(MAX_RUNS);
    merged
}

/// The comment body for these sections (newest first), trimmed to fit.
pub fn render(sections: &[Section]) -> String {
    let mut sections = sections.to_vec();
    loop {
        let body = render_all(&sections);
        if body.chars().count() <= MAX_COMMENT_CHARS {
            return body;
        }
        // Stub the oldest section that still has details, else drop the oldest run.
        if let Some(section) = sections
            .iter_mut()
            .skip(1)
            .rev()
            .find(|s| !is_stub(&s.body))
        {
            section.body = stub();
        } else if sections.len() > 1 {
            sections.pop();
        } else if let Some(only) = sections.first_mut().filter(|s| !is_stub(&s.body)) {
            only.body = stub();
        } else {
            return body;
        }
    }
}

fn stub() -> String {
    "_Details trimmed to fit GitHub's comment size limit; see the run on W&B._".to_owned()
}

fn is_stub(body: &str) -> bool {
    body == stub()
}

fn render_all(sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKER}");
    let Some(newest) = sections.first() else {
        out.push_str("### mlwf report\n\nNo runs reported yet.\n");
        return out;
    };
    let _ = writeln!(out, "### mlwf report for {}\n", code(&newest.meta.branch));
    let _ = writeln!(
        out,
        "Newest run [{}]({}): {}\n",
        code(&newest.meta.id),
        newest.meta.url,
        newest.meta.headline
    );
    let metric = cell(&newest.meta.metric);
    let _ = writeln!(
        out,
        "| run | state | verdict | {metric} | Δ% vs baseline |\n|---|---|---|---:|---:|"
    );
    for s in sections {
        let m = &s.meta;
        let _ = writeln!(
            out,
            "| [{}]({}) | {} | {} | {} | {} |",
            code(&m.id),
            m.url,
            cell(&m.state),
            m.verdict.badge(),
            m.value.as_deref().map(cell).unwrap_or_else(|| "—".into()),
            m.delta.as_deref().map(cell).unwrap_or_else(|| "—".into()),
        );
    }
    out.push('\n');
    for (i, s) in sections.iter().enumerate() {
        let open = if i == 0 { " open" } else { "" };
        let _ = writeln!(
            out,
            "<details{open}><summary>Run {} — {}</summary>\n{SECTION_START}{} -->\n\n{}\n\n{SECTION_END}\n</details>\n",
            cell(&s.meta.id),
            s.meta.verdict.badge(),
            encode_meta(&s.meta),
            s.body
        );
    }
    out.push_str("\n<sub>Posted by `mlwf analyze`: one comment per PR, updated in place, newest run first.</sub>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::report::RunVersion;
    use crate::experiment::verdict::Verdict;

    /// `version` is `(heartbeat, history lines)`.
    fn section(id: &str, created: i64, version: (i64, u64), body: &str) -> Section {
        Section {
            meta: SectionMeta {
                id: id.into(),
                branch: "feat".into(),
                created,
                version: RunVersion {
                    state: "finished".into(),
                    heartbeat: version.0,
                    history_lines: version.1,
                },
                state: "finished".into(),
                verdict: Verdict::Better,
                metric: "val/loss".into(),
                value: Some("1.0".into()),
                delta: Some("−1.00%".into()),
                url: format!("http://w/{id}"),
                headline: "**better**".into(),
            },
            body: body.into(),
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let sections = vec![
            section("b", 2, (2, 10), "B body"),
            section("a", 1, (1, 5), "A body"),
        ];
        let body = render(&sections);
        assert!(body.starts_with(MARKER));
        assert_eq!(parse(&body), sections);
        // Merging a body with itself changes nothing: the fixed point concurrent jobs reach.
        assert_eq!(render(&merge(&[&body], &[])), body);
        assert_eq!(render(&merge(&[&body], &sections)), body);
    }

    #[test]
    fn newest_run_first_and_old_versions_never_win() {
        let posted = render(&[section("a", 1, (5, 10), "A v2")]);
        let merged = merge(
            &[&posted],
            &[
                section("a", 1, (4, 9), "A v1"),
                section("b", 3, (9, 1), "B"),
            ],
        );
        let ids: Vec<&str> = merged.iter().map(|s| s.meta.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(merged[1].body, "A v2");
        let newer = merge(&[&posted], &[section("a", 1, (6, 12), "A v3")]);
        assert_eq!(newer[0].body, "A v3");
    }

    #[test]
    fn duplicates_fold_into_one_list() {
        let one = render(&[section("a", 1, (1, 1), "A")]);
        let two = render(&[section("b", 2, (1, 1), "B")]);
        let ids: Vec<String> = merge(&[&one, &two], &[])
            .into_iter()
            .map(|s| s.meta.id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[test]
    fn huge_reports_are_trimmed_oldest_first() {
        let big = "x".repeat(35_000);
        let sections: Vec<Section> = (0..5)
            .map(|i| section(&format!("r{i}"), 10 - i, (1, 1), &big))
            .collect();
        let body = render(&sections);
        assert!(body.chars().count() <= MAX_COMMENT_CHARS);
        let parsed = parse(&body);
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[0].body, big, "the newest run keeps its details");
        assert!(parsed[1..].iter().all(|s| is_stub(&s.body)));
        let alone = render(&[section("r", 1, (1, 1), &"y".repeat(70_000))]);
        assert!(alone.chars().count() <= MAX_COMMENT_CHARS);
    }

    #[test]
    fn versions_posted_as_text_by_earlier_releases_still_read() {
        let meta = |version: &str| {
            serde_json::json!({"id": "a", "branch": "b", "created": 1, "version": version,
                "state": "finished", "verdict": "better", "metric": "val/loss", "value": null,
                "delta": null, "url": "u", "headline": "h"})
        };
        let old: SectionMeta = serde_json::from_value(meta("finished:5:10")).unwrap();
        assert_eq!(
            old.version,
            RunVersion {
                state: "finished".into(),
                heartbeat: 5,
                history_lines: 10
            }
        );
        let typed = serde_json::to_value(&old).unwrap();
        assert_eq!(typed["version"]["heartbeat"], 5);
        let back: SectionMeta = serde_json::from_value(typed).unwrap();
        assert_eq!(back, old);
    }

    #[test]
    fn forged_markers_in_bodies_are_not_sections() {
        // Report bodies pass through `neutralize`, so a log line cannot hold a marker; a
        // malformed one is skipped, not fatal.
        assert!(parse("<!-- mlwf:run notbase64 -->x<!-- mlwf:end -->").is_empty());
    }
}
