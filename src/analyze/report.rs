//! One run's report section: the success report (verdict, metrics, curves, config diff,
//! predictions, links) or the failure report (cause, evidence, fix, log tail, and the model's
//! reading when asked for). The facts arrive redacted (`facts::gather`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chart::{chart, series};
use super::diagnose::{Cause, Diagnosis};
use super::facts::{Baseline, Facts};
use super::markdown::{cell, code, code_block, num, percent, quote, signed, truncate};
use crate::experiment::keys::metric;
use crate::experiment::verdict::{
    compare, config_diff, metric_rows, Comparison, Direction, Judging, Verdict,
};

/// Log lines shown under a failure.
const LOG_TAIL_LINES: usize = 40;
/// Characters of log shown at most, so one long line cannot fill the comment.
const LOG_TAIL_CHARS: usize = 6_000;
/// Lines shown around the evidence when it is above the tail.
const EVIDENCE_CONTEXT: usize = 4;
const METRIC_ROWS: usize = 12;
const CONFIG_ROWS: usize = 30;
const PREDICTION_ROWS: usize = 5;
const CELL_CHARS: usize = 60;
const PANIC_MESSAGE_LINES: usize = 2;

/// What the comment's summary table and headline need of a section; stored in the section's
/// hidden marker so later jobs can rebuild the table without re-reading every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionMeta {
    pub id: String,
    pub branch: String,
    /// Creation time (Unix seconds): newest first.
    pub created: i64,
    /// Changes whenever the run's data does; a section is only replaced by a newer version.
    pub version: RunVersion,
    pub state: String,
    pub verdict: Verdict,
    pub metric: String,
    /// The primary metric's value and change, formatted.
    pub value: Option<String>,
    pub delta: Option<String>,
    pub url: String,
    /// One markdown line for the comment's headline.
    pub headline: String,
}

/// How far along a run was when its section was rendered. Comments posted by earlier releases
/// carry it as the text `state:heartbeat:history_lines`, which still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "VersionOnWire")]
pub struct RunVersion {
    pub state: String,
    /// The last heartbeat (Unix seconds), 0 when unknown.
    pub heartbeat: i64,
    pub history_lines: u64,
}

impl RunVersion {
    /// Whether this version of a run is further along than `other`: a later heartbeat, or as
    /// late with more history.
    pub fn is_newer_than(&self, other: &RunVersion) -> bool {
        (self.heartbeat, self.history_lines) > (other.heartbeat, other.history_lines)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VersionOnWire {
    Fields {
        state: String,
        heartbeat: i64,
        history_lines: u64,
    },
    Text(String),
}

impl From<VersionOnWire> for RunVersion {
    fn from(wire: VersionOnWire) -> Self {
        match wire {
            VersionOnWire::Fields {
                state,
                heartbeat,
                history_lines,
            } => RunVersion {
                state,
                heartbeat,
                history_lines,
            },
            VersionOnWire::Text(text) => {
                let mut parts = text.rsplitn(3, ':');
                let history_lines = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let heartbeat = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let state = parts.next().unwrap_or_default().to_owned();
                RunVersion {
                    state,
                    heartbeat,
                    history_lines,
                }
            }
        }
    }
}

/// A run's section: its meta and its markdown body.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub meta: SectionMeta,
    pub body: String,
}

/// The success report of a finished run.
pub fn success(facts: &Facts, baseline: Option<&Baseline>, judging: &Judging) -> Section {
    let seeds: Vec<f64> = baseline
        .map(|b| b.seeds.iter().map(|(_, v)| *v).collect())
        .unwrap_or_default();
    let comparison = compare(&facts.run.summary, &seeds, judging);
    let mut body = String::new();
    let _ = writeln!(body, "{}\n", verdict_line(&comparison, baseline, judging));
    let empty = Default::default();
    let baseline_summary = baseline.map_or(&empty, |b| &b.facts.run.summary);
    let rows = metric_rows(&facts.run.summary, baseline_summary, judging, METRIC_ROWS);
    if !rows.is_empty() {
        let column = baseline.map_or("baseline".to_owned(), |b| {
            format!("baseline {}", code(&b.facts.run.id))
        });
        let _ = writeln!(
            body,
            "| metric | {column} | this run | Δ | Δ% |\n|---|---:|---:|---:|---:|"
        );
        for row in &rows {
            let flag = if row.regression { "⚠️ " } else { "" };
            let _ = writeln!(
                body,
                "| {flag}{} | {} | {} | {} | {} |",
                cell(&row.key),
                row.baseline.map(num).unwrap_or_else(|| "—".into()),
                row.run.map(num).unwrap_or_else(|| "—".into()),
                row.delta
                    .map(|d| signed(d, ""))
                    .unwrap_or_else(|| "—".into()),
                row.delta_pct.map(percent).unwrap_or_else(|| "—".into()),
            );
        }
        let regressions: Vec<String> = rows
            .iter()
            .filter(|r| r.regression)
            .map(|r| {
                let change = r.delta_pct.map(|p| format!(" ({})", percent(p)));
                format!("{}{}", code(&r.key), change.unwrap_or_default())
            })
            .collect();
        if !regressions.is_empty() {
            let _ = writeln!(body, "\n⚠️ **Regressions:** {}", regressions.join(", "));
        }
        body.push('\n');
    }
    for key in curve_keys(judging) {
        let ours = series(&facts.history, &key);
        let theirs = baseline
            .map(|b| series(&b.facts.history, &key))
            .unwrap_or_default();
        if let Some(chart) = chart(&key, &ours, &theirs) {
            let legend = if theirs.len() >= 2 {
                "first line: this run, second line: baseline"
            } else {
                "this run"
            };
            let _ = writeln!(body, "<sub>{} — {legend}</sub>\n\n{chart}", cell(&key));
        }
    }
    if let Some(baseline) = baseline {
        config_section(&mut body, facts, baseline);
    }
    predictions_section(&mut body, facts);
    links(&mut body, facts, baseline);
    let meta = meta(
        facts,
        comparison.verdict,
        judging,
        &comparison,
        headline(&comparison, judging),
    );
    Section { meta, body }
}

/// The failure report of a run that did not finish.
pub fn failure(
    facts: &Facts,
    diagnosis: &Diagnosis,
    narrative: Option<&Narrative>,
    judging: &Judging,
) -> Section {
    let mut body = String::new();
    let exit = facts
        .run
        .exit_code
        .map_or("unknown".to_owned(), |c| c.to_string());
    let _ = writeln!(
        body,
        "**State** {} · **exit code** {exit} · **runtime** {}\n",
        cell(facts.run.state.as_str()),
        runtime(facts)
    );
    let _ = writeln!(body, "**Cause: {}**\n", cell(&diagnosis.cause.to_string()));
    let lines: Vec<&str> = facts.log.lines().collect();
    if let Some(index) = diagnosis.evidence_line {
        // A panic's message is on the lines after its location.
        let extra = match diagnosis.cause {
            Cause::Panic { .. } => PANIC_MESSAGE_LINES,
            _ => 0,
        };
        let end = (index + 1 + extra).min(lines.len());
        let evidence = lines[index..end].join("\n");
        let _ = writeln!(body, "{}", code_block("text", &evidence));
    }
    let _ = writeln!(
        body,
        "**Suggested fix:** {}\n",
        diagnosis.cause.suggestion()
    );
    body.push_str(&log_excerpt(&lines, diagnosis.evidence_line));
    if let Some(narrative) = narrative {
        let _ = writeln!(
            body,
            "\n**{}'s reading** (model output, quoted as written; not verified):\n\n{}",
            cell(&narrative.model),
            quote(&narrative.text)
        );
    }
    links(&mut body, facts, None);
    let headline = format!(
        "**{}** — {}: {}",
        Verdict::Failed.badge(),
        cell(facts.run.state.as_str()),
        cell(&diagnosis.cause.to_string())
    );
    // A failed run's last logged value is no result: the table shows none.
    let comparison = Comparison {
        value: None,
        ..compare(&facts.run.summary, &[], judging)
    };
    let meta = meta(facts, Verdict::Failed, judging, &comparison, headline);
    Section { meta, body }
}

/// A model's reading of a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Narrative {
    pub model: String,
    pub text: String,
}

fn meta(
    facts: &Facts,
    verdict: Verdict,
    judging: &Judging,
    comparison: &Comparison,
    headline: String,
) -> SectionMeta {
    SectionMeta {
        id: facts.run.id.clone(),
        branch: facts.branch.clone().unwrap_or_default(),
        created: facts.run.created_at.map_or(0, |t| t.unix_timestamp()),
        version: facts.version(),
        state: facts.run.state.to_string(),
        verdict,
        metric: judging.metric.clone(),
        value: comparison.value.map(num),
        delta: comparison.delta_pct.map(percent),
        url: facts.url.clone(),
        headline,
    }
}

fn verdict_line(c: &Comparison, baseline: Option<&Baseline>, judging: &Judging) -> String {
    let metric = code(&judging.metric);
    let direction = match judging.direction {
        Direction::Lower => "lower is better",
        Direction::Higher => "higher is better",
    };
    let value = c.value.map(num).unwrap_or_else(|| "missing".into());
    let Some(baseline) = baseline.filter(|_| c.baseline.is_some()) else {
        return format!(
            "**{}** — {metric} {value} ({direction}); no finished baseline run to compare with.",
            c.verdict.badge()
        );
    };
    let mean = c.baseline.map(num).unwrap_or_default();
    let spread = c
        .spread
        .map(|s| format!(" ± {}", num(s)))
        .unwrap_or_default();
    let seeds = if c.seeds == 1 {
        "1 run".to_owned()
    } else {
        format!("mean of {} seeds", c.seeds)
    };
    let change = c
        .delta_pct
        .map(|p| format!(": **{}**", percent(p)))
        .unwrap_or_default();
    let band = c
        .noise
        .map(|n| format!(" (noise band ±{})", num(n)))
        .unwrap_or_default();
    format!(
        "**{}** — {metric} **{value}** vs baseline {mean}{spread} ({seeds} of {}){change}{band}; {direction}.",
        c.verdict.badge(),
        code(&baseline.branch),
    )
}

fn headline(c: &Comparison, judging: &Judging) -> String {
    let value = c.value.map(num).unwrap_or_else(|| "missing".into());
    let change = c
        .delta_pct
        .map(|p| format!(" ({} vs baseline)", percent(p)))
        .unwrap_or_default();
    format!(
        "**{}** — {} {value}{change}",
        c.verdict.badge(),
        code(&judging.metric)
    )
}

/// The primary metric's curve, and the training loss when that is a different key.
fn curve_keys(judging: &Judging) -> Vec<String> {
    let mut keys = vec![judging.metric.clone()];
    if judging.metric != metric::TRAIN_LOSS {
        keys.push(metric::TRAIN_LOSS.into());
    }
    keys
}

fn config_section(body: &mut String, facts: &Facts, baseline: &Baseline) {
    let diff = config_diff(&facts.run.config, &baseline.facts.run.config);
    if diff.is_empty() {
        body.push_str("Config: identical to the baseline's.\n\n");
        return;
    }
    let _ = writeln!(
        body,
        "<details><summary>Config diff vs baseline ({} keys)</summary>\n\n| key | baseline | this run |\n|---|---|---|",
        diff.len()
    );
    for (key, theirs, ours) in diff.iter().take(CONFIG_ROWS) {
        let show = |v: &Option<Value>| match v {
            None => "—".to_owned(),
            Some(Value::String(s)) => cell(&truncate(s, CELL_CHARS)),
            Some(other) => cell(&truncate(&other.to_string(), CELL_CHARS)),
        };
        let _ = writeln!(
            body,
            "| {} | {} | {} |",
            cell(key),
            show(theirs),
            show(ours)
        );
    }
    if diff.len() > CONFIG_ROWS {
        let _ = writeln!(body, "\n…and {} more.", diff.len() - CONFIG_ROWS);
    }
    body.push_str("\n</details>\n\n");
}

fn predictions_section(body: &mut String, facts: &Facts) {
    let Some(table) = &facts.predictions else {
        return;
    };
    if table.columns.is_empty() || table.data.is_empty() {
        return;
    }
    let _ = writeln!(
        body,
        "<details><summary>Sample predictions ({} of {})</summary>\n",
        table.data.len().min(PREDICTION_ROWS),
        table.data.len()
    );
    let header: Vec<String> = table.columns.iter().map(|c| cell(c)).collect();
    let _ = writeln!(body, "| {} |", header.join(" | "));
    let _ = writeln!(body, "|{}", "---|".repeat(header.len()));
    for row in table.data.iter().take(PREDICTION_ROWS) {
        let cells: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::Bool(true) => "✅".to_owned(),
                Value::Bool(false) => "❌".to_owned(),
                Value::String(s) => code(&truncate(s, CELL_CHARS)),
                other => cell(&other.to_string()),
            })
            .collect();
        let _ = writeln!(body, "| {} |", cells.join(" | "));
    }
    body.push_str("\n</details>\n\n");
}

fn links(body: &mut String, facts: &Facts, baseline: Option<&Baseline>) {
    let _ = write!(
        body,
        "Runs: [this run {}]({})",
        code(&facts.run.id),
        facts.url
    );
    if let Some(baseline) = baseline {
        let _ = write!(
            body,
            " · [baseline {}]({})",
            code(&baseline.facts.run.id),
            baseline.facts.url
        );
        let others: Vec<String> = baseline
            .seeds
            .iter()
            .filter(|(id, _)| *id != baseline.facts.run.id)
            .map(|(id, _)| code(id))
            .collect();
        if !others.is_empty() {
            let _ = write!(body, " (other seeds: {})", others.join(", "));
        }
    }
    body.push('\n');
}

/// The log tail, preceded by the lines around the evidence when it is further up.
fn log_excerpt(lines: &[&str], evidence: Option<usize>) -> String {
    if lines.is_empty() {
        return "The run left no console log.\n\n".to_owned();
    }
    let tail_start = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut text = String::new();
    if let Some(index) = evidence.filter(|i| *i < tail_start) {
        let from = index.saturating_sub(EVIDENCE_CONTEXT);
        let to = (index + EVIDENCE_CONTEXT + 1).min(tail_start);
        text.push_str(&lines[from..to].join("\n"));
        text.push_str("\n…\n");
    }
    text.push_str(&lines[tail_start..].join("\n"));
    // Keep the end, where the failure is.
    let count = text.chars().count();
    let text: String = if count > LOG_TAIL_CHARS {
        let skip = count - LOG_TAIL_CHARS;
        format!("…{}", text.chars().skip(skip).collect::<String>())
    } else {
        text
    };
    format!(
        "<details><summary>Log tail (last {} of {} lines, secrets redacted)</summary>\n\n{}\n</details>\n\n",
        lines.len() - tail_start,
        lines.len(),
        code_block("text", &text)
    )
}

/// From creation to the last heartbeat.
fn runtime(facts: &Facts) -> String {
    match (facts.run.created_at, facts.run.heartbeat_at) {
        (Some(start), Some(end)) if end >= start => {
            let secs = (end - start).whole_seconds();
            match secs {
                s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
                s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
                s => format!("{s}s"),
            }
        }
        _ => "unknown".into(),
    }
}
