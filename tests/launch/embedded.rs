//! The whole loop with no W&B account: `mlwf queue create`, `mlwf launch`, `mlwf agent` on the
//! embedded store of a repository that has no remote at all.

use serde_json::Value;

use super::{output, text, Repos, QUEUE, QUICK_TRAIN};
use crate::util;

#[tokio::test]
async fn launch_then_agent_trains_the_branch_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let repos = Repos::new(dir.path(), &[("NOTES.md", "an idea\n")]);
    let agent_dir = dir.path().join("agent");
    let embedded = |args: &[&str]| {
        let mut command = util::mlwf_async(&repos.work);
        command
            .args(args)
            .env("MLWF_AGENT_DIR", &agent_dir)
            .env("MLWF_DATA_CACHE", dir.path().join("data-cache"))
            .env("MLWF_LOG", "warn");
        command
    };
    let created = output(&mut embedded(&["queue", "create", QUEUE])).await;
    assert!(created.status.success(), "{}", text(&created));

    let mut launch = vec!["launch", "--queue", QUEUE, "--json"];
    launch.extend_from_slice(QUICK_TRAIN);
    let launched = output(&mut embedded(&launch)).await;
    assert!(launched.status.success(), "{}", text(&launched));
    let launched: Value = serde_json::from_slice(&launched.stdout).expect("launch JSON");
    assert_eq!(launched["branch"], "feat-x");
    assert_eq!(launched["commit"], repos.feat_x.as_str());
    assert_eq!(launched["local_only"], true);
    assert!(
        launched["job"].as_str().unwrap().ends_with(":v0"),
        "{launched}"
    );

    let agent = output(&mut embedded(&[
        "agent",
        "--queue",
        QUEUE,
        "--max-items",
        "1",
    ]))
    .await;
    assert!(agent.status.success(), "{}", text(&agent));

    let summary = output(&mut embedded(&[
        "results", "summary", "--branch", "feat-x", "--json",
    ]))
    .await;
    assert!(summary.status.success(), "{}", text(&summary));
    let run: Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(run["config"]["branch"], "feat-x");
    assert_eq!(run["config"]["commit"], repos.feat_x.as_str());
    assert_eq!(run["config"]["optim.max_iters"], 40);

    let items = output(&mut embedded(&["queue", "items", QUEUE, "--json"])).await;
    let items: Value = serde_json::from_slice(&items.stdout).unwrap();
    assert_eq!(items[0]["state"], "CLAIMED");
    assert_eq!(items[0]["run"], run["id"]);
    // The agent said when it stopped, which the official agent never does.
    let listed = output(&mut embedded(&["queue", "list", "--json"])).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["queues"][0]["name"], QUEUE);
    assert_eq!(listed["agents"][0]["status"], "KILLED", "{listed}");
    assert!(listed["agents"][0]["version"]
        .as_str()
        .unwrap()
        .starts_with("mlwf@"));

    // Two terminals on one store: `--wait` follows the item while an agent runs it.
    let mut waiting = launch.clone();
    waiting.push("--wait");
    let mut waiting = embedded(&waiting);
    let mut agent = embedded(&["agent", "--queue", QUEUE, "--max-items", "1"]);
    let (waited, agent) = tokio::join!(output(&mut waiting), output(&mut agent));
    assert!(agent.status.success(), "{}", text(&agent));
    assert!(waited.status.success(), "{}", text(&waited));
    let waited: Value = serde_json::from_slice(&waited.stdout).unwrap();
    assert_eq!(waited["outcome"]["state"], "finished", "{waited}");
    assert_ne!(waited["outcome"]["run"], run["id"]);

    // The store stays out of the user's git status, and so does the launch.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&repos.work)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "");
}
