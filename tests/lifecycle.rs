//! The experiment loop on the command line, end to end on loopback: a temp repository with a
//! bare `origin` (reached through the fake ssh, so Launch accepts it), the fixture's server, and
//! the fake GitHub serving that bare repository. `baseline run` seeds run through `mlwf agent`;
//! experiments train in their worktrees as a person would; `merge-winners` and `baseline
//! rollback` then act on GitHub and git.

use std::path::{Path, PathBuf};
use std::process::Output;

use mlwf::testkit::github::FakeGitHub;
use serde_json::Value;

use crate::launch::{create_queue, git, mlwf, output, text, QUEUE};
use crate::util::{Fixture, ENTITY, PROJECT};

const OWNER: &str = "octo";
const REPO: &str = "lab";
const TOKEN: &str = "ghp_loop_token";

/// The project's trainer config: a short schedule with a learning rate too low to learn much,
/// so that a higher one is better beyond any noise.
const CONFIG: &str =
    "[optim]\nmax_iters = 40\nwarmup_iters = 5\nlearning_rate = 1e-4\nmin_lr = 1e-5\n\n\
                      [train]\neval_interval = 20\nlog_interval = 10\ncheckpoint_interval = 40\n\
                      sample_count = 2\n";
const CLAUDE: &str = "# Lab\n\n## Baselines\n\n<!-- mlwf:baselines:start -->\n\
                      <!-- mlwf:baselines:end -->\n\nMore notes.\n";

struct Lab {
    work: PathBuf,
    bare: PathBuf,
    fakessh: PathBuf,
    github: FakeGitHub,
}

/// How the lab's first commit is made.
enum Start {
    /// README, CLAUDE.md with the baseline markers, mlwf.toml, .gitignore, by hand.
    ByHand,
    /// `mlwf init`, then the short training config.
    Init,
}

impl Lab {
    async fn new(t: &Fixture, start: Start) -> Lab {
        let root = t.path("lab");
        let work = root.join("work");
        let bare = root.join("lab.git");
        std::fs::create_dir_all(&work).unwrap();
        git(
            &root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README.md"), "lab\n").unwrap();
        match start {
            Start::ByHand => {
                std::fs::write(work.join("CLAUDE.md"), CLAUDE).unwrap();
                // Checkpoints and the store stay out of the tree's status.
                std::fs::write(work.join(".gitignore"), ".mlwf/\n").unwrap();
            }
            Start::Init => {
                let out = output(
                    crate::util::mlwf_async(&work).args(["init", "--name", PROJECT, "--json"]),
                )
                .await;
                assert!(out.status.success(), "{}", text(&out));
            }
        }
        std::fs::write(work.join("mlwf.toml"), CONFIG).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "the lab"]);
        let fakessh = mlwf::testkit::launch::fake_ssh(&root).unwrap();
        let remote = format!("git@localhost:{}", bare.display());
        git(&work, &["remote", "add", "origin", &remote]);
        let lab = Lab {
            github: FakeGitHub::start(OWNER, REPO, TOKEN)
                .await
                .unwrap()
                .with_git(&bare),
            work,
            bare,
            fakessh,
        };
        lab.git_ssh(&lab.work, &["push", "-q", "-u", "origin", "main"]);
        create_queue(t).await;
        lab
    }

    fn ssh_env(&self) -> [(&'static str, String); 2] {
        mlwf::testkit::launch::fake_ssh_env(&self.fakessh)
    }

    fn git_ssh(&self, dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .envs(self.ssh_env())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// `mlwf args` in `dir` with the server, GitHub, the queue and a git identity.
    fn command(&self, t: &Fixture, dir: &Path, args: &[&str]) -> tokio::process::Command {
        let mut command = mlwf(t, dir, args);
        command
            .envs(self.ssh_env())
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", self.github.url())
            .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
            .env("WANDB_QUEUE", QUEUE)
            .env("GIT_AUTHOR_NAME", "Exp")
            .env("GIT_AUTHOR_EMAIL", "exp@example.com")
            .env("GIT_COMMITTER_NAME", "Exp")
            .env("GIT_COMMITTER_EMAIL", "exp@example.com");
        command
    }

    async fn run(&self, t: &Fixture, dir: &Path, args: &[&str]) -> Output {
        output(&mut self.command(t, dir, args)).await
    }

    async fn ok(&self, t: &Fixture, dir: &Path, args: &[&str]) -> String {
        let out = self.run(t, dir, args).await;
        assert!(out.status.success(), "mlwf {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    async fn json(&self, t: &Fixture, dir: &Path, args: &[&str]) -> Value {
        let out = self.ok(t, dir, args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The one-line error of a command that must fail.
    async fn fails(&self, t: &Fixture, dir: &Path, args: &[&str]) -> String {
        let out = self.run(t, dir, args).await;
        assert!(
            !out.status.success(),
            "mlwf {args:?} succeeded: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `mlwf agent` until it has run `items` items.
    async fn agent(&self, t: &Fixture, items: usize) {
        let items = items.to_string();
        self.ok(
            t,
            &self.work,
            &["agent", "--queue", QUEUE, "--max-items", &items],
        )
        .await;
    }

    /// Trains the checkout `dir` as a person would, with `extra` variables.
    async fn train(&self, t: &Fixture, dir: &Path, extra: &[(&str, &str)]) -> Output {
        let mut command = self.command(t, dir, &["train", "--config", "mlwf.toml"]);
        command.envs(extra.iter().copied());
        output(&mut command).await
    }

    /// Sets the learning rate in the checkout `dir`, commits and pushes it.
    fn change_lr(&self, dir: &Path, lr: &str) {
        let config = CONFIG.replace("learning_rate = 1e-4", &format!("learning_rate = {lr}"));
        std::fs::write(dir.join("mlwf.toml"), config).unwrap();
        git(
            dir,
            &["commit", "-q", "-am", &format!("learning rate {lr}")],
        );
        self.git_ssh(dir, &["push", "-q"]);
    }

    /// A file of the remote's `main`.
    fn remote_file(&self, path: &str) -> String {
        let out = std::process::Command::new("git")
            .args(["show", &format!("main:{path}")])
            .current_dir(&self.bare)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn remote_tags(&self) -> Vec<String> {
        let out = std::process::Command::new("git")
            .args(["tag", "--list"])
            .current_dir(&self.bare)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

async fn baseline_runs(t: &Fixture) -> Vec<String> {
    let query = mlwf::wandb::RunQuery::new()
        .filters(serde_json::json!({"tags": {"$in": ["baseline"]}}))
        .limit(50);
    let mut ids: Vec<String> = t
        .client
        .runs(ENTITY, PROJECT, &query)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

fn path_of(value: &Value) -> PathBuf {
    PathBuf::from(value.as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_from_ideas_to_a_merged_baseline_and_back() {
    let t = Fixture::start().await;
    let lab = Lab::new(&t, Start::ByHand).await;
    let work = lab.work.clone();

    // The first baseline: main's commit tagged baseline-v1, two seeds run by the agent.
    let first = lab
        .json(&t, &work, &["baseline", "run", "--seeds", "2", "--json"])
        .await;
    assert_eq!(first["tag"], "baseline-v1", "{first:#}");
    assert_eq!(first["tagged_now"], true);
    assert_eq!(first["launched"].as_array().unwrap().len(), 2);
    assert!(lab.remote_tags().contains(&"baseline-v1".to_owned()));
    lab.agent(&t, 2).await;
    let shown = lab.json(&t, &work, &["baseline", "show", "--json"]).await;
    assert_eq!(shown["tags"][0], "baseline-v1", "{shown:#}");
    assert_eq!(shown["seeds"].as_array().unwrap().len(), 2, "{shown:#}");
    let v1_runs: Vec<String> = {
        let mut ids: Vec<String> = shown["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };

    // Bad input first: each a one-line error, nothing done.
    std::fs::write(work.join("README.md"), "edited\n").unwrap();
    let said = lab
        .fails(&t, &work, &["experiment", "new", "dirty idea"])
        .await;
    assert!(said.contains("uncommitted changes"), "{said}");
    git(&work, &["checkout", "-q", "README.md"]);
    let mut no_token = lab.command(&t, &work, &["experiment", "new", "no token"]);
    no_token.env_remove("GITHUB_TOKEN");
    let out = output(&mut no_token).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("GITHUB_TOKEN"),
        "{said}"
    );
    // GitHub refusing the PR (here: a revoked token) after the push: every step is undone.
    let mut revoked = lab.command(&t, &work, &["experiment", "new", "Half done"]);
    revoked.env("GITHUB_TOKEN", "ghp_revoked");
    let out = output(&mut revoked).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("were removed again"),
        "{said}"
    );
    let remote_branches = std::process::Command::new("git")
        .args(["branch", "--list", "exp/*"])
        .current_dir(&lab.bare)
        .output()
        .unwrap();
    assert!(remote_branches.stdout.is_empty(), "{remote_branches:?}");
    assert!(!work
        .parent()
        .unwrap()
        .join("work-worktrees/half-done")
        .exists());
    let local = std::process::Command::new("git")
        .args(["branch", "--list", "exp/half-done"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(local.stdout.is_empty(), "{local:?}");
    let dry = lab
        .json(
            &t,
            &work,
            &["experiment", "new", "Higher LR", "--dry-run", "--json"],
        )
        .await;
    assert_eq!(dry["branch"], "exp/higher-lr");
    assert!(
        !path_of(&dry["worktree"]).exists(),
        "a dry run makes nothing"
    );
    assert!(lab.github.pulls().is_empty());

    // Three experiments, one from an issue.
    let higher = lab
        .json(&t, &work, &["experiment", "new", "Higher LR", "--json"])
        .await;
    let issue = lab
        .github
        .open_issue("Try a middle learning rate", "1e-4 learns too slowly.");
    let middle = lab
        .json(
            &t,
            &work,
            &[
                "experiment",
                "new",
                "--from-issue",
                &issue.to_string(),
                "--json",
            ],
        )
        .await;
    let crash = lab
        .json(&t, &work, &["experiment", "new", "Crash early", "--json"])
        .await;
    assert_eq!(
        middle["branch"],
        format!("exp/{issue}-try-a-middle-learning-rate")
    );
    let pulls = lab.github.pulls();
    assert_eq!(pulls.len(), 3, "{pulls:?}");
    let middle_pr = &pulls[&middle["pr"].as_u64().unwrap()];
    assert!(middle_pr.draft && middle_pr.body.contains(&format!("Closes #{issue}")));
    let middle_dir = path_of(&middle["worktree"]);
    let note = std::fs::read_to_string(middle_dir.join(middle["note"].as_str().unwrap())).unwrap();
    assert!(
        note.contains("1e-4 learns too slowly") && note.contains("val/loss"),
        "{note}"
    );

    // Each trains once: two higher learning rates on the same line (they conflict), one crash.
    let higher_dir = path_of(&higher["worktree"]);
    let crash_dir = path_of(&crash["worktree"]);
    lab.change_lr(&higher_dir, "3e-3");
    lab.change_lr(&middle_dir, "2e-3");
    for (dir, fault) in [
        (&higher_dir, None),
        (&middle_dir, None),
        (&crash_dir, Some("panic-at-step:3")),
    ] {
        let extra: Vec<(&str, &str)> = fault.map(|f| ("MLWF_FAULT", f)).into_iter().collect();
        let out = lab.train(&t, dir, &extra).await;
        assert_eq!(out.status.success(), fault.is_none(), "{}", text(&out));
    }

    // The dashboard and the comparison agree.
    let listed = lab.json(&t, &work, &["experiment", "list", "--json"]).await;
    let verdict_of = |list: &Value, branch: &Value| -> String {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["branch"] == *branch)
            .map(|e| e["verdict"].as_str().unwrap_or("none").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        verdict_of(&listed, &higher["branch"]),
        "better",
        "{listed:#}"
    );
    assert_eq!(
        verdict_of(&listed, &middle["branch"]),
        "better",
        "{listed:#}"
    );
    assert_eq!(
        verdict_of(&listed, &crash["branch"]),
        "failed",
        "{listed:#}"
    );
    assert!(
        listed.as_array().unwrap().iter().all(|e| e["pr"].is_u64()),
        "{listed:#}"
    );
    let compared = lab.json(&t, &work, &["results", "compare", "--json"]).await;
    for experiment in [&higher, &middle, &crash] {
        assert_eq!(
            verdict_of(&compared, &experiment["branch"]),
            verdict_of(&listed, &experiment["branch"]),
            "{compared:#}"
        );
    }

    // The crash: relaunch refuses the unchanged commit, then shows the diagnosis after a fix.
    let crash_branch = crash["branch"].as_str().unwrap();
    let said = lab
        .fails(
            &t,
            &work,
            &["experiment", "relaunch", "--branch", crash_branch],
        )
        .await;
    assert!(
        said.contains("commit a fix") && said.contains("panic"),
        "{said}"
    );
    std::fs::write(crash_dir.join("FIX.md"), "fixed\n").unwrap();
    git(&crash_dir, &["add", "FIX.md"]);
    git(&crash_dir, &["commit", "-q", "-m", "fix"]);
    lab.git_ssh(&crash_dir, &["push", "-q"]);
    let relaunched = lab
        .json(
            &t,
            &work,
            &[
                "experiment",
                "relaunch",
                "--branch",
                crash_branch,
                "--dry-run",
                "--json",
            ],
        )
        .await;
    assert_eq!(relaunched["cause"], "panic", "{relaunched:#}");

    // A dry run changes nothing; the real one merges the better winner only.
    let planned = lab
        .json(&t, &work, &["merge-winners", "--dry-run", "--json"])
        .await;
    assert_eq!(planned["tag"], "baseline-v2", "{planned:#}");
    assert!(lab.github.pulls().values().all(|p| !p.merged));
    let merged = lab
        .json(&t, &work, &["merge-winners", "--seeds", "1", "--json"])
        .await;
    let outcomes: Vec<(String, String, String)> = merged["considered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["branch"].as_str().unwrap().to_owned(),
                c["outcome"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let winner = outcomes
        .iter()
        .find(|(_, o, _)| o == "merged")
        .expect("a merge");
    let loser = outcomes
        .iter()
        .find(|(b, o, _)| o == "skipped" && b != crash_branch)
        .expect("the conflicting winner");
    assert!(loser.2.contains("no longer merges cleanly"), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|(_, o, _)| o == "merged").count(), 1);
    let crashed = outcomes.iter().find(|(b, ..)| b == crash_branch).unwrap();
    assert_eq!(crashed.1, "skipped");
    assert_eq!(merged["tag"], "baseline-v2");
    assert_eq!(
        merged["promoted"]["runs"].as_array().unwrap().len(),
        2,
        "{merged:#}"
    );
    assert_eq!(baseline_runs(&t).await, v1_runs);
    assert!(lab.remote_tags().contains(&"baseline-v2".to_owned()));
    let releases = lab.github.releases();
    assert_eq!(releases.len(), 1);
    let winner_pr = lab
        .github
        .pulls()
        .into_iter()
        .find(|(_, p)| p.head == winner.0)
        .map(|(n, _)| n)
        .unwrap();
    assert!(
        releases[0].body.contains(&format!("#{winner_pr}"))
            && releases[0].body.contains("val/loss")
    );
    let claude = lab.remote_file("CLAUDE.md");
    assert!(
        claude.contains("| baseline-v2 |") && claude.ends_with("More notes.\n"),
        "{claude}"
    );
    assert!(lab
        .remote_file("docs/baselines.md")
        .contains("| baseline-v2 |"));
    assert_eq!(
        merged["baseline_run"]["launched"].as_array().unwrap().len(),
        1
    );

    // The new baseline's seed runs; the next look promotes it.
    lab.agent(&t, 1).await;
    let again = lab
        .json(&t, &work, &["merge-winners", "--no-baseline-run", "--json"])
        .await;
    assert_eq!(again["tag"], Value::Null, "{again:#}");
    let v2_runs = again["promoted"]["runs"].as_array().unwrap().clone();
    assert_eq!(v2_runs.len(), 1, "{again:#}");

    // Roll back: a revert PR of both commits since baseline-v1, the baseline tag back on v1.
    let rolled = lab
        .json(
            &t,
            &work,
            &[
                "baseline",
                "rollback",
                "--to",
                "baseline-v1",
                "--reason",
                "regressed",
                "--merge",
                "--json",
            ],
        )
        .await;
    assert_eq!(
        rolled["reverted"].as_array().unwrap().len(),
        2,
        "{rolled:#}"
    );
    let revert = &lab.github.pulls()[&rolled["pr"].as_u64().unwrap()];
    assert!(revert.head.starts_with("rollback/baseline-v1") && revert.body.contains("regressed"));
    assert!(revert.merged, "--merge merges the revert");
    // main has baseline-v1's files again, and the rollback on record.
    assert_eq!(lab.remote_file("mlwf.toml"), CONFIG);
    assert!(!lab.remote_file("CLAUDE.md").contains("baseline-v2"));
    let history = lab.remote_file("docs/baselines.md");
    assert!(
        history.contains("rolled back to baseline-v1") && history.contains("regressed"),
        "{history}"
    );
    assert_eq!(baseline_runs(&t).await, v1_runs);
    let retired = t
        .client
        .run(ENTITY, PROJECT, v2_runs[0].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        retired.tags.contains(&"baseline-retired".to_owned()),
        "{:?}",
        retired.tags
    );
    t.shutdown().await;
}

/// `act` on `.github/workflows/wandb-run-finished.yml` of this checkout (`uses: ./action`) in
/// host mode, for one `repository_dispatch`: GitHub Actions played on loopback. The secrets and
/// variables are the ones `setup-automation` stored on the fake GitHub; the action uses the
/// `mlwf` under test (`MLWF_BIN`) instead of building one.
async fn act(t: &Fixture, lab: &Lab, dispatch: &Value) -> Output {
    let Some(act) = crate::util::venv_tool("act") else {
        panic!("act is missing: run scripts/test.sh");
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let event = t.path("act").join("event.json");
    let body = serde_json::json!({
        "action": dispatch["event_type"],
        "client_payload": dispatch["client_payload"],
        "repository": {"full_name": format!("{OWNER}/{REPO}"), "name": REPO,
                       "owner": {"login": OWNER}},
    });
    std::fs::write(&event, body.to_string()).unwrap();
    let variables = lab.github.variables();
    let mut command = tokio::process::Command::new(act);
    command.current_dir(root).kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["WANDB_", "MLWF_", "GITHUB_", "ANTHROPIC_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(&*name);
        }
    }
    command
        .args([
            "repository_dispatch",
            "-W",
            ".github/workflows/wandb-run-finished.yml",
        ])
        .arg("-e")
        .arg(&event)
        .args(["-P", "ubuntu-latest=-self-hosted"])
        // Secret values reach act through its environment, never its argv.
        .args(["-s", "WANDB_API_KEY", "-s", "GITHUB_TOKEN"])
        .env("WANDB_API_KEY", lab.github.secret("WANDB_API_KEY").unwrap())
        .env("GITHUB_TOKEN", TOKEN)
        .env("XDG_CACHE_HOME", t.path("act-cache"));
    for name in ["WANDB_ENTITY", "WANDB_PROJECT", "WANDB_BASE_URL"] {
        command
            .arg("--var")
            .arg(format!("{name}={}", variables[name]));
    }
    for (name, value) in [
        ("MLWF_BIN", env!("CARGO_BIN_EXE_mlwf").to_owned()),
        ("GITHUB_API_URL", lab.github.url().to_owned()),
        ("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}")),
        ("MLWF_LOG", "warn".to_owned()),
    ] {
        command.arg("--env").arg(format!("{name}={value}"));
    }
    output(&mut command).await
}

/// The dispatches the fake GitHub has received, once there are `count`.
async fn dispatches(lab: &Lab, count: usize) -> Vec<Value> {
    for _ in 0..300 {
        let got = lab.github.dispatches();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "{count} dispatches expected: {:#?}",
        lab.github.dispatches()
    );
}

/// Issue 13's loop with no account anywhere: `init` → `setup-automation` → `experiment new` →
/// `launch` → `mlwf agent` trains → the run finishes → the server's automation dispatches to the
/// fake GitHub → `act` runs the workflow on that dispatch → the PR gets its report →
/// `merge-winners` → the baseline moves and CLAUDE.md shows it. A crashed trainer dispatches
/// too (the trigger watches FAILED) and its PR gets a diagnosis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_runs_on_the_servers_automation_and_act() {
    let started = std::time::Instant::now();
    let t = Fixture::start().await;
    let lab = Lab::new(&t, Start::Init).await;
    let work = lab.work.clone();
    let setup = lab.json(&t, &work, &["setup-automation", "--json"]).await;
    assert!(
        setup["setup"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |s| s["what"].as_str().unwrap().starts_with("W&B automation")
                    && s["outcome"] == "created"
            ),
        "{setup:#}"
    );

    // The baseline: one seed of main through the queue and the agent.
    lab.json(&t, &work, &["baseline", "run", "--seeds", "1", "--json"])
        .await;
    lab.agent(&t, 1).await;
    dispatches(&lab, 1).await;

    // An idea, launched and trained by the agent; a crash, trained by hand.
    let higher = lab
        .json(&t, &work, &["experiment", "new", "Higher LR", "--json"])
        .await;
    let crash = lab
        .json(&t, &work, &["experiment", "new", "Crash early", "--json"])
        .await;
    let higher_dir = path_of(&higher["worktree"]);
    lab.change_lr(&higher_dir, "3e-3");
    lab.ok(&t, &higher_dir, &["launch", "--json"]).await;
    lab.agent(&t, 1).await;
    let crash_dir = path_of(&crash["worktree"]);
    let out = lab
        .train(&t, &crash_dir, &[("MLWF_FAULT", "panic-at-step:3")])
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    // Every run that ended dispatched, the crash too (the side runs that log the launches'
    // job artifacts end as well: the workflow finds nothing to report for them).
    let deliveries = loop {
        let list: Vec<Value> =
            serde_json::from_value(t.get_json(&format!("/mlwf/v1/deliveries/{ENTITY}")).await)
                .unwrap();
        if list.iter().any(|d| d["event_state"] == "FAILED")
            && list.iter().all(|d| d["status"] != "pending")
        {
            break list;
        }
        assert!(started.elapsed().as_secs() < 600, "{list:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:#?}"
    );
    let finished = deliveries
        .iter()
        .filter(|d| d["event_state"] == "FINISHED")
        .count();
    assert!(finished >= 2, "{deliveries:#?}");
    let sent = dispatches(&lab, deliveries.len()).await;
    assert!(
        sent.iter().all(|d| d["event_type"] == "wandb_run_finished"
            && d["client_payload"]["project_name"] == PROJECT),
        "{sent:#?}"
    );

    // GitHub Actions, played by act on the last dispatch: every ended run gets its report.
    let acting = std::time::Instant::now();
    let ran = act(&t, &lab, sent.last().unwrap()).await;
    assert!(ran.status.success(), "act: {}", text(&ran));
    let act_took = acting.elapsed().as_secs_f64();
    let higher_pr = higher["pr"].as_u64().unwrap();
    let crash_pr = crash["pr"].as_u64().unwrap();
    let report = lab.github.comments(higher_pr);
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(report[0].body.contains("better"), "{}", report[0].body);
    assert!(lab
        .github
        .labels(higher_pr)
        .contains(&"mlwf:better".to_owned()));
    assert!(lab
        .github
        .labels(crash_pr)
        .contains(&"mlwf:failed".to_owned()));
    assert!(
        lab.github.comments(crash_pr)[0].body.contains("panic"),
        "{:?}",
        lab.github.comments(crash_pr)
    );

    // The winner merges; the baseline moves, and CLAUDE.md says so.
    let merged = lab
        .json(&t, &work, &["merge-winners", "--no-baseline-run", "--json"])
        .await;
    assert_eq!(merged["tag"], "baseline-v2", "{merged:#}");
    assert!(lab.github.pulls()[&higher_pr].merged);
    assert!(lab.remote_file("CLAUDE.md").contains("| baseline-v2 |"));
    eprintln!(
        "the whole loop (init to merged baseline) took {:.1} s, act's workflow run {act_took:.1} s",
        started.elapsed().as_secs_f64()
    );
    t.shutdown().await;
}
