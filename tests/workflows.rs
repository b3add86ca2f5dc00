//! The GitHub workflows and the composite action: actionlint on every workflow (which also
//! checks the inputs passed to the local `./action`), the action's metadata checked here (
//! actionlint takes workflows only), and the rules that keep payloads out of shell scripts.

use std::path::{Path, PathBuf};

use mlwf::analyze::event::{parse_event, EVENT_TYPE};
use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    files
}

fn workflows() -> Vec<PathBuf> {
    let mut files = yaml_files("workflows");
    files.extend(yaml_files(".github/workflows"));
    files.push(root().join("templates/wandb-run-finished.yml"));
    files
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn actionlint_passes_on_every_workflow_and_the_actions_inputs() {
    let Some(actionlint) = crate::util::venv_tool("actionlint") else {
        return;
    };
    let files = workflows();
    assert!(files.len() >= 6, "{files:?}");
    let out = std::process::Command::new(&actionlint)
        .arg("-no-color")
        .arg("-shellcheck=")
        .arg("-pyflakes=")
        .args(&files)
        .current_dir(root())
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `run:` script in a workflow or the action.
fn run_scripts(doc: &Value) -> Vec<String> {
    let mut scripts = Vec::new();
    let mut stack = vec![doc];
    while let Some(value) = stack.pop() {
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    if k.as_str() == Some("run") {
                        if let Some(s) = v.as_str() {
                            scripts.push(s.to_owned());
                        }
                    }
                    stack.push(v);
                }
            }
            Value::Sequence(items) => stack.extend(items),
            _ => {}
        }
    }
    scripts
}

#[test]
fn no_expression_is_interpolated_into_a_shell_script() {
    let mut files = workflows();
    files.push(root().join("action/action.yml"));
    for file in files {
        let doc = load(&file);
        let scripts = run_scripts(&doc);
        for script in &scripts {
            assert!(
                !script.contains("${{"),
                "{}: a run script interpolates an expression; pass it through env:\n{script}",
                file.display()
            );
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("client_payload"), "{}", file.display());
    }
}

#[test]
fn the_action_metadata_is_complete_and_consistent() {
    let action = load(&root().join("action/action.yml"));
    for key in ["name", "description", "author"] {
        assert!(action[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(action["branding"]["icon"].as_str().is_some());
    assert!(action["branding"]["color"].as_str().is_some());
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let inputs = action["inputs"].as_mapping().expect("inputs");
    for (name, input) in inputs {
        assert!(input["description"].as_str().is_some(), "input {name:?}");
    }
    let declared: Vec<&str> = inputs.keys().filter_map(Value::as_str).collect();
    for wanted in [
        "wandb-api-key",
        "wandb-entity",
        "wandb-project",
        "github-token",
        "anthropic-api-key",
        "metric",
        "direction",
        "noise-threshold",
        "baseline-branch",
        "llm",
        "llm-model",
    ] {
        assert!(declared.contains(&wanted), "input {wanted} missing");
    }
    let steps = action["runs"]["steps"].as_sequence().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    for step in steps {
        if step.get("run").is_some() {
            assert_eq!(
                step["shell"].as_str(),
                Some("bash"),
                "composite run steps need a shell"
            );
        }
    }
    let text = std::fs::read_to_string(root().join("action/action.yml")).unwrap();
    let reference = regex::Regex::new(r"\$\{\{\s*(inputs|steps)\.([\w-]+)").unwrap();
    for caps in reference.captures_iter(&text) {
        let (kind, name) = (&caps[1], &caps[2]);
        let known = match kind {
            "inputs" => declared.contains(&name),
            _ => ids.contains(&name),
        };
        assert!(known, "{kind}.{name} is referenced but not declared");
    }
    let outputs = action["outputs"].as_mapping().expect("outputs");
    for name in ["verdict", "run-id", "comment-url", "delta"] {
        let output = &outputs[name];
        assert!(output["value"]
            .as_str()
            .is_some_and(|v| v.contains("steps.analyze.outputs")));
    }
    assert!(root().join("action/install.sh").exists());
}

#[test]
fn the_run_finished_workflow_listens_for_the_dispatch_with_least_privilege() {
    for path in [
        "templates/wandb-run-finished.yml",
        ".github/workflows/wandb-run-finished.yml",
    ] {
        let doc = load(&root().join(path));
        let on = &doc["on"];
        let types = on["repository_dispatch"]["types"]
            .as_sequence()
            .expect("types");
        assert_eq!(types, &[Value::from(EVENT_TYPE)], "{path}");
        assert!(on.get("workflow_dispatch").is_some() && on.get("schedule").is_some());
        let permissions = doc["permissions"].as_mapping().expect("permissions");
        for (scope, level) in permissions {
            let allowed = matches!(scope.as_str(), Some("issues" | "pull-requests"));
            assert!(
                level.as_str() == Some("read") || allowed,
                "{path}: {scope:?} is {level:?}"
            );
        }
    }
}

#[test]
fn this_repositorys_copies_match_the_templates() {
    for name in ["ci.yml", "release.yml"] {
        let template = std::fs::read_to_string(root().join("workflows").join(name)).unwrap();
        let copy = std::fs::read_to_string(root().join(".github/workflows").join(name)).unwrap();
        assert_eq!(template, copy, "{name} drifted from workflows/{name}");
    }
}

#[test]
fn the_webhook_template_and_the_act_fixture_are_dispatches_mlwf_reads() {
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("templates/wandb-webhook-payload.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(template["event_type"], EVENT_TYPE);
    // As GitHub delivers it: the payload under `client_payload`, W&B's variables unsubstituted
    // when the automation did not fill them.
    let delivered =
        serde_json::json!({"action": EVENT_TYPE, "client_payload": template["client_payload"]});
    let dispatch = parse_event(&delivered.to_string()).unwrap();
    assert!(dispatch.warnings.is_empty(), "{:?}", dispatch.warnings);
    assert_eq!(dispatch.project, None);

    let fixture =
        std::fs::read_to_string(root().join("tests/fixtures/act/wandb-run-finished.json")).unwrap();
    let dispatch = parse_event(&fixture).unwrap();
    assert_eq!(dispatch.entity.as_deref(), Some("my-team"));
    assert_eq!(dispatch.project.as_deref(), Some("mlwf"));
    assert!(dispatch.warnings.is_empty());
}

/// Serves `archive` (and, beside it, `checksum`) for every release download path.
async fn release_server(archive: Vec<u8>, checksum: String) -> String {
    use axum::extract::Path as UrlPath;
    let app = axum::Router::new().route(
        "/{owner}/{repo}/releases/download/{tag}/{file}",
        axum::routing::get(
            move |UrlPath((_, _, _, file)): UrlPath<(String, String, String, String)>| {
                let (archive, checksum) = (archive.clone(), checksum.clone());
                async move {
                    if file.ends_with(".sha256") {
                        checksum.into_bytes()
                    } else {
                        archive
                    }
                }
            },
        ),
    );
    let (listener, url) = mlwf::testkit::bind_loopback().await.unwrap();
    mlwf::testkit::serve(listener, app);
    url
}

/// Runs `action/install.sh` for release `v9.9.9` of `OWNER/mlwf` served at `server`, from an
/// action directory with no source checkout beside it.
async fn install(server: &str, scratch: &Path) -> (bool, String, String) {
    let action = scratch.join("action");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::copy(root().join("action/install.sh"), action.join("install.sh")).unwrap();
    let out = tokio::process::Command::new("bash")
        .arg(action.join("install.sh"))
        .env("GITHUB_SERVER_URL", server)
        .env("MLWF_VERSION", "v9.9.9")
        .env("MLWF_ACTION_REPOSITORY", "OWNER/mlwf")
        .env("MLWF_ACTION_PATH", &action)
        .env("RUNNER_TEMP", scratch.join("tmp"))
        .env("GITHUB_OUTPUT", scratch.join("output"))
        .output()
        .await
        .unwrap();
    let output = std::fs::read_to_string(scratch.join("output")).unwrap_or_default();
    (
        out.status.success(),
        output,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_action_installs_a_release_only_when_its_checksum_matches() {
    let scratch = tempfile::tempdir().unwrap();
    let staging = scratch.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let binary = staging.join("mlwf");
    std::fs::write(&binary, "#!/bin/sh\necho mlwf 9.9.9\n").unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tarball = scratch.path().join("mlwf.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .arg("mlwf")
        .status()
        .unwrap();
    assert!(status.success());
    let archive = std::fs::read(&tarball).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&archive))
    };

    let good = release_server(archive.clone(), format!("{digest}  mlwf.tar.gz\n")).await;
    let dir = scratch.path().join("good");
    let (ok, output, stderr) = install(&good, &dir).await;
    assert!(ok, "{stderr}");
    assert!(
        output.starts_with("bin=") && output.trim_end().ends_with("/mlwf-bin/mlwf"),
        "{output}"
    );

    let tampered = release_server(archive, format!("{}  mlwf.tar.gz\n", "0".repeat(64))).await;
    let dir = scratch.path().join("bad");
    let (ok, output, stderr) = install(&tampered, &dir).await;
    assert!(!ok, "a bad checksum must fail the install");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    // No fallback to building from source, and no binary handed on.
    assert!(!stderr.contains("building from source"), "{stderr}");
    assert!(output.is_empty(), "{output}");
}
