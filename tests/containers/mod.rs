//! Containers in the machine's real Docker engine, with no registry: the test base is made from
//! Debian's packages (`scripts/base-image.sh`), the agent image is built on it from the binary
//! under test, and containers talk over loopback or a private network each test creates.
//!
//! Without an engine the tests say SKIPPED; under `CI=true` (or `MLWF_REQUIRE_DOCKER`) they fail.

mod image;
mod runner;
mod two_containers;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::launch::text as said;
use std::sync::OnceLock;

/// The agent image under test, and the base it was built on.
pub struct Images {
    pub agent: String,
    pub base: String,
}

/// The images, built once per test run; `None` (the test is skipped, and says so) when this
/// machine has no Docker engine or no debootstrap, unless CI requires them.
pub fn images() -> Option<&'static Images> {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    match IMAGES.get_or_init(build_images) {
        Ok(images) => Some(images),
        Err(why) => {
            let required = std::env::var("CI").is_ok_and(|ci| ci == "true")
                || std::env::var_os("MLWF_REQUIRE_DOCKER").is_some();
            assert!(!required, "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `Err` says what is missing; anything else that goes wrong fails the test.
fn build_images() -> Result<Images, String> {
    let base = base_image("minimal")?;
    let cli = base_image("docker-cli")?;
    // The binary under test without its debug info: the image carries what runs.
    let binary = Path::new("target/agent-image/mlwf");
    std::fs::create_dir_all(root().join("target/agent-image")).unwrap();
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(root().join(binary))
        .arg(env!("CARGO_BIN_EXE_mlwf"))
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_mlwf"), root().join(binary)).unwrap();
    }
    let agent = "mlwf-agent:test".to_owned();
    let built = Command::new("docker")
        .args(["build", "--quiet", "--file", "agent-image/Dockerfile"])
        .args(["--build-arg", &format!("BUILD_BASE={base}")])
        .args(["--build-arg", &format!("RUNTIME_BASE={base}")])
        .args(["--build-arg", &format!("DOCKER_CLI={cli}")])
        .args(["--build-arg", &format!("MLWF_BINARY={}", binary.display())])
        .args(["--tag", &agent, "."])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(built.status.success(), "docker build: {}", said(&built));
    Ok(Images { agent, base })
}

/// `scripts/base-image.sh KIND`: the image name, or what is missing (its exit status 3).
fn base_image(kind: &str) -> Result<String, String> {
    let out = Command::new("scripts/base-image.sh")
        .arg(kind)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run scripts/base-image.sh: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        Some(3) => Err(stderr.trim().to_owned()),
        _ => panic!("scripts/base-image.sh {kind}: {}", said(&out)),
    }
}

/// `docker ARGS`; panics with what docker said unless it succeeds; returns stdout, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", said(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Containers and networks a test made, removed when it ends however it ends.
#[derive(Default)]
pub struct Cleanup {
    names: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    /// A name for a container or network of this test, removed at the end.
    pub fn container(&mut self, what: &str) -> String {
        let name = format!("mlwf-test-{what}-{}", mlwf::wandb::random_id(8));
        self.names.push(name.clone());
        name
    }

    pub fn network(&mut self) -> String {
        let name = format!("mlwf-test-net-{}", mlwf::wandb::random_id(8));
        docker(&["network", "create", &name]);
        self.networks.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("docker")
                .args(["rm", "--force", name])
                .output();
        }
        for network in &self.networks {
            let _ = Command::new("docker")
                .args(["network", "rm", network])
                .output();
        }
    }
}

/// Names of the containers, running or not, that carry `label=value`.
pub fn labelled(label: &str, value: &str) -> Vec<String> {
    let filter = format!("label={label}={value}");
    docker(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// An env file for `docker run --env-file`, so that no key is on a command line.
pub fn env_file(dir: &Path, name: &str, vars: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}
