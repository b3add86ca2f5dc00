//! `mlwf datasets upload|download|list`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{env, print, store_settings};
use crate::cli::{DatasetsCommand, StoreArgs};
use crate::connect::{self, Purpose};
use crate::datasets::{self, DatasetVersion, Upload};
use crate::wandb::ArtifactRef;

pub async fn run(store: &StoreArgs, command: DatasetsCommand) -> anyhow::Result<ExitCode> {
    if let DatasetsCommand::Upload(args) = &command {
        if args.dry_run {
            let upload = Upload {
                path: args.path.clone(),
                name: args.name.clone(),
                split: args.split.clone(),
                description: args.description.clone(),
            };
            let metadata = datasets::check(&upload)?;
            print(&format!(
                "dry run, not done: upload {} as dataset {} ({})\n",
                args.path.display(),
                args.name,
                serde_json::Value::Object(metadata)
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = connect::open(&store_settings(store, None, env), Purpose::Training).await?;
    let result = match command {
        DatasetsCommand::Upload(args) => {
            let upload = Upload {
                path: args.path,
                name: args.name,
                split: args.split,
                description: args.description,
            };
            datasets::upload(&store, &upload)
                .await
                .and_then(|version| say(&[version], args.json, "uploaded"))
        }
        DatasetsCommand::Download(args) => download(&store, &args.reference, args.output).await,
        DatasetsCommand::List(args) => datasets::list(&store)
            .await
            .and_then(|versions| say(&versions, args.json, "")),
    };
    store.close().await;
    print(&result?)?;
    Ok(ExitCode::SUCCESS)
}

async fn download(
    store: &connect::Store,
    reference: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<String> {
    let parsed: ArtifactRef = reference
        .parse()
        .with_context(|| format!("dataset reference {reference:?}"))?;
    let dir = output.unwrap_or_else(|| PathBuf::from(&parsed.name));
    let files = datasets::download(store, &parsed, &dir).await?;
    Ok(format!(
        "downloaded {reference} into {} ({} file{}, digests checked)\n",
        dir.display(),
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    ))
}

fn say(versions: &[DatasetVersion], json: bool, verb: &str) -> anyhow::Result<String> {
    if json {
        let text = if verb.is_empty() {
            serde_json::to_string_pretty(versions)
        } else {
            serde_json::to_string_pretty(&versions[0])
        };
        return Ok(text.context("encoding the datasets")? + "\n");
    }
    if versions.is_empty() {
        return Ok("no datasets (upload one with `mlwf datasets upload PATH --name N`)\n".into());
    }
    let mut out = String::new();
    for v in versions {
        let lines = v
            .metadata
            .get("lines")
            .map_or("?".into(), ToString::to_string);
        let unchanged = if v.unchanged {
            ", unchanged: the same contents as before"
        } else {
            ""
        };
        let verb = if verb.is_empty() {
            String::new()
        } else {
            format!("{verb} ")
        };
        out.push_str(&format!(
            "{verb}{}  [{}]  {} bytes, {lines} lines{unchanged}\n",
            v.reference,
            v.aliases.join(", "),
            v.size_bytes
        ));
    }
    Ok(out)
}
