//! An optional narrative of a failure from Claude, through the Anthropic Messages API.
//!
//! Only redacted text is sent. The answer is shown quoted, as the model's words; nothing in it
//! is ever run. Without `ANTHROPIC_API_KEY` the narrative is skipped, and any API failure
//! leaves the report without it instead of failing the job.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::json;

use crate::retry::{parse_retry_after, RetryPolicy};
use crate::secrets::Secret;

pub const DEFAULT_API_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const API_VERSION: &str = "2023-06-01";
const MAX_TOKENS: u32 = 600;

/// A configured Anthropic client.
#[derive(Clone)]
pub struct Claude {
    http: reqwest::Client,
    api_url: String,
    key: Secret,
    pub model: String,
    retry: RetryPolicy,
}

impl Claude {
    pub fn new(api_url: &str, key: Secret, model: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("configuring the Anthropic HTTP client")?;
        Ok(Self {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            key,
            model: model.to_owned(),
            retry: RetryPolicy::new(5, Duration::from_secs(2), Duration::from_secs(30)),
        })
    }

    /// Replaces the retry policy (tests wait milliseconds, not seconds).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The model's text answer to one user message, retrying overload (429, 529) and server
    /// errors with backoff.
    pub async fn ask(&self, prompt: &str) -> anyhow::Result<String> {
        let body = json!({
            "model": self.model,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
        });
        let url = format!("{}/v1/messages", self.api_url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(&url)
                .header("x-api-key", self.key.expose_secret())
                .header("anthropic-version", API_VERSION)
                .json(&body)
                .send()
                .await;
            let retry_after = match sent {
                Ok(response) if response.status().is_success() => {
                    let answer: Answer = response
                        .json()
                        .await
                        .context("reading the Anthropic API's answer")?;
                    return answer.text();
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let retryable = matches!(status, 429 | 529) || status >= 500;
                    if !retryable || attempt >= self.retry.max_attempts {
                        let text = response.text().await.unwrap_or_default();
                        bail!(
                            "the Anthropic API answered {status}: {}",
                            text.chars().take(300).collect::<String>()
                        );
                    }
                    retry_after
                }
                Err(error) if attempt < self.retry.max_attempts => {
                    tracing::debug!(%error, "Anthropic request failed; retrying");
                    None
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error.without_url()))
                        .context("calling the Anthropic API")
                }
            };
            tokio::time::sleep(self.retry.wait_before(attempt - 1, retry_after)).await;
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

impl Answer {
    fn text(self) -> anyhow::Result<String> {
        let text: Vec<String> = self
            .content
            .into_iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text)
            .collect();
        if text.is_empty() {
            bail!("the Anthropic API's answer held no text");
        }
        Ok(text.join("\n").trim().to_owned())
    }
}

/// The question about a failed run: the classification and the (already redacted) log tail.
pub fn failure_prompt(cause: &str, suggestion: &str, config: &str, log_tail: &str) -> String {
    format!(
        "You are reviewing a failed machine-learning training run (a Rust trainer logging to \
         Weights & Biases). Rules classified the failure as: {cause}. Their suggested fix: \
         {suggestion}\n\nIn at most 5 short sentences of plain markdown (no code blocks, no \
         commands to run), say what most likely went wrong and what to change. If the log \
         does not support the classification, say so.\n\nRun config:\n{config}\n\nLog tail:\n{log_tail}"
    )
}

// The fake server is test scaffolding, outside the product (the `testkit` feature).
#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::testkit::claude::FakeClaude;

    #[tokio::test]
    async fn overload_is_retried_and_the_text_returned() {
        let fake = FakeClaude::start("It ran out of memory.", 2).await.unwrap();
        let claude = Claude::new(
            &fake.url,
            Secret::new("sk-ant-test-key-123456789"),
            "claude-test",
        )
        .unwrap()
        .with_retry(RetryPolicy::new(
            4,
            Duration::from_millis(1),
            Duration::from_millis(2),
        ));
        assert_eq!(claude.ask("why?").await.unwrap(), "It ran out of memory.");
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        let (headers, body) = &requests[2];
        assert_eq!(headers["x-api-key"], "sk-ant-test-key-123456789");
        assert_eq!(headers["anthropic-version"], API_VERSION);
        assert_eq!(body["model"], "claude-test");
        assert_eq!(body["messages"][0]["content"], "why?");
    }

    #[tokio::test]
    async fn persistent_overload_is_an_error_not_a_hang() {
        let fake = FakeClaude::start("x", 100).await.unwrap();
        let claude = Claude::new(&fake.url, Secret::new("k"), "m")
            .unwrap()
            .with_retry(RetryPolicy::new(
                3,
                Duration::from_millis(1),
                Duration::from_millis(2),
            ));
        let error = claude.ask("q").await.unwrap_err().to_string();
        assert!(error.contains("529"), "{error}");
        assert_eq!(fake.requests().len(), 3);
    }
}
