//! `mlwf init` in an empty repository, again, and after a hand edit; the 14 skills' frontmatter;
//! and every `mlwf …` command line of the templates, the skills, the README and CLAUDE.md parsed
//! by the real command line, so a renamed flag breaks the build, not the user.

use std::path::Path;

use clap::Parser as _;
use mlwf::scaffold::{skill_texts, SKILLS};

use crate::launch::{git, output, text};
use crate::util;

async fn init(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut command = util::mlwf_async(dir);
    command.arg("init").args(args);
    output(&mut command).await
}

#[tokio::test]
async fn init_writes_every_file_then_changes_nothing_and_refuses_to_overwrite_a_hand_edit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("digits");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let out = init(&repo, &["--description", "Learns to add."]).await;
    assert!(out.status.success(), "{}", text(&out));
    let mut expected = vec![
        "mlwf.toml",
        "CLAUDE.md",
        ".claude/settings.json",
        ".claude/rules/tracking.md",
        ".claude/rules/git.md",
        ".claude/rules/launch.md",
        ".claude/rules/environment.md",
        ".claude/agents/experiment-runner.md",
        ".github/workflows/wandb-run-finished.yml",
        ".github/wandb-webhook-payload.json",
        "docs/baselines.md",
        ".gitignore",
        ".claude/mlwf-managed.json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    expected.extend(
        SKILLS
            .iter()
            .map(|s| format!(".claude/skills/{s}/SKILL.md")),
    );
    for file in &expected {
        assert!(repo.join(file).is_file(), "{file} is missing");
    }
    let claude = std::fs::read_to_string(repo.join("CLAUDE.md")).unwrap();
    assert!(
        claude.starts_with("# digits\n\nLearns to add.\n"),
        "{claude}"
    );
    let ignored = std::fs::read_to_string(repo.join(".gitignore")).unwrap();
    assert!(
        ignored.contains(".claude/settings.local.json\n"),
        "{ignored}"
    );
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join(".claude/settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["env"]["WANDB_PROJECT"], "digits");
    let workflow =
        std::fs::read_to_string(repo.join(".github/workflows/wandb-run-finished.yml")).unwrap();
    assert!(
        workflow.contains(&format!("/action@v{}", env!("CARGO_PKG_VERSION"))),
        "the workflow is pinned to this release: {workflow}"
    );

    // Again: nothing changes.
    let snapshot = |repo: &Path| -> Vec<(String, String)> {
        expected
            .iter()
            .map(|f| (f.clone(), std::fs::read_to_string(repo.join(f)).unwrap()))
            .collect()
    };
    let before = snapshot(&repo);
    let out = init(&repo, &["--description", "Learns to add."]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("nothing to change"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&repo), before);

    // A baseline table row (merge-winners' edit) is not a hand edit; a changed rule is.
    let with_row = claude.replace(
        "|---|---|---|---|---|\n",
        "|---|---|---|---|---|\n| baseline-v1 | `abc` | - | val/loss 1.0 | 2026-12-04 |\n",
    );
    std::fs::write(repo.join("CLAUDE.md"), &with_row).unwrap();
    let out = init(&repo, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let edited = with_row.replace("## The loop", "## The loop (my way)");
    std::fs::write(repo.join("CLAUDE.md"), &edited).unwrap();
    let out = init(&repo, &[]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        said.contains("--force") && said.contains("CLAUDE.md was edited by hand"),
        "{said}"
    );
    assert!(
        said.contains("- ## The loop (my way)") && said.contains("+ ## The loop"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("CLAUDE.md")).unwrap(),
        edited
    );
    let out = init(&repo, &["--description", "Learns to add.", "--force"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let forced = std::fs::read_to_string(repo.join("CLAUDE.md")).unwrap();
    assert!(
        !forced.contains("(my way)") && forced.contains("| baseline-v1 |"),
        "{forced}"
    );
}

#[test]
fn all_fourteen_skills_have_the_frontmatter_claude_code_expects() {
    assert_eq!(SKILLS.len(), 14);
    for (name, text) in SKILLS.iter().zip(skill_texts()) {
        let rest = text.strip_prefix("---\n").expect("frontmatter first");
        let (front, body) = rest.split_once("\n---\n").expect("frontmatter closed");
        let front: serde_yaml_ng::Value = serde_yaml_ng::from_str(front).unwrap();
        assert_eq!(front["name"].as_str(), Some(*name), "{name}");
        let description = front["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("Use "),
            "{name}: say when to use it: {description}"
        );
        assert!(
            front["allowed-tools"]
                .as_str()
                .is_some_and(|t| t.contains("mlwf")),
            "{name}"
        );
        assert!(body.contains("mlwf "), "{name} calls mlwf");
    }
}

/// Every `mlwf …` command in `text`: fenced code lines, and inline code spans unless they show
/// usage syntax (`[optional]`, `a|b`, `…`, `<placeholder>`).
fn command_lines(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let line = line.trim().trim_start_matches("$ ");
            if line.starts_with("mlwf ") && !line.ends_with('\\') {
                found.push(line.to_owned());
            }
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            let usage = ['[', '|', '…', '<'].iter().any(|c| span.contains(*c));
            if i % 2 == 1 && span.starts_with("mlwf ") && !usage {
                found.push(span.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_mlwf_command_in_the_templates_skills_readme_and_claude_md_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("CLAUDE.md")];
    let mut dirs = vec![root.join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in command_lines(&text) {
            let words = shlex::split(&line).unwrap_or_else(|| panic!("{line:?} does not split"));
            let parsed = mlwf::cli::Cli::try_parse_from(&words);
            // A command group named in prose (`mlwf queue`) is a reference, not a command.
            let group = clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            if let Err(error) = parsed.as_ref().map(drop).map_err(|e| e.kind()) {
                if error == group {
                    continue;
                }
            }
            if let Err(error) = parsed {
                panic!("{}: `{line}` does not parse:\n{error}", file.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} command lines found");
}

/// `mlwf setup-automation` in an `init`ed repository, against the fake GitHub and the fixture's
/// server: secrets sealed to the repository's key, variables, labels, the W&B secret, webhook
/// and automation; a second run changes nothing; `--test` waits for the dispatched workflow run.
/// The keys come from the environment and from `.claude/settings.local.json`, and none is
/// printed.
#[tokio::test]
async fn setup_automation_connects_github_and_wandb_once_and_says_so_the_second_time() {
    use crate::util::{Fixture, ENTITY, KEY, PROJECT};
    use mlwf::testkit::github::FakeGitHub;

    const TOKEN: &str = "ghp_setup_token_0123456789";
    const ANTHROPIC: &str = "sk-ant-setup-test-0123456789";
    let t = Fixture::start().await;
    let github = FakeGitHub::start("octo", "lab", TOKEN).await.unwrap();
    let repo = t.path("lab");
    git(&repo, &["init", "-q", "-b", "main"]);
    assert!(init(&repo, &[]).await.status.success());
    std::fs::write(
        repo.join(".claude/settings.local.json"),
        format!(r#"{{"env": {{"ANTHROPIC_API_KEY": "{ANTHROPIC}"}}}}"#),
    )
    .unwrap();
    let setup = |args: &[&str]| {
        let mut command =
            crate::launch::mlwf(&t, &repo, &["setup-automation", "--repo", "octo/lab"]);
        command
            .args(args)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", github.url());
        command
    };
    let first = output(&mut setup(&["--json"])).await;
    assert!(first.status.success(), "{}", text(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let outcomes: Vec<(String, String)> = report["setup"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["what"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| o == "created" || o == "updated"),
        "{outcomes:#?}"
    );
    assert_eq!(github.secret("WANDB_API_KEY").as_deref(), Some(KEY));
    assert_eq!(
        github.secret("ANTHROPIC_API_KEY").as_deref(),
        Some(ANTHROPIC)
    );
    let variables = github.variables();
    assert_eq!(variables["WANDB_ENTITY"], ENTITY);
    assert_eq!(variables["WANDB_PROJECT"], PROJECT);
    assert_eq!(variables["WANDB_BASE_URL"], t.server.base_url());
    for label in ["mlwf:better", "mlwf:worse", "mlwf:failed"] {
        assert!(github.repo_labels().contains(&label.to_owned()), "{label}");
    }
    assert_eq!(
        t.client.team_secret_names(ENTITY).await.unwrap().unwrap(),
        ["GITHUB_DISPATCH_TOKEN"]
    );

    let second = output(&mut setup(&[])).await;
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(said.contains("nothing changed"), "{said}");
    let hooks = t.client.webhook_integrations(ENTITY).await.unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(
        hooks[0].url,
        format!("{}/repos/octo/lab/dispatches", github.url())
    );
    let automations = t.client.automations(ENTITY).await.unwrap();
    assert_eq!(automations.len(), 1, "{automations:?}");
    assert!(automations[0].spec.event_filter.contains("FAILED"));

    // The automation fires at this repository's /dispatches with the token W&B holds.
    t.upsert_run(ENTITY, PROJECT, "ends", serde_json::json!({}))
        .await;
    t.file_stream(
        ENTITY,
        PROJECT,
        "ends",
        serde_json::json!({"complete": true, "exitcode": 0}),
    )
    .await;
    let mut dispatches = Vec::new();
    for _ in 0..100 {
        dispatches = github.dispatches();
        if !dispatches.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(dispatches.len(), 1, "no dispatch arrived");
    assert_eq!(dispatches[0]["event_type"], "wandb_run_finished");
    assert_eq!(dispatches[0]["client_payload"]["project_name"], PROJECT);
    assert_eq!(dispatches[0]["client_payload"]["event_type"], "RUN_STATE");

    // --test: one dispatch, and the workflow run it starts.
    github.complete_dispatched_runs("success");
    let tested = output(&mut setup(&["--test", "--json"])).await;
    assert!(tested.status.success(), "{}", text(&tested));
    let report: serde_json::Value = serde_json::from_slice(&tested.stdout).unwrap();
    assert_eq!(report["test"]["conclusion"], "success", "{report:#}");
    assert_eq!(github.dispatches().len(), 2);

    for out in [&first, &second, &tested] {
        let all = text(out);
        for secret in [KEY, TOKEN, ANTHROPIC] {
            assert!(!all.contains(secret), "a secret was printed: {all}");
        }
    }
    t.shutdown().await;
}
