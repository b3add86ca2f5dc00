//! `mlwf server` in one container, the agent image in another, on a private network: a job
//! pushed with `mlwf launch` runs to a finished run, an agent container stopped mid-job requeues
//! it for a new agent container, which finishes the same run, and an agent container with the
//! docker socket runs a `local-container` job as a sibling container.

use std::time::Duration;

use mlwf::experiment::keys;
use mlwf::wandb::Client;
use serde_json::{json, Value};

use super::{docker, env_file, images, Cleanup, Images};
use crate::launch::{eventually, first_checkpoint, output, text, Repos, QUEUE, QUICK_TRAIN};
use crate::util::{self, ENTITY, KEY, PROJECT};

/// A server container on its own network, reachable from the host on a loopback port.
struct Stack<'a> {
    images: &'a Images,
    cleanup: Cleanup,
    network: String,
    client: Client,
    url: String,
    repos: Repos,
    dir: tempfile::TempDir,
}

impl<'a> Stack<'a> {
    async fn start(images: &'a Images) -> Stack<'a> {
        let dir = tempfile::tempdir().unwrap();
        let mut cleanup = Cleanup::default();
        let network = cleanup.network();
        let server = cleanup.container("server");
        let keys = env_file(dir.path(), "server.env", &[("MLWF_SERVER_API_KEYS", KEY)]);
        docker(&[
            "run",
            "--detach",
            "--name",
            &server,
            "--network",
            &network,
            "--network-alias",
            "server",
            "--publish",
            "127.0.0.1::8080",
            "--env-file",
            keys.to_str().unwrap(),
            "--entrypoint",
            "mlwf",
            &images.agent,
            "server",
            "--listen",
            "0.0.0.0:8080",
            "--data",
            "/tmp/server",
        ]);
        let port = docker(&["port", &server, "8080/tcp"]);
        let url = format!("http://{}", port.lines().next().unwrap());
        let client = Client::new(util::settings(&url)).unwrap();
        eventually(Duration::from_secs(30), "the server container", || async {
            client
                .create_run_queue(ENTITY, QUEUE, "local-process", json!({}))
                .await
                .ok()
        })
        .await;
        let repos = Repos::new(&dir.path().join("repos"), &[("NOTES.md", "idea\n")]);
        repos.push();
        Stack {
            images,
            cleanup,
            network,
            client,
            url,
            repos,
            dir,
        }
    }

    /// `mlwf launch` on the host, against the server container.
    async fn launch(&self, sets: &[&str]) {
        self.launch_to(QUEUE, sets).await;
    }

    async fn launch_to(&self, queue: &str, sets: &[&str]) {
        let mut args = vec!["launch", "--queue", queue, "--json"];
        args.extend_from_slice(QUICK_TRAIN);
        args.extend_from_slice(sets);
        let out = output(
            util::mlwf_async(&self.repos.work)
                .args(&args)
                .env("WANDB_BASE_URL", &self.url)
                .env("WANDB_API_KEY", KEY)
                .env("WANDB_ENTITY", ENTITY)
                .env("WANDB_PROJECT", PROJECT)
                .env("MLWF_LOG", "warn")
                .envs(self.repos.ssh_env()),
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Starts an agent container on the network; the repositories are mounted where the job
    /// records them, and the fake ssh reaches them.
    fn agent(&mut self, args: &[&str]) -> String {
        self.agent_with(&[], args)
    }

    /// [`Stack::agent`] with more `docker run` flags.
    fn agent_with(&mut self, docker_flags: &[&str], args: &[&str]) -> String {
        let name = self.cleanup.container("agent");
        let repos = self.dir.path().join("repos");
        let fakessh = self.repos.fakessh.display().to_string();
        let gitconfig = repos.join("gitconfig");
        std::fs::write(&gitconfig, "[safe]\n\tdirectory = *\n").unwrap();
        let gitconfig = gitconfig.display().to_string();
        let env = env_file(
            self.dir.path(),
            &format!("{name}.env"),
            &[
                ("WANDB_BASE_URL", "http://server:8080"),
                ("WANDB_API_KEY", KEY),
                ("WANDB_ENTITY", ENTITY),
                ("WANDB_PROJECT", PROJECT),
                ("MLWF_LOG", "warn"),
                ("GIT_SSH_COMMAND", &fakessh),
                ("GIT_SSH_VARIANT", "simple"),
                // The mounted repositories belong to the host's user, not the agent's (a
                // global file: git drops GIT_CONFIG_* on the way to upload-pack).
                ("GIT_CONFIG_GLOBAL", &gitconfig),
            ],
        );
        let mount = format!("{}:{}:ro", repos.display(), repos.display());
        let mut run = vec![
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            &self.network,
            "--env-file",
            env.to_str().unwrap(),
            "--volume",
            &mount,
        ];
        run.extend_from_slice(docker_flags);
        run.extend_from_slice(&[&self.images.agent, "--grace", "30s"]);
        run.extend_from_slice(args);
        docker(&run);
        name
    }

    async fn run(&self, id: &str) -> Option<mlwf::wandb::RunInfo> {
        self.client.run(ENTITY, PROJECT, id).await.unwrap()
    }

    /// The run of the first item of `queue`; `said` (the agent's output) explains a failure.
    async fn first_run(&self, queue: &str, said: &str) -> mlwf::wandb::RunInfo {
        let items = self.client.queue_items(ENTITY, queue).await.unwrap();
        let run_id = items[0]
            .associated_run_id
            .clone()
            .unwrap_or_else(|| panic!("no run: {items:?}\n{said}"));
        self.run(&run_id)
            .await
            .unwrap_or_else(|| panic!("run {run_id} does not exist\n{said}"))
    }

    /// The run of the queue's claimed item, once it runs.
    async fn running_run(&self) -> String {
        eventually(Duration::from_secs(90), "a running run", || async {
            let items = self.client.queue_items(ENTITY, QUEUE).await.ok()?;
            let id = items
                .into_iter()
                .find_map(|i| (i.state.as_deref() == Some("CLAIMED")).then_some(i))?
                .associated_run_id?;
            let run = self.run(&id).await?;
            (run.state.as_str() == "running").then_some(id)
        })
        .await
    }
}

/// Waits for container `name` to exit and returns its status and logs.
async fn exited(name: &str, limit: Duration) -> (i64, String) {
    let name = name.to_owned();
    let status = tokio::time::timeout(
        limit,
        tokio::task::spawn_blocking({
            let name = name.clone();
            move || docker(&["wait", &name])
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} still runs: {}", logs(&name)))
    .unwrap();
    (status.parse().unwrap(), logs(&name))
}

fn logs(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["logs", name])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_job_launched_from_the_host_runs_in_the_agent_container() {
    let Some(images) = images() else {
        return;
    };
    let mut stack = Stack::start(images).await;
    stack.launch(&[]).await;
    let agent = stack.agent(&["--queue", QUEUE, "--max-items", "1"]);
    let (status, said) = exited(&agent, Duration::from_secs(180)).await;
    assert_eq!(status, 0, "{said}");
    assert!(!said.contains(KEY), "{said}");
    let run = stack.first_run(QUEUE, &said).await;
    assert_eq!(run.state.as_str(), "finished", "{said}");
    assert_eq!(run.config.get("branch"), Some(&json!("feat-x")));
    assert_eq!(run.commit.as_deref(), Some(stack.repos.feat_x.as_str()));
}

#[tokio::test]
async fn an_agent_container_stopped_mid_job_requeues_it_for_the_next_one() {
    let Some(images) = images() else {
        return;
    };
    let mut stack = Stack::start(images).await;
    stack
        .launch(&[
            "--set",
            "optim.max_iters=400",
            "--set",
            "train.checkpoint_interval=10",
        ])
        .await;
    let first = stack.agent(&["--queue", QUEUE]);
    let run_id = stack.running_run().await;
    // The image's HEALTHCHECK command, run now rather than after its start period.
    docker(&["exec", &first, "mlwf", "agent", "--healthcheck"]);
    first_checkpoint(&stack.client, &run_id).await;
    docker(&["stop", "--time", "60", &first]);
    let (status, said) = exited(&first, Duration::from_secs(10)).await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("requeued as item"), "{said}");
    let agents = stack.client.launch_agents(ENTITY).await.unwrap().unwrap();
    assert_eq!(agents[0].status, "KILLED", "{agents:?}");

    let second = stack.agent(&["--queue", QUEUE, "--max-items", "1"]);
    let (status, said) = exited(&second, Duration::from_secs(180)).await;
    assert_eq!(status, 0, "{said}");
    let run = stack.run(&run_id).await.unwrap();
    assert_eq!(run.state.as_str(), "finished", "{said}");
    let resumed = run
        .config
        .get(keys::config::RESUMED_STEP)
        .and_then(Value::as_u64);
    assert!(resumed.unwrap_or(0) > 0, "{:?}", run.config);
    assert_eq!(
        run.summary.get(keys::metric::TRAIN_STEPS),
        Some(&json!(400))
    );
}

#[tokio::test]
async fn an_agent_container_with_the_docker_socket_runs_jobs_as_sibling_containers() {
    let Some(images) = images() else {
        return;
    };
    let mut stack = Stack::start(images).await;
    let queue = "lc";
    stack
        .client
        .create_run_queue(
            ENTITY,
            queue,
            "local-container",
            json!({"network": stack.network}),
        )
        .await
        .unwrap();
    stack.launch_to(queue, &[]).await;
    // The agent folder is the same path on the host and in the agent container: the engine
    // mounts a sibling's checkout from the host.
    let folder = stack.dir.path().join("agent-folder");
    std::fs::create_dir_all(&folder).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let folder = folder.display().to_string();
    let socket_group = docker(&[
        "run",
        "--rm",
        "--volume",
        "/var/run/docker.sock:/s",
        "--entrypoint",
        "stat",
        &images.agent,
        "-c",
        "%g",
        "/s",
    ]);
    let agent_dir = format!("MLWF_AGENT_DIR={folder}");
    let mount = format!("{folder}:{folder}");
    let agent = stack.agent_with(
        &[
            "--volume",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--group-add",
            &socket_group,
            "--env",
            &agent_dir,
            "--volume",
            &mount,
        ],
        &[
            "--queue",
            queue,
            "--max-items",
            "1",
            "--image",
            &images.agent,
            "--docker-flag",
            "network",
        ],
    );
    let (status, said) = exited(&agent, Duration::from_secs(180)).await;
    assert_eq!(status, 0, "{said}");
    let run = stack.first_run(queue, &said).await;
    let run_id = run.id.clone();
    assert_eq!(run.state.as_str(), "finished", "{said}");
    assert_eq!(run.commit.as_deref(), Some(stack.repos.feat_x.as_str()));
    assert!(
        super::labelled("mlwf.run", &run_id).is_empty(),
        "the sibling is removed"
    );
}
