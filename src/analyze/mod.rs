//! `mlwf analyze`: every run that ended and was not reported yet is compared with the baseline
//! (or diagnosed, if it failed) and reported once on its branch's PR.
//!
//! Reconciling, not trusting the webhook: whatever the dispatch payload says, the runs to
//! report are read from W&B (terminal state, no `mlwf:reported` tag), so a lost, repeated or
//! empty webhook neither loses nor doubles a report. A run is tagged only after its report is
//! posted; the sticky comment's per-run markers make a concurrent repeat idempotent.
//!
//! Modules: `event` (the payload), `facts` (reads from W&B), `diagnose`, `llm`
//! (optional narrative), `report` (one run's section), `comment` (the sticky comment), `chart`
//! (mermaid curves), `markdown` (escaping). What a run records, the
//! baseline rule and the verdict are the run contract's (`crate::experiment`).

pub mod chart;
pub mod comment;
pub mod diagnose;
pub mod event;
pub mod facts;
pub mod llm;
pub mod markdown;
pub mod report;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};

use crate::experiment::verdict::{Judging, Verdict, LABELS};
use crate::experiment::{self, REPORTED_TAG};
use crate::github::actions::{self, Actions};
use crate::github::{upsert_sticky, GitHub};
use crate::secrets::Redactor;
use crate::wandb::RunInfo;
use event::Dispatch;
use facts::{Facts, Project};
use llm::Claude;
use report::{Narrative, Section};

/// How to analyze, independent of where the settings came from.
pub struct Options {
    pub judging: Judging,
    pub baseline_branch: String,
    /// Report this run (again, if it was reported) instead of reconciling.
    pub run: Option<String>,
    pub dispatch: Dispatch,
    /// Runs reported at most per job; the rest wait for the next one.
    pub max_runs: usize,
    /// Where to post; `None` prints the reports instead (`--dry-run`).
    pub github: Option<GitHub>,
    pub claude: Option<Claude>,
    pub actions: Actions,
    pub redactor: Redactor,
}

/// What one job reported.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub reports: Vec<Reported>,
}

#[derive(Debug, Clone)]
pub struct Reported {
    pub run_id: String,
    /// The run's creation time (Unix seconds).
    pub created: i64,
    pub verdict: Verdict,
    pub delta: Option<String>,
    pub pr: Option<u64>,
    pub comment_url: Option<String>,
    /// The markdown of this run's group (the comment, or what went to the job summary).
    pub markdown: String,
}

/// Reports every run that needs it. A run whose report fails stays unreported (and untagged)
/// for the next job; the error is returned after the others are done.
pub async fn run(project: &Project, options: &Options) -> anyhow::Result<Outcome> {
    // A run that ended may complete a set of baseline seeds: the reports then face the new
    // baseline. A dry run changes nothing.
    if options.github.is_some() {
        let promoted =
            experiment::baseline::promote(&project.client, &project.entity, &project.project)
                .await?;
        if let Some(promoted) = promoted {
            tracing::info!(
                "the baseline is now {} (commit {:.10})",
                promoted.runs.join(", "),
                promoted.commit
            );
        }
    }
    let runs = select_runs(project, options).await?;
    let mut failures = Vec::new();
    let mut sections: BTreeMap<Option<String>, Vec<(Section, RunInfo)>> = BTreeMap::new();
    let reports = futures::future::join_all(
        runs.into_iter()
            .map(|run| report_run(project, options, run)),
    )
    .await;
    for result in reports {
        match result {
            Ok((section, facts)) => sections
                .entry(facts.branch.clone())
                .or_default()
                .push((section, facts.run)),
            Err(error) => failures.push(error),
        }
    }
    let mut outcome = Outcome::default();
    for (branch, group) in sections {
        match post_group(project, options, branch.as_deref(), group).await {
            Ok(reported) => outcome.reports.extend(reported),
            Err(error) => failures.push(error),
        }
    }
    outcome
        .reports
        .sort_by(|a, b| (b.created, &b.run_id).cmp(&(a.created, &a.run_id)));
    write_outputs(options, &outcome)?;
    match failures.len() {
        0 => Ok(outcome),
        n => {
            for error in &failures {
                tracing::error!("{error:#}");
            }
            Err(failures.swap_remove(0)).with_context(|| format!("{n} report(s) failed"))
        }
    }
}

/// The run asked for, or every unreported run that ended (newest first).
async fn select_runs(project: &Project, options: &Options) -> anyhow::Result<Vec<RunInfo>> {
    let Project {
        client,
        entity,
        project: name,
        ..
    } = project;
    if let Some(id) = &options.run {
        let run = client
            .run(entity, name, id)
            .await
            .with_context(|| format!("reading run {id}"))?
            .ok_or_else(|| anyhow!("no run {id:?} in {entity}/{name}"))?;
        if !run.state.is_terminal() {
            bail!(
                "run {id} is still {}; it can be reported once it ends",
                run.state
            );
        }
        return Ok(vec![run]);
    }
    let query = experiment::unreported(options.max_runs);
    let mut runs = client
        .runs(entity, name, &query)
        .await
        .with_context(|| format!("listing the unreported runs of {entity}/{name}"))?;
    if let Some(id) = &options.dispatch.run_id {
        if !runs.iter().any(|r| &r.id == id) {
            match client.run(entity, name, id).await {
                Ok(Some(run)) if run.tags.iter().any(|t| t == REPORTED_TAG) => {
                    tracing::info!(run = %id, "the dispatched run was reported already (a repeated delivery)");
                }
                Ok(Some(run)) if !run.state.is_terminal() => {
                    tracing::warn!(run = %id, state = %run.state, "the dispatched run has not ended; a later job reports it");
                }
                Ok(Some(run)) => runs.push(run),
                Ok(None) => {
                    tracing::warn!(run = %id, "the dispatched run does not exist in {entity}/{name}")
                }
                Err(error) => tracing::warn!(run = %id, %error, "cannot read the dispatched run"),
            }
        }
    }
    Ok(runs)
}

/// Reads a run and renders its section.
async fn report_run(
    project: &Project,
    options: &Options,
    run: RunInfo,
) -> anyhow::Result<(Section, Facts)> {
    let id = run.id.clone();
    let facts = facts::gather(project, run, &options.redactor).await?;
    let section = if facts.failed() {
        let diagnosis =
            diagnose::diagnose(facts.run.state.as_str(), facts.run.exit_code, &facts.log);
        let narrative = narrate(options, &facts, &diagnosis).await;
        report::failure(&facts, &diagnosis, narrative.as_ref(), &options.judging)
    } else {
        let baseline = facts::baseline(
            project,
            &options.baseline_branch,
            &options.judging.metric,
            &facts.run.id,
            &options.redactor,
        )
        .await?;
        report::success(&facts, baseline.as_ref(), &options.judging)
    };
    tracing::info!(run = %id, verdict = section.meta.verdict.as_str(), "analyzed");
    Ok((section, facts))
}

/// The model's reading of a failure, or `None` (no model configured, or it failed: the report
/// goes out without it). The model sees only redacted facts, and its answer is redacted too.
async fn narrate(
    options: &Options,
    facts: &Facts,
    diagnosis: &diagnose::Diagnosis,
) -> Option<Narrative> {
    let claude = options.claude.as_ref()?;
    let tail: Vec<&str> = facts.log.lines().rev().take(80).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let config = serde_json::to_string_pretty(&facts.run.config).unwrap_or_default();
    let prompt = llm::failure_prompt(
        &diagnosis.cause.to_string(),
        diagnosis.cause.suggestion(),
        &config,
        &tail.join("\n"),
    );
    match claude.ask(&prompt).await {
        Ok(text) => Some(Narrative {
            model: claude.model.clone(),
            text: options.redactor.redact(&text),
        }),
        Err(error) => {
            tracing::warn!("no narrative from {}: {error:#}", claude.model);
            None
        }
    }
}

/// Posts one branch's sections (to its PR's sticky comment, else to the job summary) and tags
/// the runs reported.
async fn post_group(
    project: &Project,
    options: &Options,
    branch: Option<&str>,
    group: Vec<(Section, RunInfo)>,
) -> anyhow::Result<Vec<Reported>> {
    let sections: Vec<Section> = group.iter().map(|(s, _)| s.clone()).collect();
    let markdown = comment::render(&comment::merge(&[], &sections));
    let mut pr = None;
    let mut comment_url = None;
    match (&options.github, branch) {
        (None, _) => {}
        // Baseline runs have no PR to go to; the job summary is their report.
        (Some(_), Some(branch)) if branch == options.baseline_branch => {}
        (Some(_), None) => {
            let ids: Vec<&str> = group.iter().map(|(_, r)| r.id.as_str()).collect();
            actions::warning(&format!(
                "run(s) {} have no valid config.branch; the report is in the job summary only",
                ids.join(", ")
            ));
        }
        (Some(github), Some(branch)) => match github.open_pr_for_branch(branch).await? {
            None => actions::warning(&format!(
                "no open PR for branch {branch:?} in {}; the report is in the job summary only",
                github.repo()
            )),
            Some(found) => {
                let (outcome, newest) =
                    upsert_sticky(github, found.number, comment::MARKER, |bodies| {
                        let merged = comment::merge(bodies, &sections);
                        let newest = merged.first().map(|s| s.meta.verdict);
                        (comment::render(&merged), newest)
                    })
                    .await?;
                let wanted: Vec<&str> = newest.and_then(Verdict::label).into_iter().collect();
                github
                    .set_mlwf_labels(found.number, &wanted, LABELS)
                    .await?;
                pr = Some(found.number);
                comment_url = outcome.url;
            }
        },
    }
    options.actions.summary(&markdown)?;
    if options.github.is_some() {
        for (_, run) in &group {
            mark_reported(project, run).await?;
        }
    }
    Ok(group
        .into_iter()
        .map(|(section, _)| Reported {
            run_id: section.meta.id.clone(),
            created: section.meta.created,
            verdict: section.meta.verdict,
            delta: section.meta.delta.clone(),
            pr,
            comment_url: comment_url.clone(),
            markdown: markdown.clone(),
        })
        .collect())
}

async fn mark_reported(project: &Project, run: &RunInfo) -> anyhow::Result<()> {
    if run.tags.iter().any(|t| t == REPORTED_TAG) {
        return Ok(());
    }
    let mut tags = run.tags.clone();
    tags.push(REPORTED_TAG.to_owned());
    project
        .client
        .set_run_tags(run, &tags)
        .await
        .with_context(|| format!("tagging run {} as reported", run.id))
}

/// Step outputs for the newest run reported.
fn write_outputs(options: &Options, outcome: &Outcome) -> anyhow::Result<()> {
    let newest = outcome.reports.first();
    options.actions.outputs(&[
        (
            "verdict",
            newest.map_or("none", |r| r.verdict.as_str()).to_owned(),
        ),
        (
            "run-id",
            newest.map(|r| r.run_id.clone()).unwrap_or_default(),
        ),
        (
            "comment-url",
            newest
                .and_then(|r| r.comment_url.clone())
                .unwrap_or_default(),
        ),
        (
            "delta",
            newest.and_then(|r| r.delta.clone()).unwrap_or_default(),
        ),
        ("reported", outcome.reports.len().to_string()),
    ])
}
