//! `mlwf setup-automation`: connects a repository to W&B so that every run that ends starts
//! the `wandb-run-finished` workflow. GitHub gets the secrets and variables the workflow reads
//! and the labels `analyze` sets; W&B gets a webhook integration to the repository's
//! `/dispatches` endpoint and an automation on run state FINISHED/FAILED whose payload is the
//! project's template. Every step looks before it writes, so a second run changes nothing.

use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::analyze::event::EVENT_TYPE;
use crate::connect::{Location, Store};
use crate::experiment::verdict::LABELS;
use crate::github::{Change, GitHub, PublicKey};
use crate::secrets::Secret;
use crate::wandb::{AutomationSpec, DEFAULT_BASE_URL};

/// The W&B team secret that holds the GitHub token W&B dispatches with, by default.
pub const DEFAULT_TOKEN_SECRET: &str = "GITHUB_DISPATCH_TOKEN";
/// The run states that end a run, as W&B's automations name them.
pub const END_STATES: [&str; 2] = ["FINISHED", "FAILED"];
/// The payload W&B sends, when the repository has no `.github/wandb-webhook-payload.json`.
pub const DEFAULT_PAYLOAD: &str = include_str!("../templates/wandb-webhook-payload.json");

/// Everything `setup` needs, resolved by the command.
pub struct Setup<'a> {
    pub github: &'a GitHub,
    /// The GitHub REST API base the dispatch URL is built on.
    pub github_api_url: String,
    pub wandb: &'a Store,
    /// Stored as the repository secret `WANDB_API_KEY` (what the workflow reads W&B with).
    pub wandb_api_key: Secret,
    /// Stored as `ANTHROPIC_API_KEY` when given (failure narratives).
    pub anthropic_api_key: Option<Secret>,
    /// The GitHub token W&B sends dispatches with, kept as the team secret `token_secret`.
    pub dispatch_token: Secret,
    pub token_secret: String,
    /// Replace repository secrets that exist (GitHub never shows their values).
    pub rotate_secrets: bool,
    /// The payload template (`${…}` variables as W&B fills them).
    pub payload: Value,
}

/// One thing `setup` looked at, and what it did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    /// `created`, `updated`, `unchanged`, or `manual` (a step only the user can take).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub repository: String,
    pub entity: String,
    pub project: String,
    pub automation: String,
    pub steps: Vec<Step>,
}

impl Report {
    /// Whether anything was created or updated.
    pub fn changed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.outcome, "created" | "updated"))
    }
}

fn outcome(change: Change) -> &'static str {
    match change {
        Change::Created => "created",
        Change::Updated => "updated",
        Change::Unchanged => "unchanged",
    }
}

fn step(what: impl Into<String>, outcome: &'static str, note: Option<String>) -> Step {
    Step {
        what: what.into(),
        outcome,
        note,
    }
}

/// The W&B server's base URL the workflow must reach; `None` for W&B's own cloud.
fn custom_base_url(store: &Store) -> anyhow::Result<Option<String>> {
    match &store.location {
        Location::Remote { base_url } => {
            let default = base_url.trim_end_matches('/') == DEFAULT_BASE_URL.trim_end_matches('/');
            Ok((!default).then(|| base_url.trim_end_matches('/').to_owned()))
        }
        Location::Embedded { dir } => anyhow::bail!(
            "the embedded store ({}) lives on this machine, where the GitHub workflow cannot \
             read it: set WANDB_API_KEY (and WANDB_BASE_URL for a self-hosted W&B or `mlwf \
             server`) to set up the automation on a server the workflow can reach",
            dir.display()
        ),
    }
}

/// A name W&B accepts for an integration (words of `[-\w]`, at most 64 characters).
pub fn integration_name(github: &GitHub) -> String {
    let repo = github.repo();
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let name = format!("mlwf-dispatch-{}-{}", clean(&repo.owner), clean(&repo.name));
    name.chars().take(64).collect()
}

/// The automation's name: one per repository and project.
pub fn automation_name(github: &GitHub, project: &str) -> String {
    format!("mlwf: {} runs of {project} end", github.repo())
}

pub async fn setup(s: &Setup<'_>) -> anyhow::Result<Report> {
    let base_url = custom_base_url(s.wandb)?;
    let gh = s.github;
    let mut steps = Vec::new();

    // GitHub: the secrets, variables and labels the workflow and `analyze` need.
    let mut key: Option<PublicKey> = None;
    let secrets = [
        ("WANDB_API_KEY", Some(&s.wandb_api_key)),
        ("ANTHROPIC_API_KEY", s.anthropic_api_key.as_ref()),
    ];
    for (name, value) in secrets {
        let Some(value) = value else {
            steps.push(step(
                format!("GitHub secret {name}"),
                "manual",
                Some("not given: failure reports go without a narrative".into()),
            ));
            continue;
        };
        let what = format!("GitHub secret {name}");
        if !s.rotate_secrets && gh.has_secret(name).await? {
            steps.push(step(
                what,
                "unchanged",
                Some("exists (--rotate-secrets replaces it)".into()),
            ));
            continue;
        }
        let key = match &key {
            Some(key) => key,
            None => key.insert(gh.actions_public_key().await?),
        };
        let change = gh.set_secret(key, name, value).await?;
        steps.push(step(what, outcome(change), None));
    }
    let mut variables = vec![
        ("WANDB_ENTITY", s.wandb.entity.clone()),
        ("WANDB_PROJECT", s.wandb.project.clone()),
    ];
    if let Some(url) = &base_url {
        variables.push(("WANDB_BASE_URL", url.clone()));
    }
    for (name, value) in variables {
        let change = gh
            .set_variable(name, &value)
            .await
            .with_context(|| format!("setting the variable {name}"))?;
        steps.push(step(
            format!("GitHub variable {name}"),
            outcome(change),
            None,
        ));
    }
    for (name, color, description) in LABELS {
        let change = gh
            .set_label(name, color, description)
            .await
            .with_context(|| format!("setting the label {name}"))?;
        steps.push(step(format!("GitHub label {name}"), outcome(change), None));
    }

    // W&B: the token as a team secret, the integration, the automation.
    let client = &s.wandb.client;
    let entity = &s.wandb.entity;
    let what = format!("W&B team secret {}", s.token_secret);
    match client
        .set_team_secret(entity, &s.token_secret, &s.dispatch_token)
        .await?
    {
        Some(changed) => steps.push(step(
            what,
            if changed { "updated" } else { "unchanged" },
            None,
        )),
        None => steps.push(step(
            what,
            "manual",
            Some(format!(
                "create it in W&B (team settings → Secrets) holding a GitHub token that may \
                 create repository dispatches for {}; W&B has no API for team secrets",
                gh.repo()
            )),
        )),
    }
    let url = format!(
        "{}/repos/{}/{}/dispatches",
        s.github_api_url.trim_end_matches('/'),
        gh.repo().owner,
        gh.repo().name
    );
    let name = integration_name(gh);
    let existing = client
        .webhook_integrations(entity)
        .await?
        .into_iter()
        .find(|i| i.name == name);
    let integration = match existing {
        Some(found) if found.url == url => {
            steps.push(step(format!("W&B webhook {name}"), "unchanged", None));
            found
        }
        Some(found) => anyhow::bail!(
            "the W&B webhook integration {name} exists but sends to {}, not {url}; W&B cannot \
             change an integration's URL: delete it in the team settings and run this again",
            found.url
        ),
        None => {
            let created = client
                .create_webhook_integration(entity, &name, &url, Some(&s.token_secret), None)
                .await
                .context("creating the W&B webhook integration")?;
            steps.push(step(format!("W&B webhook {name}"), "created", None));
            created
        }
    };
    let project_id = client.ensure_project(entity, &s.wandb.project).await?;
    let automation = automation_name(gh, &s.wandb.project);
    let spec = AutomationSpec::on_run_state(
        &automation,
        "Managed by `mlwf setup-automation`: starts the wandb-run-finished workflow.",
        &project_id,
        &END_STATES,
        &integration.id,
        &s.payload,
    );
    let what = format!("W&B automation {automation:?}");
    match client
        .automations(entity)
        .await?
        .into_iter()
        .find(|a| a.spec.name == automation)
    {
        Some(found) if found.spec.same_as(&spec) => steps.push(step(what, "unchanged", None)),
        Some(found) => {
            client.update_automation(&found.id, &spec).await?;
            steps.push(step(what, "updated", None));
        }
        None => {
            client
                .create_automation(&spec)
                .await
                .context("creating the W&B automation")?;
            steps.push(step(what, "created", None));
        }
    }
    Ok(Report {
        repository: gh.repo().to_string(),
        entity: entity.clone(),
        project: s.wandb.project.clone(),
        automation,
        steps,
    })
}

/// What `--test` saw: the workflow run the dispatch started.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub run_id: u64,
    pub conclusion: Option<String>,
    pub url: Option<String>,
}

/// Sends one `repository_dispatch` the way the automation would (its payload, variables filled
/// for a test) and waits for the workflow run it starts to complete.
pub async fn test_dispatch(
    github: &GitHub,
    payload: &Value,
    entity: &str,
    project: &str,
    timeout: Duration,
) -> anyhow::Result<TestOutcome> {
    let before: Vec<u64> = github
        .workflow_runs("repository_dispatch")
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let client_payload = fill_test_payload(&payload["client_payload"], entity, project);
    github.dispatch(EVENT_TYPE, &client_payload).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let runs = github.workflow_runs("repository_dispatch").await?;
        if let Some(run) = runs.into_iter().find(|r| !before.contains(&r.id)) {
            if run.status.as_deref() == Some("completed") {
                return Ok(TestOutcome {
                    run_id: run.id,
                    conclusion: run.conclusion,
                    url: run.html_url,
                });
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no workflow run started by the test dispatch completed within {}: is \
             .github/workflows/wandb-run-finished.yml on the default branch, and are Actions \
             enabled?",
            humantime::format_duration(timeout)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The payload with W&B's variables filled as a test event would fill them.
fn fill_test_payload(template: &Value, entity: &str, project: &str) -> Value {
    let text = template.to_string();
    let filled = text
        .replace("${event_type}", "TEST")
        .replace("${event_author}", "mlwf-setup-automation")
        .replace("${entity_name}", entity)
        .replace("${project_name}", project);
    serde_json::from_str(&filled).unwrap_or_else(|_| template.clone())
}
