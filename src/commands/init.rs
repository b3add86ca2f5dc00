//! `mlwf init`.

use std::process::ExitCode;

use anyhow::Context;

use super::{print, print_json};
use crate::cli::InitArgs;
use crate::scaffold::{self, Project};

const DEFAULT_DESCRIPTION: &str = "An mlwf experiment project.";

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::path::absolute(&args.dir)?;
    // A second run without flags keeps what the first was told.
    let (recorded_name, recorded_description) = scaffold::recorded(&dir);
    let name = match args.name.or(recorded_name) {
        Some(name) => name,
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("name the project with --name")?,
    };
    let project = Project {
        name,
        description: args
            .description
            .or(recorded_description)
            .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_owned()),
    };
    let outcome = scaffold::init(&dir, &project, args.force, args.dry_run)?;
    if args.json {
        print_json(&outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = |done: &str, would: &str| {
        if args.dry_run {
            would.to_owned()
        } else {
            done.to_owned()
        }
    };
    let mut text = String::new();
    for (label, files) in [
        (verb("created", "would create"), &outcome.created),
        (verb("updated", "would update"), &outcome.updated),
        (
            verb("overwrote (--force)", "would overwrite (--force)"),
            &outcome.forced,
        ),
    ] {
        for file in files {
            text += &format!("{label} {file}\n");
        }
    }
    if text.is_empty() {
        text = format!(
            "nothing to change: {} files are up to date\n",
            outcome.unchanged.len()
        );
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}
