//! The agent image: it builds on the test base from the host's binary, runs, reports its health,
//! and stays small; every Dockerfile passes hadolint and the compose file validates.

use std::path::{Path, PathBuf};

use std::process::Command;

use super::{docker, images, root, said};

/// What the runtime stage adds on top of its base must stay small (the CUDA base aside).
const ADDED_LIMIT_MB: f64 = 150.0;

fn image_bytes(image: &str) -> f64 {
    docker(&["image", "inspect", "--format", "{{.Size}}", image])
        .parse()
        .unwrap()
}

#[test]
fn the_agent_image_builds_on_the_test_base_runs_and_stays_small() {
    let Some(images) = images() else {
        return;
    };
    let version = docker(&["run", "--rm", &images.agent, "--version"]);
    assert_eq!(version, format!("mlwf-agent {}", env!("CARGO_PKG_VERSION")));
    let user = docker(&["run", "--rm", "--entrypoint", "id", &images.agent, "-u"]);
    assert_eq!(user, "10001", "the agent runs as its own user, not root");
    for tool in ["git", "ssh", "tini", "docker"] {
        docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            &images.agent,
            "-c",
            &format!("command -v {tool}"),
        ]);
    }

    let mb = |bytes: f64| bytes / 1e6;
    let (total, base) = (image_bytes(&images.agent), image_bytes(&images.base));
    let added = mb(total - base);
    println!(
        "agent image {}: {:.1} MB, of which {added:.1} MB on top of the base {} ({:.1} MB)",
        images.agent,
        mb(total),
        images.base,
        mb(base)
    );
    assert!(
        added <= ADDED_LIMIT_MB,
        "the runtime layers add {added:.1} MB"
    );

    // Unhealthy before any agent polled, with the reason.
    let out = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "mlwf", &images.agent])
        .args(["agent", "--healthcheck"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no heartbeat"),
        "{}",
        said(&out)
    );
}

/// Every `Dockerfile*` of the repository, outside build output.
fn dockerfiles(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                dockerfiles(&path, found);
            }
        } else if name.starts_with("Dockerfile") {
            found.push(path);
        }
    }
}

#[test]
fn hadolint_passes_on_every_dockerfile() {
    let Some(hadolint) = crate::util::venv_tool("hadolint") else {
        return;
    };
    let mut files = Vec::new();
    dockerfiles(&root(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("agent-image/Dockerfile")),
        "{files:?}"
    );
    for file in files {
        let out = Command::new(&hadolint).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), said(&out));
    }
}

#[test]
fn the_compose_file_validates() {
    // `docker compose` (the plugin) where it is installed, else the standalone docker-compose.
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Command::new("docker-compose")
    } else {
        let why = "neither `docker compose` nor docker-compose is installed";
        assert!(std::env::var("CI").is_err(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("agent.env");
    std::fs::copy(root().join("agent-image/agent.env.example"), &env).unwrap();
    let out = command
        .args(["--file", "agent-image/compose.yaml", "config"])
        .env("MLWF_ENV_FILE", &env)
        .env("WANDB_QUEUE", "gpu-a100")
        .env("MLWF_GPUS", "0,1")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let config: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let agent = &config["services"]["agent"];
    assert_eq!(
        agent["command"],
        serde_json::json!(["--queue", "gpu-a100", "--gpus", "0,1"])
    );
    let devices = &agent["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(devices["capabilities"][0], "gpu", "{config}");
    let volumes = agent["volumes"].to_string();
    assert!(volumes.contains("/var/run/docker.sock"), "{volumes}");
}
