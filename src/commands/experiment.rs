//! `mlwf experiment new|list|relaunch`.

use std::process::ExitCode;

use super::{job_template, print, print_json, reading, workspace};
use crate::cli::{ExperimentCommand, StoreArgs};
use crate::connect::Store;
use crate::lifecycle::{list, new, relaunch};

pub async fn run(store_args: &StoreArgs, command: ExperimentCommand) -> anyhow::Result<ExitCode> {
    reading(store_args, async |store: &Store| {
        dispatch(store, command).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(store: &Store, command: ExperimentCommand) -> anyhow::Result<()> {
    match command {
        ExperimentCommand::New(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let started = new::start(
                &ws,
                &new::NewExperiment {
                    idea: args.idea,
                    from_issue: args.from_issue,
                    worktree: args.worktree,
                    dry_run: args.dry_run,
                },
            )
            .await?;
            if args.json {
                return print_json(&started);
            }
            let verb = if started.dry_run {
                "would start"
            } else {
                "started"
            };
            let mut text = format!(
                "{verb} {} from {} at {:.10}\n  worktree: {}\n  note:     {}\n",
                started.branch,
                started.base,
                started.base_commit,
                started.worktree.display(),
                started.note.display()
            );
            if let (Some(number), Some(url)) = (started.pr, &started.pr_url) {
                text += &format!("  draft PR: #{number} {url}\n");
            }
            if !started.dry_run {
                text += &format!(
                    "next: cd {} && edit, commit, push, then `mlwf launch`\n",
                    started.worktree.display()
                );
            }
            print(&text)
        }
        ExperimentCommand::List(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let experiments = list::list(&ws).await?;
            if args.json {
                return print_json(&experiments);
            }
            if experiments.is_empty() {
                return print(
                    "no experiment branches (exp/…) on origin: `mlwf experiment new \"idea\"`\n",
                );
            }
            let mut text = format!(
                "{:<32} {:>5} {:<10} {:<9} {:<13} {:>8} {:>6}\n",
                "branch", "PR", "run", "state", "verdict", "Δ%", "age"
            );
            for e in &experiments {
                let pr = match (e.pr, e.draft) {
                    (Some(n), Some(true)) => format!("#{n}d"),
                    (Some(n), _) => format!("#{n}"),
                    _ => "-".to_owned(),
                };
                text += &format!(
                    "{:<32} {:>5} {:<10} {:<9} {:<13} {:>8} {:>6}\n",
                    e.branch,
                    pr,
                    e.run.as_deref().unwrap_or("-"),
                    e.state.as_deref().unwrap_or("-"),
                    e.verdict.as_deref().unwrap_or("-"),
                    e.delta_pct.map_or("-".to_owned(), |p| format!("{p:+.2}")),
                    e.age_s.map_or("-".to_owned(), age),
                );
            }
            if ws.github.is_none() {
                text += "(no GITHUB_TOKEN: PRs not shown)\n";
            }
            print(&text)
        }
        ExperimentCommand::Relaunch(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let template = job_template(args.queue.as_deref())?;
            let done =
                relaunch::relaunch(&ws, args.branch.as_deref(), &template, args.dry_run).await?;
            if args.json {
                return print_json(&done);
            }
            let mut text = format!(
                "{}'s run {} failed: {}\n  {}\n",
                done.branch, done.failed_run, done.cause, done.suggestion
            );
            match &done.launched {
                Some(l) => {
                    text += &format!(
                        "relaunched {} at {:.10} as item {}\n",
                        l.branch, l.commit, l.item
                    )
                }
                None => text += "(dry run: nothing launched)\n",
            }
            print(&text)
        }
    }
}

/// `3d`, `5h`, `12m`, `40s`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}
