//! The webhook sender: works off the deliveries automations queue (`store::automations`), as W&B
//! sends them: `POST` of the filled payload, the integration's access token as Bearer, an
//! `X-Wandb-Signature` (base64 HMAC-SHA256 of the body) when it has a signing secret. Failures
//! are retried with exponential backoff and each attempt is recorded on the delivery; a target
//! that stays down ends as `failed`, and nothing else waits on it. Now and then it also looks
//! for runs that went silent (crashed without a word), which W&B reports as failed.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::store::automations::{self, Attempt, DueDelivery};
use super::store::{format_time, Store, StoreResult};
use super::Tuning;
use crate::retry::{is_retryable_status, RetryPolicy};

/// How many deliveries one pass takes.
const BATCH: usize = 16;
/// The longest a sleeping sender waits before looking again (a retry may have come due).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How deliveries are retried: `attempts` in total, backoff from `backoff` doubling up to a
/// minute, 10 s per attempt.
fn policy(attempts: u32, backoff: Duration) -> RetryPolicy {
    RetryPolicy::new(attempts, backoff, Duration::from_secs(60))
        .with_attempt_timeout(Duration::from_secs(10))
}

/// Runs the sender until `stopping` turns true and nothing is due any more.
pub async fn run(store: Store, tuning: Tuning, mut stopping: watch::Receiver<bool>) {
    let policy = policy(tuning.webhook_attempts, tuning.webhook_backoff);
    let client = match reqwest::Client::builder()
        .user_agent(concat!("mlwf-server/", env!("CARGO_PKG_VERSION")))
        // A redirect would carry the token elsewhere; W&B does not follow them either.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.attempt_timeout.unwrap_or(Duration::from_secs(10)))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!("cannot start the webhook sender: {err}");
            return;
        }
    };
    let sweep_every =
        (tuning.run_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut swept = tokio::time::Instant::now();
    loop {
        if swept.elapsed() >= sweep_every {
            swept = tokio::time::Instant::now();
            if let Err(err) = report_silent_runs(&store, tuning.run_timeout).await {
                tracing::error!("cannot look for crashed runs: {err}");
            }
        }
        let due = match store
            .read(|conn| automations::due_deliveries(conn, BATCH))
            .await
        {
            Ok(due) => due,
            Err(err) => {
                tracing::error!("cannot read pending webhook deliveries: {err}");
                Vec::new()
            }
        };
        if due.is_empty() {
            if *stopping.borrow() {
                return;
            }
            tokio::select! {
                _ = store.committed() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stopping.changed() => {}
            }
            continue;
        }
        for delivery in due {
            let id = delivery.id;
            let outcome = send(&client, &policy, &delivery).await;
            let recorded = store
                .write(move |conn| automations::record_attempt(conn, id, outcome.attempt()))
                .await;
            if let Err(err) = recorded {
                tracing::error!(delivery = id, "cannot record a webhook delivery: {err}");
            }
        }
    }
}

/// Reads first, so an idle server does not write every few seconds.
async fn report_silent_runs(store: &Store, timeout: Duration) -> StoreResult<()> {
    let silent = store
        .read(move |conn| automations::silent_runs(conn, timeout))
        .await?;
    if silent.is_empty() {
        return Ok(());
    }
    store
        .write(move |conn| automations::report_silent_runs(conn, timeout))
        .await
}

/// What one attempt came to, owned so it can move to the store's thread.
struct Outcome {
    http_status: Option<u16>,
    /// `None` when delivered.
    error: Option<String>,
    retry_at: Option<String>,
}

impl Outcome {
    fn attempt(&self) -> Attempt<'_> {
        match &self.error {
            None => Attempt::Delivered {
                http_status: self.http_status.unwrap_or(200),
            },
            Some(error) => Attempt::Failed {
                http_status: self.http_status,
                error,
                retry_at: self.retry_at.clone(),
            },
        }
    }
}

async fn send(client: &reqwest::Client, policy: &RetryPolicy, d: &DueDelivery) -> Outcome {
    let give_up = |http_status, error: String| Outcome {
        http_status,
        error: Some(error),
        retry_at: None,
    };
    let Some(integration) = &d.integration else {
        return give_up(None, "the webhook integration was deleted".into());
    };
    if let Some(name) = &d.missing_secret {
        return give_up(
            None,
            format!("the secret {name} that the integration names is not set"),
        );
    }
    let body = match serde_json::from_str(&d.body) {
        Ok(template) => {
            let secrets = |name: &str| -> Option<String> {
                if name == "ACCESS_TOKEN" {
                    return d.access_token.clone();
                }
                let signing = integration.secret_ref.as_deref() == Some(name);
                signing.then(|| d.signing_secret.clone()).flatten()
            };
            automations::fill(&template, &secrets).to_string()
        }
        Err(err) => return give_up(None, format!("the stored payload is not JSON: {err}")),
    };
    let mut request = client
        .post(&integration.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(token) = &d.access_token {
        request = request.bearer_auth(token);
    }
    if let Some(secret) = &d.signing_secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let signature = ring::hmac::sign(&key, body.as_bytes());
        request = request.header("X-Wandb-Signature", STANDARD.encode(signature.as_ref()));
    }
    let (http_status, error, retryable) = match request.body(body).send().await {
        Ok(response) if response.status().is_success() => {
            return Outcome {
                http_status: Some(response.status().as_u16()),
                error: None,
                retry_at: None,
            }
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            let retryable = is_retryable_status(status, false) || status == 408;
            (Some(status), format!("HTTP {status}: {text}"), retryable)
        }
        // Without the URL: it is the user's, but errors should not repeat it on every line.
        Err(err) => (None, err.without_url().to_string(), true),
    };
    let attempts = d.attempts + 1;
    let retry_at = (retryable && attempts < policy.max_attempts).then(|| {
        let wait = policy.backoff(attempts - 1, rand::random_range(1.0..=1.25));
        format_time(OffsetDateTime::now_utc() + wait)
    });
    tracing::warn!(
        delivery = d.id,
        url = %integration.url,
        attempts,
        retrying = retry_at.is_some(),
        "webhook delivery failed: {error}"
    );
    Outcome {
        http_status,
        error: Some(error),
        retry_at,
    }
}
