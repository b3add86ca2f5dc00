//! `mlwf analyze` end to end on loopback: the local W&B server seeded with trainer-shaped runs
//! (several baseline seeds, a better, a worse, a within-noise, a panicking and a NaN run), a
//! fake GitHub recording every request, and a fake Claude.
//!
//! Snapshots of the rendered reports live in `tests/snapshots/`; set `MLWF_UPDATE_SNAPSHOTS=1`
//! to rewrite them after an intended change (and review the diff).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlwf::analyze::event::{parse_event, Dispatch};
use mlwf::analyze::facts::Project;
use mlwf::analyze::llm::Claude;
use mlwf::analyze::{Options, Outcome};
use mlwf::experiment::verdict::Judging;
use mlwf::experiment::REPORTED_TAG;
use mlwf::github::actions::Actions;
use mlwf::github::GitHub;
use mlwf::secrets::{Redactor, Secret};
use mlwf::testkit::claude::FakeClaude;
use mlwf::testkit::github::FakeGitHub;
use mlwf::testkit::synthetic::{log_run, SyntheticRun};

use crate::util::{self, ENTITY, PROJECT};

const TOKEN: &str = "ghs_FakeInstallationToken0123456789abcdef";
const OWNER: &str = "octo";
const REPO: &str = "exp";
/// Looks like a GitHub token; printed by the panicking run.
const LEAKED: &str = "ghp_LeakedLeakedLeaked0123456789abcdXYZ";

/// The shared fixture with a fake GitHub beside it.
struct Fixture {
    base: util::Fixture,
    github: FakeGitHub,
}

impl std::ops::Deref for Fixture {
    type Target = util::Fixture;

    fn deref(&self) -> &util::Fixture {
        &self.base
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let github = FakeGitHub::start(OWNER, REPO, TOKEN)
            .await
            .expect("fake GitHub");
        Fixture {
            base: util::Fixture::start().await,
            github,
        }
    }

    async fn log(&self, run: SyntheticRun) {
        log_run(&self.client, ENTITY, PROJECT, &run)
            .await
            .expect("seed run");
    }

    /// Three seeds of `main` at one commit: val/loss 1.00, 1.02, 0.98 (spread 0.02).
    async fn seed_baseline(&self) {
        for (i, loss) in [1.00, 1.02, 0.98].into_iter().enumerate() {
            self.log(SyntheticRun::finished(
                &format!("base{i}"),
                "main",
                "c0ffee",
                i as u64,
                loss,
            ))
            .await;
        }
    }

    async fn seed_experiments(&self) {
        let mut better = SyntheticRun::finished("better01", "feat/better", "b1", 1, 0.80);
        better.learning_rate = 1e-3;
        self.log(better).await;
        self.log(SyntheticRun::finished(
            "worse001",
            "feat/worse",
            "b2",
            1,
            1.30,
        ))
        .await;
        self.log(SyntheticRun::finished(
            "noise001",
            "feat/noise",
            "b3",
            1,
            1.01,
        ))
        .await;
        let key_line = format!("using WANDB_API_KEY={}", util::KEY);
        let auth_line = format!("Authorization: Bearer {LEAKED}");
        let token_line = format!("pushing with token {TOKEN}");
        self.log(SyntheticRun::failed(
            "panic001",
            "feat/panic",
            30,
            101,
            &[
                "step 20 train/loss 2.9012",
                &key_line,
                &auth_line,
                &token_line,
                "thread 'main' panicked at src/train/model.rs:42:13:",
                "attempt to subtract with overflow",
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            ],
        ))
        .await;
        self.log(SyntheticRun::failed(
            "nan00001",
            "feat/nan",
            60,
            1,
            &[
                "step 50 train/loss 7.31",
                "step 60 train/loss NaN",
                "error: loss is NaN at step 60",
            ],
        ))
        .await;
        for (number, branch) in [
            (1, "feat/better"),
            (2, "feat/worse"),
            (3, "feat/noise"),
            (4, "feat/panic"),
            (5, "feat/nan"),
        ] {
            self.github.open_pr(number, branch);
        }
    }

    fn project(&self) -> Project {
        Project {
            client: self.client.clone(),
            entity: ENTITY.into(),
            project: PROJECT.into(),
            ui_url: "https://wandb.test".into(),
        }
    }

    fn options(&self, dispatch: Dispatch, claude: Option<Claude>) -> Options {
        Options {
            judging: Judging::default(),
            baseline_branch: "main".into(),
            run: None,
            dispatch,
            max_runs: 20,
            github: Some(
                GitHub::new(
                    self.github.url(),
                    &Secret::new(TOKEN),
                    format!("{OWNER}/{REPO}").parse().unwrap(),
                )
                .unwrap(),
            ),
            claude,
            actions: Actions {
                step_summary: Some(self.dir.path().join("summary.md")),
                output: Some(self.dir.path().join("output")),
            },
            redactor: Redactor::new([util::KEY, TOKEN]),
        }
    }

    async fn analyze(&self, dispatch: Dispatch) -> Outcome {
        mlwf::analyze::run(&self.project(), &self.options(dispatch, None))
            .await
            .expect("analyze")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    async fn tags(&self, run: &str) -> Vec<String> {
        self.client
            .run(ENTITY, PROJECT, run)
            .await
            .unwrap()
            .unwrap()
            .tags
    }

    /// The bodies of comments on PR `number` holding the report marker.
    fn reports(&self, number: u64) -> Vec<String> {
        self.github
            .comments(number)
            .into_iter()
            .map(|c| c.body)
            .filter(|b| b.contains(mlwf::analyze::comment::MARKER))
            .collect()
    }

    /// Every body mlwf sent to GitHub.
    fn sent_to_github(&self) -> String {
        self.github
            .requests()
            .into_iter()
            .map(|r| format!("{} {}\n{}\n", r.method, r.uri, r.body))
            .collect()
    }
}

/// Compares `text` with `tests/snapshots/<name>.md`, after removing what changes between runs.
fn snapshot(name: &str, text: &str) {
    let text = normalize(text);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.md"));
    let update = std::env::var_os("MLWF_UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(&path) {
        Ok(expected) if !update => assert!(
            expected == text,
            "{name} differs from {} (MLWF_UPDATE_SNAPSHOTS=1 rewrites it):\n{text}",
            path.display()
        ),
        Ok(_) | Err(_) => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            assert!(
                update,
                "wrote new snapshot {}; review it and rerun",
                path.display()
            );
        }
    }
}

/// Hidden per-run meta (timestamps inside) and runtimes vary between runs.
fn normalize(text: &str) -> String {
    let meta = regex::Regex::new(r"<!-- mlwf:run [A-Za-z0-9+/=]+ -->").unwrap();
    let runtime = regex::Regex::new(r"\*\*runtime\*\* [0-9hms ]+").unwrap();
    let text = meta.replace_all(text, "<!-- mlwf:run META -->");
    runtime.replace_all(&text, "**runtime** T").into_owned()
}

#[tokio::test]
async fn every_kind_of_report_is_rendered_labelled_and_posted() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.seed_experiments().await;
    let outcome = fx.analyze(Dispatch::default()).await;
    // Five experiments and the three baseline runs (those go to the job summary: no PR).
    assert_eq!(outcome.reports.len(), 8, "{:?}", outcome.reports);

    for (number, name, label) in [
        (1, "success_better", Some("mlwf:better")),
        (2, "success_worse", Some("mlwf:worse")),
        (3, "success_within_noise", None),
        (4, "failure_panic", Some("mlwf:failed")),
        (5, "failure_nan", Some("mlwf:failed")),
    ] {
        let reports = fx.reports(number);
        assert_eq!(reports.len(), 1, "PR #{number}");
        snapshot(name, &reports[0]);
        assert_eq!(
            fx.github.labels(number),
            Vec::from_iter(label.map(String::from))
        );
    }
    let better = &fx.reports(1)[0];
    assert!(better.contains("🟢 better"));
    assert!(better.contains("mean of 3 seeds"));
    assert!(better.contains("```mermaid\nxychart-beta"));
    assert!(better.contains("| optim.learning_rate | 0.0003 | 0.001 |"));
    assert!(better.contains("Sample predictions"));
    assert!(better.contains("https://wandb.test/testent/proj/runs/better01"));
    assert!(fx.reports(2)[0].contains("⚠️ **Regressions:**"));
    assert!(fx.reports(3)[0].contains("⚪ within noise"));
    let panic = &fx.reports(4)[0];
    assert!(panic.contains("**Cause: panic at src/train/model.rs:42:13**"));
    assert!(panic.contains("**exit code** 101"));
    assert!(fx.reports(5)[0].contains("**Cause: NaN/inf loss**"));

    let mut repo_labels = fx.github.repo_labels();
    repo_labels.sort();
    assert_eq!(repo_labels, ["mlwf:better", "mlwf:failed", "mlwf:worse"]);

    // The job summary has every report, the baseline runs included; outputs name the newest.
    let summary = fx.read("summary.md");
    for run in [
        "better01", "worse001", "noise001", "panic001", "nan00001", "base0",
    ] {
        assert!(summary.contains(run), "{run} missing from the job summary");
    }
    // Outputs describe the newest run (W&B times have whole seconds; ties go by id).
    let output = fx.read("output");
    let newest = &outcome.reports[0];
    let number = newest.pr.expect("the newest run has a PR");
    for expected in [
        format!("verdict<<MLWF_EOF\n{}\nMLWF_EOF", newest.verdict.as_str()),
        format!("run-id<<MLWF_EOF\n{}\nMLWF_EOF", newest.run_id),
        format!("comment-url<<MLWF_EOF\nhttps://github.test/octo/exp/pull/{number}#issuecomment-"),
    ] {
        assert!(output.contains(&expected), "{expected} not in {output}");
    }
    assert!(output.contains("reported<<MLWF_EOF\n8\nMLWF_EOF"));

    // No secret reaches GitHub or the summary, though the panicking run printed three.
    for secret in [util::KEY, TOKEN, LEAKED] {
        assert!(
            !fx.sent_to_github().contains(secret),
            "{secret} sent to GitHub"
        );
        assert!(!summary.contains(secret), "{secret} in the job summary");
    }
    assert!(panic.contains("Authorization: [REDACTED]"));

    for run in ["better01", "panic001", "base2"] {
        assert!(
            fx.tags(run).await.contains(&REPORTED_TAG.to_owned()),
            "{run}"
        );
    }
    // Everything is reported: another job finds nothing and changes nothing.
    let before = fx.github.requests().len();
    assert!(fx.analyze(Dispatch::default()).await.reports.is_empty());
    let writes = fx.github.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 0);
    fx.base.shutdown().await;
}

#[tokio::test]
async fn repeated_and_concurrent_dispatches_leave_one_comment_with_the_newest_data() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.log(SyntheticRun::finished("first001", "feat/x", "b1", 1, 0.8))
        .await;
    fx.github.open_pr(7, "feat/x");
    // Both jobs list the comments before either posts: the race a repeated webhook causes.
    fx.github.set_list_latency(Duration::from_millis(150));
    let dispatch = parse_event(r#"{"action": "wandb_run_finished", "client_payload": {"run_id": "first001", "branch": "feat/x"}}"#).unwrap();
    let project = fx.project();
    let (a, b) = (
        fx.options(dispatch.clone(), None),
        fx.options(dispatch.clone(), None),
    );
    let (ra, rb) = tokio::join!(
        mlwf::analyze::run(&project, &a),
        mlwf::analyze::run(&project, &b)
    );
    ra.unwrap();
    rb.unwrap();
    fx.github.set_list_latency(Duration::ZERO);
    fx.analyze(dispatch.clone()).await;
    let reports = fx.reports(7);
    assert_eq!(reports.len(), 1, "one sticky comment");
    assert_eq!(fx.github.comments(7).len(), 1, "duplicates were deleted");
    let deletes = fx
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert!(
        deletes >= 1,
        "both jobs created a comment, and one folded the other's back"
    );
    assert_eq!(reports[0].matches("<!-- mlwf:run ").count(), 1);

    // A newer run of the branch (W&B times have whole seconds): three deliveries, two of them
    // concurrent.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fx.log(SyntheticRun::finished("second01", "feat/x", "b2", 1, 1.3))
        .await;
    let dispatch = parse_event(r#"{"client_payload": {"run_id": "second01"}}"#).unwrap();
    fx.github.set_list_latency(Duration::from_millis(150));
    let (a, b) = (
        fx.options(dispatch.clone(), None),
        fx.options(dispatch.clone(), None),
    );
    let (ra, rb) = tokio::join!(
        mlwf::analyze::run(&project, &a),
        mlwf::analyze::run(&project, &b)
    );
    ra.unwrap();
    rb.unwrap();
    fx.github.set_list_latency(Duration::ZERO);
    fx.analyze(dispatch).await;
    let reports = fx.reports(7);
    assert_eq!(reports.len(), 1);
    let body = &reports[0];
    assert_eq!(body.matches("<!-- mlwf:run ").count(), 2);
    let newest = body.find("[`second01`]").unwrap();
    let older = body.find("[`first001`]").unwrap();
    assert!(newest < older, "newest run first");
    assert!(body.contains("Newest run [`second01`]"));
    assert_eq!(fx.github.labels(7), ["mlwf:worse"]);

    // Re-reporting the older run by hand updates its row but never takes the headline.
    let mut by_hand = fx.options(Dispatch::default(), None);
    by_hand.run = Some("first001".into());
    mlwf::analyze::run(&project, &by_hand).await.unwrap();
    let body = &fx.reports(7)[0];
    assert!(body.contains("Newest run [`second01`]"));
    assert_eq!(fx.github.labels(7), ["mlwf:worse"]);
    fx.base.shutdown().await;
}

#[tokio::test]
async fn the_sticky_comment_is_found_among_150_comments() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.github.open_pr(9, "feat/long");
    for i in 0..120 {
        fx.github.add_comment(9, &format!("review comment {i}"));
    }
    fx.log(SyntheticRun::finished(
        "long0001",
        "feat/long",
        "b1",
        1,
        0.8,
    ))
    .await;
    fx.analyze(Dispatch::default()).await;
    for i in 120..149 {
        fx.github.add_comment(9, &format!("review comment {i}"));
    }
    assert_eq!(fx.github.comments(9).len(), 150);
    fx.log(SyntheticRun::finished(
        "long0002",
        "feat/long",
        "b2",
        1,
        0.7,
    ))
    .await;
    fx.analyze(Dispatch::default()).await;
    assert_eq!(fx.github.comments(9).len(), 150, "updated, not added");
    let reports = fx.reports(9);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].contains("long0001") && reports[0].contains("long0002"));
    assert!(fx.github.requests().iter().any(|r| r.method == "GET"
        && r.uri.contains("/issues/9/comments")
        && r.uri.contains("page=2")));
    assert!(fx.github.requests().iter().any(|r| r.method == "PATCH"));
    fx.base.shutdown().await;
}

#[tokio::test]
async fn the_model_reading_is_quoted_and_sees_no_secrets() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.seed_experiments().await;
    let answer =
        "An integer underflow in `model.rs`.\n<!-- mlwf:report -->\nRun `rm -rf /` to fix.";
    let claude_fake = FakeClaude::start(answer, 1).await.unwrap();
    let claude = Claude::new(
        &claude_fake.url,
        Secret::new("sk-ant-test-0123456789abcdef"),
        "claude-test",
    )
    .unwrap()
    .with_retry(mlwf::retry::RetryPolicy::new(
        3,
        Duration::from_millis(1),
        Duration::from_millis(2),
    ));
    let mut options = fx.options(Dispatch::default(), Some(claude));
    options.run = Some("panic001".into());
    mlwf::analyze::run(&fx.project(), &options).await.unwrap();
    let body = &fx.reports(4)[0];
    assert!(
        body.contains("**claude-test's reading** (model output, quoted as written; not verified):")
    );
    assert!(body.contains(
        "> An integer underflow in `model.rs`.\n> <! -- mlwf:report -->\n> Run `rm -rf /` to fix."
    ));
    let requests = claude_fake.requests();
    assert_eq!(requests.len(), 2, "one overload retried");
    let prompt = requests[1].1["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("panicked at src/train/model.rs:42:13"));
    for secret in [util::KEY, TOKEN, LEAKED] {
        assert!(!prompt.contains(secret), "{secret} sent to the model");
    }
    fx.base.shutdown().await;
}

/// The binary, as the action runs it, against this fixture's servers.
fn mlwf(fx: &Fixture, event: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut command = util::mlwf_async(fx.dir.path());
    command
        .arg("analyze")
        .args(extra)
        .env("HOME", fx.dir.path())
        .env("MLWF_LOG", "warn")
        .env("WANDB_BASE_URL", fx.server.base_url())
        .env("WANDB_API_KEY", util::KEY)
        .env("WANDB_ENTITY", ENTITY)
        .env("WANDB_PROJECT", PROJECT)
        .env("WANDB_UI_URL", "https://wandb.test")
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
        .env("GITHUB_API_URL", fx.github.url())
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_STEP_SUMMARY", fx.dir.path().join("summary.md"))
        .env("GITHUB_OUTPUT", fx.dir.path().join("output"))
        .env("GITHUB_ACTIONS", "true");
    command
}

fn event_file(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    let path = fx.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn an_empty_payload_reports_every_unreported_run_exactly_once() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.seed_experiments().await;
    let event = event_file(
        &fx,
        "event.json",
        r#"{"action": "wandb_run_finished", "client_payload": {}}"#,
    );
    for _ in 0..2 {
        let out = mlwf(&fx, &event, &[]).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Secrets are masked for the runner, and only as mask commands.
        assert!(stdout.contains(&format!("::add-mask::{TOKEN}")));
        assert_eq!(stdout.matches(TOKEN).count(), 1, "{stdout}");
    }
    for number in 1..=5 {
        assert_eq!(fx.github.comments(number).len(), 1, "PR #{number}");
    }
    let creates = fx
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.uri.ends_with("/comments"))
        .count();
    assert_eq!(creates, 5, "one comment per PR over both jobs");
    let output = fx.read("output");
    assert!(output.contains("reported<<MLWF_EOF\n8\n"), "{output}");
    assert!(
        output.contains("reported<<MLWF_EOF\n0\n"),
        "the second job found nothing: {output}"
    );
    fx.base.shutdown().await;
}

#[tokio::test]
async fn hostile_names_and_malformed_payloads_are_refused_or_ignored_safely() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    let canary = fx.dir.path().join("pwned");
    let hostile = format!("x\"; touch {} #", canary.display());
    fx.log(SyntheticRun::finished("hostile1", &hostile, "b1", 1, 0.8))
        .await;

    // Not JSON at all: a clear error, nothing posted.
    let broken = event_file(&fx, "broken.json", "{\"client_payload\": ");
    let out = mlwf(&fx, &broken, &[]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the event is not valid JSON"), "{stderr}");
    assert!(fx.github.requests().is_empty());

    // Hostile fields are dropped with a warning and the job reconciles anyway; the run whose
    // config.branch is hostile is reported to the job summary only.
    let payload = serde_json::json!({"action": "wandb_run_finished", "client_payload": {
        "branch": hostile, "run_id": format!("$(touch {})", canary.display()), "state": ["x"]}});
    let event = event_file(&fx, "event.json", &payload.to_string());
    let out = mlwf(&fx, &event, &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ignoring client_payload.branch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ignoring client_payload.run_id"),
        "{stderr}"
    );
    assert!(
        stdout.contains("::warning::run(s) hostile1 have no valid config.branch"),
        "{stdout}"
    );
    assert!(!canary.exists(), "nothing was executed");
    assert!(
        !fx.sent_to_github().contains("touch"),
        "the hostile name never reached GitHub"
    );
    assert!(fx.read("summary.md").contains("hostile1"));
    assert!(fx.tags("hostile1").await.contains(&REPORTED_TAG.to_owned()));

    // A hostile --run is refused before anything is read.
    let out = mlwf(&fx, &event, &["--run", "$(id)"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a W&B run id"));
    fx.base.shutdown().await;
}

#[tokio::test]
async fn dry_run_prints_the_report_and_changes_nothing() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.log(SyntheticRun::finished("dry00001", "feat/dry", "b1", 1, 0.8))
        .await;
    fx.github.open_pr(1, "feat/dry");
    let event = event_file(&fx, "event.json", "{}");
    let out = mlwf(&fx, &event, &["--dry-run", "--run", "dry00001"])
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(mlwf::analyze::comment::MARKER),
        "{stdout}"
    );
    assert!(stdout.contains("🟢 better"));
    assert!(!stdout.contains("::add-mask::"));
    assert!(fx.github.requests().is_empty());
    assert!(!fx.tags("dry00001").await.contains(&REPORTED_TAG.to_owned()));
    fx.base.shutdown().await;
}

#[tokio::test]
async fn a_github_enterprise_api_url_with_a_path_is_honoured() {
    let fx = Fixture::start().await;
    fx.seed_baseline().await;
    fx.log(SyntheticRun::finished(
        "ghes0001",
        "feat/ghes",
        "b1",
        1,
        0.8,
    ))
    .await;
    let ghes = FakeGitHub::start_under("/api/v3", OWNER, REPO, TOKEN)
        .await
        .unwrap();
    ghes.open_pr(3, "feat/ghes");
    assert!(ghes.url().ends_with("/api/v3"));
    let mut options = fx.options(Dispatch::default(), None);
    options.github = Some(
        GitHub::new(
            ghes.url(),
            &Secret::new(TOKEN),
            format!("{OWNER}/{REPO}").parse().unwrap(),
        )
        .unwrap(),
    );
    mlwf::analyze::run(&fx.project(), &options).await.unwrap();
    assert_eq!(ghes.comments(3).len(), 1);
    assert_eq!(ghes.labels(3), ["mlwf:better"]);
    assert!(
        fx.github.requests().is_empty(),
        "nothing went to the other GitHub"
    );
    fx.base.shutdown().await;
}
