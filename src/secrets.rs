//! Secrets out of anything that leaves mlwf: a [`Secret`] never prints itself, a [`Redactor`]
//! takes secrets out of text (log tails, error lines, config values, model text), and
//! [`add_mask`] tells GitHub Actions to hide one in its log. Known secrets are removed by value;
//! everything else that looks like a credential by pattern. It errs on the side of hiding: a
//! commit SHA in a log line is masked too.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// A credential (a GitHub token, an Anthropic key). `Debug` and `Display` print a placeholder,
/// so it cannot leak into logs, errors or panics by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Tells the GitHub Actions runner to mask `secret` in all later log output. Printed to stdout,
/// where the runner reads workflow commands; short values are skipped (masking "1" would mask
/// every 1).
pub fn add_mask(secret: &str) {
    if secret.len() >= 4 {
        for line in secret.lines() {
            println!("::add-mask::{}", workflow_command_data(line));
        }
    }
}

/// The runner's escaping of a workflow command's data, so a message cannot end the command
/// early or start a new one.
pub fn workflow_command_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Shorter values are not masked by value: they would mask ordinary words and numbers.
const MIN_SECRET_LEN: usize = 8;

/// Removes secrets from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Known secret values, longest first so one that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor that also masks these values wherever they appear.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        for (pattern, replacement) in patterns() {
            if pattern.is_match(&text) {
                text = pattern.replace_all(&text, *replacement).into_owned();
            }
        }
        redact_random_tokens(&text)
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.redact(text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}

/// Credential shapes, most specific first. `$k` keeps the name of a `key=value` pair.
fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let rules: &[(&str, &str)] = &[
            // `Authorization: Bearer x`, `authorization=Basic x`: the whole value.
            (r#"(?i)(?P<k>\b(?:proxy-)?authorization\b["']?\s*[:=]\s*)[^\r\n]+"#, "${k}[REDACTED]"),
            // `api_key=..`, `"token": ".."`, `--password x`, `WANDB_API_KEY=..`.
            (
                r#"(?i)(?P<k>\b[\w-]*(?:api[_-]?key|token|secret|passw(?:or)?d|access[_-]?key|private[_-]?key|credentials?)\b["']?\s*(?:[:=]|\s)\s*["']?)[^\s"',;&]{4,}"#,
                "${k}[REDACTED]",
            ),
            // Key prefixes of GitHub, Anthropic, OpenAI, Slack, AWS, Hugging Face.
            (r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})", REDACTED),
            (r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}", REDACTED),
            (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", REDACTED),
            (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),
            (r"\bhf_[A-Za-z0-9]{30,}", REDACTED),
            // JSON web tokens.
            (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", REDACTED),
            // W&B keys: 40 hex digits, bare or with a `local-` style prefix. (A SHA-256 has
            // 64 and stays: dataset digests are worth seeing.)
            (r"\b(?:[a-z]+-)?[0-9a-fA-F]{40}\b", REDACTED),
        ];
        rules
            .iter()
            .map(|(re, rep)| (Regex::new(re).expect("valid redaction pattern"), *rep))
            .collect()
    })
}

/// Anything else long and random-looking (letters of both cases and digits) goes too; `regex`
/// has no look-around, so that test runs on each long word.
fn redact_random_tokens(text: &str) -> String {
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let token = TOKEN.get_or_init(|| Regex::new(r"[A-Za-z0-9_+=-]{32,}").expect("valid"));
    token
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let word = &caps[0];
            let lower = word.bytes().any(|b| b.is_ascii_lowercase());
            let upper = word.bytes().any(|b| b.is_ascii_uppercase());
            let digit = word.bytes().any(|b| b.is_ascii_digit());
            if lower && upper && digit {
                REDACTED.to_owned()
            } else {
                word.to_owned()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        Redactor::new(["my-configured-secret-value"]).redact(text)
    }

    #[test]
    fn known_secrets_go_by_value() {
        assert_eq!(
            redact("using my-configured-secret-value now"),
            "using [REDACTED] now"
        );
        // Too short to mask safely.
        assert_eq!(Redactor::new(["abc"]).redact("abc abc"), "abc abc");
    }

    #[test]
    fn credential_shapes_go_by_pattern() {
        let cases = [
            ("Authorization: Bearer abc.def", "Authorization: [REDACTED]"),
            (
                "authorization=Basic dXNlcjpwYXNz",
                "authorization=[REDACTED]",
            ),
            ("api_key=hunter22", "api_key=[REDACTED]"),
            ("WANDB_API_KEY=abcd1234", "WANDB_API_KEY=[REDACTED]"),
            (r#"{"token": "s3cr3t-v"}"#, r#"{"token": "[REDACTED]"}"#),
            ("--password hunter22", "--password [REDACTED]"),
            (
                "push ghp_0123456789abcdefghijABCDEFGHIJ done",
                "push [REDACTED] done",
            ),
            ("github_pat_11ABCDEFG0123456789_abcdefXYZ", "[REDACTED]"),
            ("key sk-ant-api03-abcdefghijklmnop_qrs", "key [REDACTED]"),
            ("aws AKIAABCDEFGHIJKLMNOP", "aws [REDACTED]"),
            (
                "wandb 0123456789abcdef0123456789abcdef01234567 x",
                "wandb [REDACTED] x",
            ),
            (
                "local-0123456789abcdef0123456789abcdef01234567",
                "[REDACTED]",
            ),
            (
                "jwt eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4",
                "jwt [REDACTED]",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_log_lines_survive() {
        let lines = [
            "step 100 train/loss 1.2345 tokens_per_sec 51234.5",
            "thread 'main' panicked at src/train/model.rs:12:5:",
            "error[E0308]: mismatched types",
            "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
            "/home/runner/work/project/target/release/build/mlwf-0123/out",
            "the tokenizer keeps 65 tokens",
            "dataset.sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ];
        for line in lines {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn values_are_redacted_all_the_way_down() {
        let mut value = serde_json::json!({"a": ["x", {"token": "api_key=hunter22"}], "n": 1});
        Redactor::default().redact_value(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": ["x", {"token": "api_key=[REDACTED]"}], "n": 1})
        );
    }

    #[test]
    fn a_secret_never_prints_itself() {
        let secret = Secret::new("ghp_0123456789abcdefghijABCDEFGHIJ");
        assert!(!format!("{secret} {secret:?}").contains("ghp_"));
        assert_eq!(secret.expose_secret(), "ghp_0123456789abcdefghijABCDEFGHIJ");
    }

    #[test]
    fn command_data_cannot_inject_commands() {
        assert_eq!(
            workflow_command_data("a\n::set-output x%"),
            "a%0A::set-output x%25"
        );
    }

    #[test]
    fn random_looking_tokens_go_words_stay() {
        assert_eq!(
            redact_random_tokens("x Zk8fJ2mQ9pL4vR7tY1wE3nB6cH5aD0sG y"),
            "x [REDACTED] y"
        );
        let path = "averyveryverylongidentifier_without_digits_at_all";
        assert_eq!(redact_random_tokens(path), path);
    }
}
