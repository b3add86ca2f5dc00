//! `mlwf baseline show|run|rollback` and `mlwf merge-winners`.

use std::process::ExitCode;

use super::{job_template, print, print_json, reading, workspace, Spinner};
use crate::cli::{BaselineCommand, MergeWinnersArgs, SeedArgs, StoreArgs};
use crate::connect::Store;
use crate::lifecycle::baseline::{self, BaselineRun, Rollback, RunSettings};
use crate::lifecycle::winners::{self, MergeWinners};

pub async fn run(store_args: &StoreArgs, command: BaselineCommand) -> anyhow::Result<ExitCode> {
    reading(store_args, async |store: &Store| {
        dispatch(store, command).await
    })
    .await
}

pub async fn merge_winners(
    store_args: &StoreArgs,
    args: MergeWinnersArgs,
) -> anyhow::Result<ExitCode> {
    reading(store_args, async |store: &Store| merge(store, args).await).await?;
    Ok(ExitCode::SUCCESS)
}

fn seeds(args: &SeedArgs, wait: bool, dry_run: bool) -> anyhow::Result<RunSettings> {
    Ok(RunSettings {
        seeds: args.seeds,
        template: job_template(args.queue.as_deref())?,
        wait,
        dry_run,
    })
}

async fn dispatch(store: &Store, command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Show(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let shown = baseline::show(&ws).await?;
            if args.json {
                print_json(&shown)?;
            } else {
                match &shown {
                    None => print(&format!(
                        "no baseline: {} has no finished run yet (`mlwf baseline run`)\n",
                        ws.base
                    ))?,
                    Some(b) => {
                        let mut text = format!(
                            "baseline run {} ({}{}) at {}\n",
                            b.run,
                            if b.tagged {
                                "tagged baseline"
                            } else {
                                "latest finished of "
                            },
                            if b.tagged {
                                String::new()
                            } else {
                                ws.base.clone()
                            },
                            b.commit
                                .as_deref()
                                .map_or("?".to_owned(), |c| format!("{c:.10}")),
                        );
                        if !b.tags.is_empty() {
                            text += &format!("  git tag: {}\n", b.tags.join(", "));
                        }
                        for (run, value) in &b.seeds {
                            text += &format!("  seed {run}: {} {value:.4}\n", b.metric);
                        }
                        print(&text)?;
                    }
                }
            }
            Ok(if shown.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BaselineCommand::Run(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let settings = seeds(&args.seed_args, args.wait, args.dry_run)?;
            let bar = Spinner::new();
            let done = baseline::run(&ws, &settings, &bar).await;
            bar.0.finish_and_clear();
            let done = done?;
            if args.json {
                print_json(&done)?;
            } else {
                print(&describe_run(&done))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BaselineCommand::Rollback(args) => {
            let ws = workspace(store, &args.loop_args)?;
            let done = baseline::rollback(
                &ws,
                &Rollback {
                    to: args.to,
                    reason: args.reason,
                    merge: args.merge,
                    dry_run: args.dry_run,
                },
            )
            .await?;
            if args.json {
                print_json(&done)?;
                return Ok(ExitCode::SUCCESS);
            }
            let verb = if done.dry_run {
                "would revert"
            } else {
                "reverts"
            };
            let mut text = format!("rollback to {} ({:.10}) {verb}:\n", done.to, done.commit);
            for (commit, subject) in &done.reverted {
                text += &format!("  {commit:.10} {subject}\n");
            }
            if let (Some(n), Some(url)) = (done.pr, &done.pr_url) {
                text += &format!("revert PR #{n} {url}\n");
            }
            if let Some(commit) = &done.merged {
                text += &format!("merged as {commit:.10}\n");
            }
            match &done.baseline {
                Some(b) => text += &format!("baseline tag moved to {}\n", b.runs.join(", ")),
                None if !done.dry_run => {
                    text += &format!(
                        "{} has no finished run: the baseline tag stays; `mlwf baseline run` once the revert is merged\n",
                        done.to
                    )
                }
                None => {}
            }
            print(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe_run(done: &BaselineRun) -> String {
    let verb = if done.dry_run {
        "would launch"
    } else {
        "launched"
    };
    let tagged = if done.tagged_now { " (new tag)" } else { "" };
    let mut text = format!("{verb} {:.10} as {}{tagged}\n", done.commit, done.tag);
    for l in &done.launched {
        text += &format!("  item {} in {}\n", l.item, l.queue);
    }
    if let Some(p) = &done.promoted {
        text += &format!("baseline is now {}\n", p.runs.join(", "));
    }
    text
}

async fn merge(store: &Store, args: MergeWinnersArgs) -> anyhow::Result<()> {
    let ws = workspace(store, &args.loop_args)?;
    let baseline_run = if args.no_baseline_run {
        None
    } else {
        Some(seeds(&args.seed_args, false, args.dry_run)?)
    };
    let bar = Spinner::new();
    let done = winners::merge(
        &ws,
        &MergeWinners {
            max: args.max,
            baseline_run,
            dry_run: args.dry_run,
        },
        &bar,
    )
    .await;
    bar.0.finish_and_clear();
    let done = done?;
    if args.json {
        return print_json(&done);
    }
    let mut text = String::new();
    for c in &done.considered {
        let delta = c.delta_pct.map_or(String::new(), |p| format!(" {p:+.2}%"));
        text += &format!(
            "#{} {} ({}{delta}): {}{}\n",
            c.pr,
            c.branch,
            c.verdict.as_deref().unwrap_or("no verdict"),
            c.outcome,
            c.reason
                .as_ref()
                .map_or(String::new(), |r| format!(" — {r}"))
        );
    }
    if done.considered.is_empty() {
        text += "no open experiment PRs\n";
    }
    if let Some(tag) = &done.tag {
        let verb = if done.dry_run { "would tag" } else { "tagged" };
        text += &format!("{verb} {tag}");
        if let Some(url) = &done.release_url {
            text += &format!(", released {url}");
        }
        text += "\n";
    }
    if !done.updated.is_empty() {
        text += &format!("updated {}\n", done.updated.join(", "));
    }
    if let Some(run) = &done.baseline_run {
        text += &describe_run(run);
    }
    print(&text)
}
