//! `mlwf bench analyze`: wall time of one `mlwf analyze`, start to comment posted, against
//! the local server, a fake GitHub and a fake Claude.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::scratch_server;
use crate::analyze::event::Dispatch;
use crate::analyze::facts::Project;
use crate::analyze::llm::Claude;
use crate::analyze::Options;
use crate::experiment::baseline::DEFAULT_BRANCH;
use crate::experiment::verdict::Judging;
use crate::github::actions::Actions;
use crate::github::GitHub;
use crate::secrets::{Redactor, Secret};
use crate::server::RunningServer;
use crate::testkit::claude::FakeClaude;
use crate::testkit::github::FakeGitHub;
use crate::testkit::synthetic::{self, SyntheticRun};
use crate::wandb::{ApiKey, Client, Settings};

/// The wall times of one kind of `mlwf analyze` job.
#[derive(Debug, Clone)]
pub struct CaseTimes {
    pub name: &'static str,
    /// Sorted, fastest first.
    pub times: Vec<Duration>,
}

/// Times one `mlwf analyze` from start (clients built) to comment posted, against the local
/// server seeded with trainer-shaped runs, a fake GitHub and an instant fake Claude, `repeat`
/// times per case. Each repetition reports a fresh run on its own PR, as a webhook would.
pub async fn analyze(repeat: usize) -> anyhow::Result<Vec<CaseTimes>> {
    let (_scratch, server, key) = scratch_server().await?;
    let result = analyze_cases(repeat, &server, &key).await;
    server.shutdown().await;
    result
}

async fn analyze_cases(
    repeat: usize,
    server: &RunningServer,
    key: &str,
) -> anyhow::Result<Vec<CaseTimes>> {
    const TOKEN: &str = "bench-github-token";
    let client = Client::new(Settings::new(server.base_url(), Some(ApiKey::new(key)))?)?;
    let entity = client.resolve_entity(None).await?;
    let project = Project {
        client: client.clone(),
        entity: entity.clone(),
        project: "bench".into(),
        ui_url: server.base_url().to_owned(),
    };
    for seed in 0..3 {
        let mut base = SyntheticRun::finished(
            &format!("base{seed}"),
            DEFAULT_BRANCH,
            "c0ffee",
            seed,
            1.0 + 0.01 * seed as f64,
        );
        // Only the run under test is to be reported.
        base.tags = vec![crate::experiment::REPORTED_TAG.to_owned()];
        synthetic::log_run(&client, &entity, "bench", &base).await?;
    }
    let github = FakeGitHub::start("bench", "repo", TOKEN).await?;
    let claude = FakeClaude::start("The loss diverged; lower the learning rate.", 0).await?;
    let cases: [(&str, bool, bool); 3] = [
        ("success report", false, false),
        ("failure report, LLM disabled", true, false),
        ("failure report, fake LLM", true, true),
    ];
    let mut pr = 0;
    let mut measured = Vec::new();
    for (name, failed, llm) in cases {
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            pr += 1;
            let branch = format!("bench/{pr}");
            let id = format!("run{pr:05}");
            let spec = if failed {
                SyntheticRun::failed(
                    &id,
                    &branch,
                    60,
                    1,
                    &["step 50 train/loss nan", "error: loss is NaN at step 60"],
                )
            } else {
                SyntheticRun::finished(&id, &branch, "beef", 7, 0.8)
            };
            synthetic::log_run(&client, &entity, "bench", &spec).await?;
            github.open_pr(pr, &branch);
            let start = Instant::now();
            let options = Options {
                judging: Judging::default(),
                baseline_branch: DEFAULT_BRANCH.into(),
                run: None,
                dispatch: Dispatch::default(),
                max_runs: 20,
                github: Some(GitHub::new(
                    github.url(),
                    &Secret::new(TOKEN),
                    "bench/repo".parse()?,
                )?),
                claude: if llm {
                    Some(Claude::new(
                        &claude.url,
                        Secret::new("sk-ant-bench"),
                        "fake-model",
                    )?)
                } else {
                    None
                },
                actions: Actions::default(),
                redactor: Redactor::new([key, TOKEN]),
            };
            let outcome = crate::analyze::run(&project, &options).await?;
            let elapsed = start.elapsed();
            if outcome.reports.len() != 1 || github.comments(pr).len() != 1 {
                bail!("the benchmark expected one report and one comment on PR #{pr}");
            }
            times.push(elapsed);
        }
        times.sort();
        measured.push(CaseTimes { name, times });
    }
    Ok(measured)
}
