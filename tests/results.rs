//! `mlwf results list|compare|logs|history` and `mlwf runs tag|untag|note|stop|delete` as
//! processes against the fixture's server, seeded with trainer-shaped runs: the baseline's
//! seeds on `main`, a better, a worse and a within-noise branch, a failed one.

use std::process::Output;

use mlwf::testkit::synthetic::{log_run, SyntheticRun};
use serde_json::Value;

use crate::launch::{mlwf, output, text};
use crate::util::{Fixture, ENTITY, KEY, PROJECT};

async fn seeded() -> Fixture {
    let t = Fixture::start().await;
    let runs = [
        SyntheticRun::finished("base0001", "main", "m1", 1, 1.00),
        SyntheticRun::finished("base0002", "main", "m1", 2, 1.01),
        SyntheticRun::finished("better01", "exp/better", "b1", 1, 0.80),
        SyntheticRun::finished("worse001", "exp/worse", "w1", 1, 1.30),
        SyntheticRun::finished("noise001", "exp/noise", "n1", 1, 1.004),
        SyntheticRun::failed(
            "failed01",
            "exp/broken",
            30,
            1,
            &["step 30", "error: loss is NaN"],
        ),
    ];
    for run in &runs {
        log_run(&t.client, ENTITY, PROJECT, run).await.unwrap();
    }
    t
}

async fn mlwf_ok(t: &Fixture, args: &[&str]) -> String {
    let out = mlwf_out(t, args).await;
    assert!(out.status.success(), "mlwf {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

async fn mlwf_out(t: &Fixture, args: &[&str]) -> Output {
    output(&mut mlwf(t, t.dir.path(), args)).await
}

async fn json(t: &Fixture, args: &[&str]) -> Value {
    serde_json::from_str(&mlwf_ok(t, args).await).unwrap()
}

#[tokio::test]
async fn compare_gives_each_branch_the_reports_verdict() {
    let t = seeded().await;
    let compared = json(&t, &["results", "compare", "--json"]).await;
    let verdicts: Vec<(String, String, String)> = compared
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["branch"].as_str().unwrap().to_owned(),
                c["run"]["id"].as_str().unwrap().to_owned(),
                c["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("exp/broken", "failed01", "failed"),
        ("exp/noise", "noise001", "within-noise"),
        ("exp/worse", "worse001", "worse"),
        ("exp/better", "better01", "better"),
    ]
    .map(|(b, r, v)| (b.to_owned(), r.to_owned(), v.to_owned()));
    assert_eq!(verdicts, expected, "{compared:#}");
    let better = &compared[3];
    assert_eq!(
        better["against"]["id"], "base0002",
        "the newest baseline seed"
    );
    assert_eq!(better["seed_runs"].as_array().unwrap().len(), 2);
    assert!(
        better["delta_pct"].as_f64().unwrap_or(0.0) < -15.0,
        "{better:#}"
    );
    assert_eq!(better["metrics"][0]["key"], "val/loss");

    // Head to head, one branch; and the table for people.
    let head = json(
        &t,
        &[
            "results",
            "compare",
            "--branch",
            "exp/worse",
            "--against",
            "exp/better",
            "--json",
        ],
    )
    .await;
    assert_eq!(head[0]["against"]["id"], "better01");
    assert_eq!(head[0]["verdict"], "worse");
    let table = mlwf_ok(&t, &["results", "compare", "--branch", "exp/better"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("branch") && lines[0].contains("verdict"),
        "{table}"
    );
    assert!(
        lines[1].contains("better01") && lines[1].ends_with("better"),
        "{table}"
    );

    // A branch without runs: one line that says what to do, exit non-zero.
    let out = mlwf_out(&t, &["results", "compare", "--branch", "exp/none"]).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("has no run") && said.contains("mlwf launch"),
        "{said}"
    );
}

#[tokio::test]
async fn list_logs_and_history_read_runs_back() {
    let t = seeded().await;
    let listed = json(&t, &["results", "list", "--branch", "main", "--json"]).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["base0002", "base0001"]);
    let failed = mlwf_ok(&t, &["runs", "list", "--state", "failed"]).await;
    assert!(
        failed.contains("failed01") && !failed.contains("base0001"),
        "{failed}"
    );

    let logs = mlwf_ok(&t, &["results", "logs", "failed01", "--tail", "1"]).await;
    assert_eq!(logs.trim_end(), "error: loss is NaN");

    let csv = mlwf_ok(
        &t,
        &[
            "results", "history", "better01", "--keys", "val/loss", "--csv",
        ],
    )
    .await;
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,val/loss"));
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let (step, value) = l.split_once(',').unwrap();
            (step.parse().unwrap(), value.parse().unwrap())
        })
        .collect();
    assert!(rows.len() >= 5, "{csv}");
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "steps in order: {csv}"
    );
    assert!((rows.last().unwrap().1 - 0.80).abs() < 0.05, "{csv}");

    let out = mlwf_out(&t, &["results", "logs", "nosuchrun"]).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no run \"nosuchrun\""), "{said}");
    assert!(!said.contains(KEY));
}

#[tokio::test]
async fn runs_are_tagged_noted_stopped_and_deleted_and_dry_runs_change_nothing() {
    let t = seeded().await;
    let dry = mlwf_ok(
        &t,
        &["runs", "tag", "better01", "--tag", "candidate", "--dry-run"],
    )
    .await;
    assert!(dry.starts_with("dry run"), "{dry}");
    let read = |id: &'static str| {
        let client = t.client.clone();
        async move { client.run(ENTITY, PROJECT, id).await.unwrap() }
    };
    assert!(read("better01").await.unwrap().tags.is_empty());

    mlwf_ok(
        &t,
        &["runs", "tag", "better01", "worse001", "--tag", "candidate"],
    )
    .await;
    assert_eq!(read("worse001").await.unwrap().tags, ["candidate"]);
    mlwf_ok(&t, &["runs", "untag", "worse001", "--tag", "candidate"]).await;
    assert!(read("worse001").await.unwrap().tags.is_empty());
    assert_eq!(read("better01").await.unwrap().tags, ["candidate"]);

    mlwf_ok(&t, &["runs", "note", "better01", "--text", "lr 1e-3 wins"]).await;
    assert_eq!(
        read("better01").await.unwrap().notes.as_deref(),
        Some("lr 1e-3 wins")
    );

    mlwf_ok(&t, &["runs", "stop", "noise001"]).await;
    let storage_id = read("noise001").await.unwrap().storage_id;
    assert!(t
        .client
        .run_stop_requested(ENTITY, PROJECT, "noise001")
        .await
        .unwrap());
    assert!(!storage_id.is_empty());

    // An unknown id among known ones: nothing is deleted.
    let out = mlwf_out(&t, &["runs", "delete", "worse001", "nosuchrun"]).await;
    assert!(!out.status.success());
    assert!(read("worse001").await.is_some());
    let said = mlwf_ok(&t, &["runs", "delete", "worse001"]).await;
    assert!(said.contains("worse001: deleted"), "{said}");
    assert!(read("worse001").await.is_none());
}

#[tokio::test]
async fn plot_draws_both_curves_as_a_png_and_in_the_terminal() {
    let t = seeded().await;
    let path = t.dir.path().join("curves.png");
    let plot = [
        "results",
        "plot",
        "--branch",
        "exp/better",
        "--branch",
        "exp/worse",
    ];
    let mut to_file = plot.to_vec();
    to_file.extend(["-o", path.to_str().unwrap()]);
    let said = mlwf_ok(&t, &to_file).await;
    assert!(
        said.contains("blue: exp/better") && said.contains("orange: exp/worse"),
        "{said}"
    );
    let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (800, 480));
    let count = |colour: [u8; 3]| {
        pixels[..frame.buffer_size()]
            .chunks(3)
            .filter(|p| *p == colour)
            .count()
    };
    // Each curve is drawn (more than its legend swatch of 64 pixels), on a white background.
    for (colour, _) in &mlwf::plot::COLOURS[..2] {
        assert!(count(*colour) > 200, "{colour:?}: {}", count(*colour));
    }
    assert!(count([255, 255, 255]) > 800 * 480 / 2);

    let chart = mlwf_ok(&t, &plot).await;
    assert!(chart.starts_with("val/loss\n"), "{chart}");
    assert!(
        chart.contains("* exp/better (better01)") && chart.contains("o exp/worse (worse001)"),
        "{chart}"
    );
    let out = mlwf_out(&t, &["results", "plot", "--branch", "exp/none"]).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("has no run"));
}
