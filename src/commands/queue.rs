//! `mlwf queue`: the entity's W&B Launch queues and their items.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};

use super::{env, print, store_settings};
use crate::cli::{QueueCommand, StoreArgs};
use crate::connect::{self, Purpose, Store};
use crate::wandb::launch::{ItemDetails, ItemInfo};

/// Resources a queue may default to, with the resource args a new queue gets.
const RESOURCES: [&str; 2] = ["local-process", "local-container"];

pub async fn run(store_args: &StoreArgs, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let store = connect::open(&store_settings(store_args, None, env), Purpose::Read).await?;
    let result = dispatch(&store, command).await;
    store.close().await;
    let (text, value, json_out) = result?;
    if json_out {
        print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    } else {
        print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The text and the JSON of the answer, and which one to print.
async fn dispatch(store: &Store, command: QueueCommand) -> anyhow::Result<(String, Value, bool)> {
    let (client, entity) = (&store.client, &store.entity);
    match command {
        QueueCommand::List(args) => {
            let queues = client.run_queues(entity).await?;
            let agents = client.launch_agents(entity).await?;
            let mut text = String::new();
            if queues.is_empty() {
                writeln!(
                    text,
                    "no run queues in {entity}: create one with `mlwf queue create NAME`"
                )?;
            }
            let mut rows = Vec::new();
            for queue in &queues {
                let items = client.queue_items(entity, &queue.name).await?;
                let waiting = items.iter().filter(|i| is_waiting(i)).count();
                writeln!(
                    text,
                    "{:<24} {waiting} waiting, {} in all",
                    queue.name,
                    items.len()
                )?;
                rows.push(json!({"id": queue.id, "name": queue.name, "waiting": waiting, "items": items.len()}));
            }
            match &agents {
                Some(agents) if !agents.is_empty() => {
                    writeln!(text, "agents:")?;
                    for agent in agents {
                        let seen = age(&agent.heartbeat_at).unwrap_or_else(|| "?".into());
                        writeln!(
                            text,
                            "  {:<20} {:<8} on {}, last heard {seen} ago ({})",
                            agent.name,
                            agent.status,
                            agent.hostname,
                            agent.version.as_deref().unwrap_or("unknown version")
                        )?;
                    }
                }
                Some(_) => writeln!(
                    text,
                    "no agent has registered yet: start one with `mlwf agent --queue NAME`"
                )?,
                None => {}
            }
            let value = json!({"queues": rows, "agents": agents});
            Ok((text, value, args.json))
        }
        QueueCommand::Create(args) => {
            if !RESOURCES.contains(&args.resource.as_str()) {
                bail!(
                    "--resource {:?}: mlwf agents run {}",
                    args.resource,
                    RESOURCES.join(" or ")
                );
            }
            if client.run_queue(entity, &args.name).await?.is_some() {
                bail!("run queue {:?} already exists in {entity}", args.name);
            }
            let id = client
                .create_run_queue(entity, &args.name, &args.resource, json!({}))
                .await
                .with_context(|| format!("creating run queue {:?}", args.name))?;
            let text = format!(
                "created run queue {} in {entity} ({}); run jobs from it with `mlwf agent --queue {}`\n",
                args.name, args.resource, args.name
            );
            Ok((
                text,
                json!({"id": id, "name": args.name, "resource": args.resource}),
                args.json,
            ))
        }
        QueueCommand::Items(args) => {
            let items = client.queue_items(entity, &args.queue).await?;
            let details: Vec<Option<ItemDetails>> = futures::stream::iter(&items)
                .map(|item| client.item_details(&item.id))
                .buffered(8)
                .try_collect()
                .await?;
            let mut text = String::new();
            if items.is_empty() {
                writeln!(text, "run queue {} is empty", args.queue)?;
            }
            let mut rows = Vec::new();
            for (item, details) in items.iter().zip(&details) {
                let state = item.state.as_deref().unwrap_or("?");
                let run = item.associated_run_id.as_deref().unwrap_or("-");
                let age = details
                    .as_ref()
                    .and_then(|d| age(&d.created_at))
                    .unwrap_or_else(|| "-".to_owned());
                let mut line = format!("{:<28} {state:<8} run {run:<10} {age:>6}", item.id);
                if let Some(error) = details.as_ref().and_then(|d| d.error.as_ref()) {
                    let first = error.message.lines().next().unwrap_or_default();
                    write!(line, "  failed ({}): {first}", error.stage)?;
                }
                writeln!(text, "{line}")?;
                rows.push(json!({
                    "id": item.id,
                    "state": item.state,
                    "run": item.associated_run_id,
                    "createdAt": details.as_ref().map(|d| &d.created_at),
                    "error": details.as_ref().and_then(|d| d.error.as_ref()),
                    "warnings": details.as_ref().map(|d| &d.warnings),
                }));
            }
            Ok((text, Value::Array(rows), args.json))
        }
        QueueCommand::Cancel(args) => {
            for queue in client.run_queues(entity).await? {
                let Some(item) = client.queue_item(entity, &queue.name, &args.item).await? else {
                    continue;
                };
                if !is_waiting(&item) {
                    bail!(
                        "item {} of {} is {}: only waiting items can be cancelled (stop its run \
                         from the W&B UI instead)",
                        args.item,
                        queue.name,
                        item.state.as_deref().unwrap_or("?").to_lowercase()
                    );
                }
                client.delete_item(&queue.id, &args.item).await?;
                let text = format!("cancelled item {} of {}\n", args.item, queue.name);
                return Ok((
                    text,
                    json!({"id": args.item, "queue": queue.name, "cancelled": true}),
                    args.json,
                ));
            }
            bail!("no item {:?} in any run queue of {entity}", args.item)
        }
    }
}

fn is_waiting(item: &ItemInfo) -> bool {
    matches!(item.state.as_deref(), Some("PENDING") | Some("LEASED"))
}

/// `3m`, `2h`, `5d`: how long ago `created_at` (RFC 3339) was.
fn age(created_at: &str) -> Option<String> {
    let at =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let secs = (time::OffsetDateTime::now_utc() - at)
        .whole_seconds()
        .max(0);
    Some(match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    })
}
