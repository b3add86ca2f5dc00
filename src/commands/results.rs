//! `mlwf results`: read runs back: one run's summary, lists, comparisons with the baseline,
//! console logs and metric histories.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use super::{env, judging, print, reading, store_settings};
use crate::cli::{CompareArgs, HistoryArgs, ListArgs, LogsArgs, PlotArgs, StoreArgs, SummaryArgs};
use crate::connect::{self, Purpose, Store};
use crate::experiment;
use crate::experiment::compare::{self, branch_of, Against, BranchComparison};
use crate::experiment::verdict::number;
use crate::wandb::RunInfo;

/// Run `id` of the store's project, or an error naming where it looked.
async fn run_of(store: &Store, id: &str) -> anyhow::Result<RunInfo> {
    let place = format!("{}/{}", store.entity, store.project);
    store
        .client
        .run(&store.entity, &store.project, id)
        .await
        .with_context(|| format!("reading run {id} of {place}"))?
        .ok_or_else(|| anyhow!("no run {id:?} in {place}: `mlwf results list` shows the runs"))
}

/// `mlwf results list` (and `mlwf runs list`).
pub async fn list(store: &StoreArgs, args: ListArgs) -> anyhow::Result<ExitCode> {
    let query = experiment::runs(args.branch.as_deref(), args.state.as_deref(), args.limit);
    let runs = reading(store, async |store: &Store| {
        store
            .client
            .runs(&store.entity, &store.project, &query)
            .await
            .with_context(|| format!("listing the runs of {}/{}", store.entity, store.project))
    })
    .await?;
    if args.json {
        let json = serde_json::to_string_pretty(&runs).context("encoding the runs")?;
        return print(&format!("{json}\n")).map(|()| ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("no runs\n");
    }
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|run| {
            [
                run.id.clone(),
                run.state.as_str().to_owned(),
                branch_of(run).unwrap_or_else(|| "-".into()),
                number(run.summary.get(&args.metric)).map_or("-".into(), format_value),
                run.created_at.map_or("-".into(), |t| t.date().to_string()),
                run.tags.join(","),
            ]
        })
        .collect();
    let header = [
        "run",
        "state",
        "branch",
        args.metric.as_str(),
        "created",
        "tags",
    ]
    .map(String::from);
    out.push_str(&table(&header, &rows));
    print(&out).map(|()| ExitCode::SUCCESS)
}

/// `mlwf results compare`: each branch's latest ended run against the baseline, or head to head.
pub async fn compare(store: &StoreArgs, args: CompareArgs) -> anyhow::Result<ExitCode> {
    let judging = judging(&args.judging);
    let base = args.judging.baseline_branch.clone();
    let against = match &args.against {
        Some(other) => Against::Branch(other),
        None => Against::Baseline(&base),
    };
    let compared = reading(store, async |store: &Store| {
        let (client, entity, project) = (&store.client, &store.entity, &store.project);
        let branches = if args.branches.is_empty() {
            compare::branches(
                client,
                entity,
                project,
                args.against.as_deref().unwrap_or(&base),
            )
            .await?
        } else {
            args.branches.clone()
        };
        if branches.is_empty() {
            anyhow::bail!(
                "no branch but {base:?} has runs in {entity}/{project}: launch an experiment \
                 first, or name one with --branch"
            );
        }
        let mut compared = Vec::new();
        for branch in &branches {
            compared
                .push(compare::branch(client, entity, project, branch, against, &judging).await?);
        }
        Ok(compared)
    })
    .await?;
    if args.json {
        let json = serde_json::to_string_pretty(&compared).context("encoding the comparison")?;
        return print(&format!("{json}\n")).map(|()| ExitCode::SUCCESS);
    }
    print(&render_comparison(&compared)).map(|()| ExitCode::SUCCESS)
}

fn render_comparison(compared: &[BranchComparison]) -> String {
    let rows: Vec<[String; 7]> = compared
        .iter()
        .map(|c| {
            let against = c.against.as_ref().map_or("-".into(), |a| {
                format!(
                    "{} ({} seed{})",
                    a.id,
                    c.seed_runs.len(),
                    if c.seed_runs.len() == 1 { "" } else { "s" }
                )
            });
            let c2 = &c.comparison;
            [
                c.branch.clone(),
                c.run.id.clone(),
                c2.value.map_or("-".into(), format_value),
                against,
                c2.baseline.map_or("-".into(), format_value),
                match (c2.delta_pct, c2.noise, c2.baseline) {
                    (Some(pct), Some(noise), Some(mean)) if mean != 0.0 => {
                        format!("{pct:+.2}% (noise ±{:.2}%)", 100.0 * noise / mean.abs())
                    }
                    (Some(pct), _, _) => format!("{pct:+.2}%"),
                    _ => "-".into(),
                },
                c2.verdict.as_str().to_owned(),
            ]
        })
        .collect();
    let metric = compared.first().map_or("value", |c| c.metric.as_str());
    let header = [
        "branch", "run", metric, "against", "baseline", "change", "verdict",
    ]
    .map(String::from);
    table(&header, &rows)
}

/// `mlwf results logs RUN`.
pub async fn logs(store: &StoreArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let log = reading(store, async |store: &Store| {
        let run = run_of(store, &args.run).await?;
        store
            .client
            .output_log(&store.entity, &store.project, &run.id)
            .await
            .with_context(|| format!("reading the console log of run {}", run.id))
    })
    .await?;
    let lines: Vec<&str> = log.lines().collect();
    let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = lines[from..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    print(&out).map(|()| ExitCode::SUCCESS)
}

/// `mlwf results history RUN`: a table, CSV or JSON lines.
pub async fn history(store: &StoreArgs, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let rows = reading(store, async |store: &Store| {
        let run = run_of(store, &args.run).await?;
        store
            .client
            .history(&store.entity, &store.project, &run.id)
            .await
            .with_context(|| format!("reading the history of run {}", run.id))
    })
    .await?;
    let keys: Vec<String> = if args.keys.is_empty() {
        let mut keys: Vec<String> = rows
            .iter()
            .flat_map(|row| row.keys())
            .filter(|k| !k.starts_with('_'))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        keys.retain(|k| rows.iter().any(|row| number(row.get(k)).is_some()));
        keys
    } else {
        args.keys.clone()
    };
    let steps: Vec<&crate::wandb::Row> = rows
        .iter()
        .filter(|row| keys.iter().any(|k| row.contains_key(k)))
        .collect();
    let mut out = String::new();
    if args.json {
        for row in &steps {
            let mut line = serde_json::Map::new();
            line.insert(
                "_step".into(),
                row.get("_step").cloned().unwrap_or(Value::Null),
            );
            for key in &keys {
                line.insert(key.clone(), row.get(key).cloned().unwrap_or(Value::Null));
            }
            let _ = writeln!(out, "{}", Value::Object(line));
        }
        return print(&out).map(|()| ExitCode::SUCCESS);
    }
    let cell = |row: &crate::wandb::Row, key: &str| match row.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => number(Some(other)).map_or_else(|| other.to_string(), |n| n.to_string()),
    };
    let mut header = vec!["step".to_owned()];
    header.extend(keys.iter().cloned());
    let table_rows: Vec<Vec<String>> = steps
        .iter()
        .map(|row| {
            let mut cells = vec![cell(row, "_step")];
            cells.extend(keys.iter().map(|k| cell(row, k)));
            cells
        })
        .collect();
    if args.csv {
        let _ = writeln!(out, "{}", csv_line(&header));
        for cells in &table_rows {
            let _ = writeln!(out, "{}", csv_line(cells));
        }
    } else {
        out = table(&header, &table_rows);
    }
    print(&out).map(|()| ExitCode::SUCCESS)
}

fn csv_line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|cell| {
            if cell.contains([',', '"', '\n']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Columns padded to their widest cell.
fn table<R: AsRef<[String]>>(header: &[String], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(row.as_ref()));
    }
    out
}

fn format_value(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1e-3 && value.abs() < 1e6 {
        format!("{value:.4}")
    } else {
        format!("{value:.4e}")
    }
}

/// Prints one run's state, config and summary metrics.
pub async fn summary(store: &StoreArgs, args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let store = connect::open(&store_settings(store, None, env), Purpose::Read).await?;
    let found = find_run(&store, &args).await;
    let (entity, project) = (store.entity.clone(), store.project.clone());
    store.close().await;
    let run = found?;
    if args.json {
        let mut value = serde_json::to_value(&run).context("encoding the run as JSON")?;
        value["entity"] = json!(entity);
        value["project"] = json!(project);
        print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    } else {
        print(&render_summary(&run, &entity, &project))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_run(store: &Store, args: &SummaryArgs) -> anyhow::Result<RunInfo> {
    let Store {
        client,
        entity,
        project,
        ..
    } = store;
    let place = format!("{entity}/{project}");
    if let Some(id) = &args.run {
        return run_of(store, id).await;
    }
    let branch = args.branch.as_deref().unwrap_or_default();
    let query = experiment::latest_of_branch(branch);
    client
        .runs(entity, project, &query)
        .await
        .with_context(|| format!("listing runs of branch {branch:?} in {place}"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!(
                "no run of branch {branch:?} in {place} (looked for config.branch = {branch:?})"
            )
        })
}

/// Human-readable summary; internal keys (`_wandb`, `_timestamp`) are left out.
fn render_summary(run: &RunInfo, entity: &str, project: &str) -> String {
    let mut out = String::new();
    let name = run
        .display_name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(out, "run       {entity}/{project}/{}{name}", run.id);
    let _ = writeln!(out, "state     {}", run.state);
    if let Some(code) = run.exit_code {
        let _ = writeln!(out, "exit code {code}");
    }
    if let Some(created) = run.created_at {
        let _ = writeln!(out, "created   {created}");
    }
    if let Some(commit) = &run.commit {
        let _ = writeln!(out, "commit    {commit}");
    }
    if !run.tags.is_empty() {
        let _ = writeln!(out, "tags      {}", run.tags.join(", "));
    }
    write_section(&mut out, "config", run.config.iter());
    write_section(
        &mut out,
        "summary",
        run.summary
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "_wandb" | "_timestamp")),
    );
    out
}

fn write_section<'a>(
    out: &mut String,
    title: &str,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "{title}");
    if entries.is_empty() {
        let _ = writeln!(out, "  (empty)");
    }
    let width = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in entries {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {key:width$}  {shown}");
    }
}

/// PNG size of `mlwf results plot -o`.
const PLOT_SIZE: (usize, usize) = (800, 480);
/// Terminal chart size, in characters.
const CHART_SIZE: (usize, usize) = (60, 14);

/// `mlwf results plot`: each branch's latest run's `metric` curve.
pub async fn plot(store: &StoreArgs, args: PlotArgs) -> anyhow::Result<ExitCode> {
    let curves = reading(store, async |store: &Store| {
        let mut curves = Vec::new();
        for branch in &args.branches {
            let runs = store
                .client
                .runs(
                    &store.entity,
                    &store.project,
                    &experiment::latest_of_branch(branch),
                )
                .await
                .with_context(|| format!("listing the runs of branch {branch:?}"))?;
            let run = runs.first().with_context(|| {
                format!("branch {branch:?} has no run: `mlwf launch --branch {branch}` first")
            })?;
            let rows = store
                .client
                .history(&store.entity, &store.project, &run.id)
                .await
                .with_context(|| format!("reading the history of run {}", run.id))?;
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|row| Some((number(row.get("_step"))?, number(row.get(&args.metric))?)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if points.is_empty() {
                anyhow::bail!(
                    "run {} of {branch:?} logged no {}: `mlwf results history {}` shows its keys",
                    run.id,
                    args.metric,
                    run.id
                );
            }
            curves.push(crate::plot::Curve {
                label: format!("{branch} ({})", run.id),
                points,
            });
        }
        Ok(curves)
    })
    .await?;
    match &args.output {
        Some(path) => {
            crate::plot::png(&curves, path, PLOT_SIZE.0, PLOT_SIZE.1)?;
            let ((x0, x1), (y0, y1)) = crate::plot::bounds(&curves);
            let mut text = format!(
                "wrote {}: {} over steps {x0}..{x1}, from {y0:.4} to {y1:.4}\n",
                path.display(),
                args.metric
            );
            for (curve, (_, colour)) in curves.iter().zip(crate::plot::COLOURS.iter().cycle()) {
                text += &format!("  {colour}: {}\n", curve.label);
            }
            print(&text)?;
        }
        None => print(&crate::plot::terminal(
            &curves,
            &args.metric,
            CHART_SIZE.0,
            CHART_SIZE.1,
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}
