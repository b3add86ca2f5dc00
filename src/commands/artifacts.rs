//! `mlwf artifacts list|get|alias|delete|prune`.

use std::process::ExitCode;

use super::{print, print_json, reading};
use crate::artifacts::{self, Keep, Version};
use crate::cli::{ArtifactsCommand, StoreArgs};
use crate::connect::Store;

pub async fn run(store_args: &StoreArgs, command: ArtifactsCommand) -> anyhow::Result<ExitCode> {
    reading(store_args, async |store: &Store| {
        dispatch(store, command).await
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(store: &Store, command: ArtifactsCommand) -> anyhow::Result<()> {
    match command {
        ArtifactsCommand::List(args) => {
            let versions = artifacts::list(store, &args.artifact_type).await?;
            if args.json {
                return print_json(&versions);
            }
            if versions.is_empty() {
                return print(&format!("no {} artifacts\n", args.artifact_type));
            }
            print(&table(&versions))
        }
        ArtifactsCommand::Get(args) => {
            let (version, dir, files) =
                artifacts::get(store, &args.reference, args.output.as_deref()).await?;
            print(&format!(
                "downloaded {} into {} ({files} file{}, digests checked)\n",
                version.reference,
                dir.display(),
                if files == 1 { "" } else { "s" }
            ))
        }
        ArtifactsCommand::Alias(args) => {
            let version =
                artifacts::alias(store, &args.reference, &args.alias, args.dry_run).await?;
            let verb = if args.dry_run {
                "would alias"
            } else {
                "aliased"
            };
            print(&format!("{verb} {} as {}\n", version.reference, args.alias))
        }
        ArtifactsCommand::Delete(args) => {
            let version =
                artifacts::delete(store, &args.reference, args.force, args.dry_run).await?;
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            print(&format!("{verb} {}\n", version.reference))
        }
        ArtifactsCommand::Prune(args) => {
            let keep = Keep {
                last: args.keep_last,
                aliases: args.keep_aliases,
            };
            let pruned = artifacts::prune(store, &args.artifact_type, &keep, args.dry_run).await?;
            if args.json {
                return print_json(&pruned);
            }
            let verb = if pruned.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            let mut text = format!(
                "{verb} {} version(s), kept {}\n",
                pruned.deleted.len(),
                pruned.kept.len()
            );
            for version in &pruned.deleted {
                text += &format!("  - {}\n", version.reference);
            }
            print(&text)
        }
    }
}

fn table(versions: &[Version]) -> String {
    let mut text = format!(
        "{:<48} {:>10} {:>6}  {}\n",
        "artifact", "bytes", "files", "aliases"
    );
    for v in versions {
        text += &format!(
            "{:<48} {:>10} {:>6}  {}\n",
            v.reference,
            v.size,
            v.files,
            v.aliases.join(",")
        );
    }
    text
}
