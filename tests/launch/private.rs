//! A private repository over HTTPS-style token auth: a loopback git HTTP server (git's own
//! `http-backend`) that answers 401 without the token. The agent clones with the token and it
//! shows up nowhere: not in its output, the job's environment, the run, or a failure message.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use mlwf::testkit::launch::{log_job, HandMadeJob};
use mlwf::wandb::launch::LaunchSpec;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use super::{agent_command, create_queue, items, output, run, text, Repos, QUEUE};
use crate::util::{self, Fixture, ENTITY, PROJECT};

const TOKEN: &str = "ghp_privatetoken0123456789abcdefABCDEF";

#[derive(Clone)]
struct GitServer {
    root: PathBuf,
}

/// One smart-HTTP request through `git http-backend` (CGI), after the token check.
async fn serve_git(State(server): State<GitServer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&parts.headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [("WWW-Authenticate", "Basic realm=\"git\"")],
            "",
        )
            .into_response();
    }
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &server.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .expect("CGI headers");
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
    let mut response = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.split_whitespace().next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name, value);
        }
    }
    response
        .body(axum::body::Body::from(
            out.stdout[split.0 + split.1..].to_vec(),
        ))
        .unwrap()
}

fn authorized(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8_lossy(&decoded)
        .split_once(':')
        .is_some_and(|(_, password)| password == TOKEN)
}

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mlwf")).parent().unwrap()
}

#[tokio::test]
async fn a_private_repository_clones_with_a_token_that_appears_nowhere() {
    let t = Fixture::start().await;
    create_queue(&t).await;
    let repos = Repos::new(&t.path("repos"), &[("NOTES.md", "private\n")]);
    repos.push();
    let root = repos.bare.parent().unwrap().to_path_buf();
    let base = util::serve(
        axum::Router::new()
            .fallback(serve_git)
            .with_state(GitServer { root }),
    )
    .await;
    let remote = format!("{base}/repo.git");
    let dump = t.path("dump").join("env.txt");
    let script = format!(
        "env > {}; exec mlwf train --set optim.max_iters=10 --set optim.warmup_iters=2",
        dump.display()
    );
    let files = t.path("private-job");
    let job = HandMadeJob {
        name: "job-private",
        remote: &remote,
        commit: &repos.feat_x,
        entrypoint: &["sh", "-c", &script],
        requirements: "",
    };
    let job = log_job(&t.client, &job, &files).await.unwrap();
    let spec =
        LaunchSpec::from_value(json!({"job": job, "entity": ENTITY, "project": PROJECT})).unwrap();
    t.client
        .push_to_queue(ENTITY, QUEUE, &spec, None)
        .await
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let agent = |token: Option<&str>| {
        let mut command =
            agent_command(&t, &repos, &["--max-items", "1", "--git-host", "127.0.0.1"]);
        command.env("PATH", &path);
        if let Some(token) = token {
            command.env("MLWF_GIT_TOKEN", token);
        }
        command
    };

    // Without the token the clone fails, and says so.
    let without = output(&mut agent(None)).await;
    assert!(without.status.success(), "{}", text(&without));
    let (first, state, _) = items(&t).await.remove(0);
    assert_eq!(state, "FAILED");
    let error = t
        .client
        .item_details(&first)
        .await
        .unwrap()
        .unwrap()
        .error
        .unwrap();
    assert_eq!(error.stage, "agent");
    assert!(error.message.contains("repo.git"), "{}", error.message);

    t.client
        .push_to_queue(ENTITY, QUEUE, &spec, None)
        .await
        .unwrap();
    let with = output(&mut agent(Some(TOKEN))).await;
    let said = text(&with);
    assert!(with.status.success(), "{said}");
    let (_, state, run_id) = items(&t).await.remove(1);
    assert_eq!(state, "CLAIMED", "{said}");
    let run = run(&t, &run_id.unwrap()).await.unwrap();
    assert_eq!(run["state"], "finished", "{said}");
    assert_eq!(run["commit"], repos.feat_x.as_str());

    let job_env = std::fs::read_to_string(&dump).unwrap();
    for (place, text) in [
        ("the agent's output", &said),
        ("the job's environment", &job_env),
        ("the run", &run.to_string()),
        ("the failure", &error.message),
    ] {
        assert!(!text.contains(TOKEN), "the token leaked into {place}");
    }
    assert!(
        !job_env.contains("MLWF_GIT_TOKEN") && !job_env.contains("GIT_ASKPASS"),
        "{job_env}"
    );
}
