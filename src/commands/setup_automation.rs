//! `mlwf setup-automation`.
//!
//! Values come from the flags, else the environment, else the project's
//! `.claude/settings.local.json` and `.claude/settings.json` (their `env` maps, the local file
//! first). No value is ever printed.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::{env, github, print, print_json, store_settings};
use crate::automation::{self, Setup, DEFAULT_PAYLOAD};
use crate::cli::{SetupAutomationArgs, StoreArgs};
use crate::connect::{self, Purpose};
use crate::secrets::Secret;

/// The project's settings files, relative to the repository root, most specific first.
const SETTINGS_FILES: [&str; 2] = [".claude/settings.local.json", ".claude/settings.json"];
const PAYLOAD_FILE: &str = ".github/wandb-webhook-payload.json";

pub async fn run(store: &StoreArgs, args: SetupAutomationArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let root = crate::git::root(&cwd);
    let files = match &root {
        Some(root) => settings_env(root)?,
        None => HashMap::new(),
    };
    let lookup = |name: &str| env(name).or_else(|| files.get(name).cloned());
    let required = |name: &str, why: &str| {
        lookup(name).map(Secret::new).with_context(|| {
            format!("{name} is not set (environment or .claude/settings.local.json): {why}")
        })
    };

    let mut github_args = args.github.clone();
    if github_args
        .github_token
        .as_deref()
        .is_none_or(str::is_empty)
    {
        github_args.github_token = lookup("GITHUB_TOKEN");
    }
    let checkout = root.as_ref().map(|r| crate::git::Repo::at(r.clone()));
    let gh = github(&github_args, checkout.as_ref())?.context(
        "GITHUB_TOKEN is not set: setup-automation needs a token that may write the \
         repository's Actions secrets, variables and labels",
    )?;
    let wandb_api_key = required(
        "WANDB_API_KEY",
        "it becomes the repository secret the workflow reads W&B with",
    )?;
    let dispatch_token = lookup("MLWF_DISPATCH_TOKEN")
        .or_else(|| github_args.github_token.clone())
        .map(Secret::new)
        .context("no GitHub token for W&B to send dispatches with")?;
    let payload = payload(root.as_deref())?;

    let settings = store_settings(store, None, lookup);
    let wandb = connect::open_with(&settings, Purpose::Read, &lookup).await?;
    let setup = Setup {
        github: &gh,
        github_api_url: github_args.github_api_url.clone(),
        wandb: &wandb,
        wandb_api_key,
        anthropic_api_key: lookup("ANTHROPIC_API_KEY").map(Secret::new),
        dispatch_token,
        token_secret: args.token_secret.clone(),
        rotate_secrets: args.rotate_secrets,
        payload: payload.clone(),
    };
    let result = automation::setup(&setup).await;
    let (entity, project) = (wandb.entity.clone(), wandb.project.clone());
    wandb.close().await;
    let report = result?;

    let tested = if args.test {
        Some(automation::test_dispatch(&gh, &payload, &entity, &project, args.test_timeout).await?)
    } else {
        None
    };
    if args.json {
        print_json(&serde_json::json!({"setup": report, "test": tested}))?;
    } else {
        let mut text = format!(
            "{} → W&B {}/{} (automation {:?})\n",
            report.repository, report.entity, report.project, report.automation
        );
        for step in &report.steps {
            text += &format!("  {:<9} {}", step.outcome, step.what);
            if let Some(note) = &step.note {
                text += &format!(" ({note})");
            }
            text.push('\n');
        }
        if !report.changed() {
            text += "nothing changed: the repository and W&B were already set up\n";
        }
        if let Some(test) = &tested {
            text += &format!(
                "test dispatch: workflow run {} ended {}{}\n",
                test.run_id,
                test.conclusion.as_deref().unwrap_or("without a conclusion"),
                test.url
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            );
        }
        print(&text)?;
    }
    let failed = tested
        .as_ref()
        .is_some_and(|t| t.conclusion.as_deref() != Some("success"));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The `env` maps of the project's Claude Code settings, the local file winning.
fn settings_env(root: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut merged = HashMap::new();
    for file in SETTINGS_FILES.iter().rev() {
        let path = root.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        if let Some(vars) = value["env"].as_object() {
            for (name, value) in vars {
                if let Some(value) = value.as_str().filter(|v| !v.is_empty()) {
                    merged.insert(name.clone(), value.to_owned());
                }
            }
        }
    }
    Ok(merged)
}

/// The repository's payload template, else mlwf's.
fn payload(root: Option<&Path>) -> anyhow::Result<Value> {
    let path = root.map(|r| r.join(PAYLOAD_FILE));
    let text = match path.as_deref().map(std::fs::read_to_string) {
        Some(Ok(text)) => text,
        _ => DEFAULT_PAYLOAD.to_owned(),
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{PAYLOAD_FILE} is not valid JSON"))?;
    anyhow::ensure!(
        value["event_type"].as_str().is_some() && value["client_payload"].is_object(),
        "{PAYLOAD_FILE} must hold an event_type and a client_payload object (GitHub's \
         repository_dispatch body)"
    );
    Ok(value)
}
