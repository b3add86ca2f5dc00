//! What `mlwf launch` refuses on a W&B server, each with the fix in the message, pushing nothing.

use super::{create_queue, git, items, mlwf, output, text, Repos, QUEUE};
use crate::util::Fixture;

async fn refused(t: &Fixture, repos: &Repos, args: &[&str]) -> String {
    let mut all = vec!["launch", "--queue", QUEUE, "--entrypoint", "true"];
    all.extend_from_slice(args);
    let out = output(mlwf(t, &repos.work, &all).envs(repos.ssh_env())).await;
    assert!(
        !out.status.success(),
        "launch should have been refused:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn launch_refuses_what_an_agent_could_not_run() {
    let t = Fixture::start().await;
    let dir = t.path("repos");
    let repos = Repos::new(&dir, &[("train.py", "print(1)\n")]);

    let err = refused(&t, &repos, &[]).await;
    assert!(
        err.contains("does not exist") && err.contains("mlwf queue create lq"),
        "{err}"
    );
    create_queue(&t).await;

    let err = refused(&t, &repos, &[]).await;
    assert!(
        err.contains("no remote \"origin\"") && err.contains("git remote add"),
        "{err}"
    );

    for (url, form) in [
        (repos.bare.display().to_string(), "bare path"),
        (format!("file://{}", repos.bare.display()), "file URL"),
        ("http://example.com/r.git".to_owned(), "http"),
        ("git://example.com/r.git".to_owned(), "git protocol"),
    ] {
        // There is no origin the first time round.
        let _ = std::process::Command::new("git")
            .args(["remote", "remove", "origin"])
            .current_dir(&repos.work)
            .output();
        git(&repos.work, &["remote", "add", "origin", &url]);
        let err = refused(&t, &repos, &[]).await;
        assert!(
            err.contains("cannot clone") && err.contains("git remote set-url"),
            "{form}: {err}"
        );
    }
    git(
        &repos.work,
        &["remote", "set-url", "origin", &repos.remote()],
    );
    let err = refused(&t, &repos, &[]).await;
    assert!(
        err.contains("not on origin") && err.contains("git push -u origin feat-x"),
        "{err}"
    );

    repos.git_ssh(&["push", "-q", "origin", "feat-x"]);
    std::fs::write(repos.work.join("train.py"), "print(2)\n").unwrap();
    let err = refused(&t, &repos, &[]).await;
    assert!(
        err.contains("uncommitted changes") && err.contains("train.py"),
        "{err}"
    );

    git(&repos.work, &["commit", "-q", "-am", "ahead"]);
    let err = refused(&t, &repos, &[]).await;
    assert!(
        err.contains("not on origin") && err.contains("git push origin feat-x"),
        "{err}"
    );

    // Behind: the remote moved on from what is checked out here.
    repos.git_ssh(&["push", "-q", "origin", "feat-x"]);
    git(&repos.work, &["reset", "-q", "--hard", "HEAD~1"]);
    let err = refused(&t, &repos, &[]).await;
    assert!(err.contains("behind") && err.contains("git pull"), "{err}");

    let err = refused(&t, &repos, &["--branch", "bad..name"]).await;
    assert!(err.contains("not a valid branch name"), "{err}");
    assert!(items(&t).await.is_empty(), "nothing may be pushed");
}

#[tokio::test]
async fn trainer_overrides_are_checked_before_anything_is_pushed() {
    let t = Fixture::start().await;
    create_queue(&t).await;
    let repos = Repos::new(&t.path("repos"), &[]);
    repos.push();
    let out = output(
        mlwf(
            &t,
            &repos.work,
            &["launch", "--queue", QUEUE, "--set", "optim.lernrate=1"],
        )
        .envs(repos.ssh_env()),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown config key \"optim.lernrate\""),
        "{err}"
    );
    // Any other entrypoint takes its values as they are.
    let out = output(
        mlwf(
            &t,
            &repos.work,
            &[
                "launch",
                "--queue",
                QUEUE,
                "--entrypoint",
                "python train.py",
                "--set",
                "lernrate=1",
            ],
        )
        .envs(repos.ssh_env()),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(items(&t).await.len(), 1);
}
