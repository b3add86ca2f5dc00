//! API keys: format checks, generation, and the Basic-auth check of requests.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::routes::{error_response, AppState};

/// Whether `key` has the shape the SDK accepts: an optional `prefix-`, then at least 40
/// characters of `[A-Za-z0-9_]` (`wandb/sdk/lib/wbauth/validation.py`).
pub fn is_valid_key(key: &str) -> bool {
    let secret = key.rsplit_once('-').map_or(key, |(_, secret)| secret);
    secret.len() >= 40
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A new key in the self-hosted style: `local-` and 40 random alphanumerics.
pub fn generate_key() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let secret: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("local-{secret}")
}

/// The key of a Basic `Authorization` header (the password; W&B's user name is `api`, but
/// netrc-based clients send others, so it is not checked).
fn basic_password(value: &str) -> Option<String> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

/// Compares in time independent of where the inputs differ, so response timing does not
/// reveal how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn key_accepted(keys: &[String], presented: &str) -> bool {
    keys.iter().fold(false, |ok, key| {
        constant_time_eq(key.as_bytes(), presented.as_bytes()) | ok
    })
}

/// Middleware: only requests with a configured key get through; the others get 401 before
/// anything is read or written.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_password);
    match presented {
        Some(key) if key_accepted(&state.api_keys, &key) => next.run(request).await,
        Some(_) => unauthorized("invalid API key"),
        None => unauthorized(
            "missing API key: send HTTP Basic auth with user \"api\" and the key as password",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"mlwf\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format_matches_the_sdk() {
        assert!(is_valid_key(&"x".repeat(40)));
        assert!(is_valid_key(&format!("local-{}", "a_1".repeat(14))));
        assert!(!is_valid_key(&"x".repeat(39)));
        assert!(!is_valid_key(&format!("local-{}!", "x".repeat(40))));
        let generated = generate_key();
        assert!(is_valid_key(&generated));
        assert_ne!(generated, generate_key());
    }

    #[test]
    fn basic_auth_is_parsed_and_checked() {
        let header = format!("Basic {}", STANDARD.encode("api:secret-key"));
        assert_eq!(basic_password(&header).as_deref(), Some("secret-key"));
        assert_eq!(basic_password("Bearer x"), None);
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        assert!(key_accepted(&keys, "k2"));
        assert!(!key_accepted(&keys, "k3"));
        assert!(!key_accepted(&keys, "k"));
    }
}
