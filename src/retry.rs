//! Retrying HTTP requests: how often and how patiently, which statuses are worth another attempt,
//! and the server's `Retry-After`. The W&B client and the Claude client use it; the defaults are
//! the official W&B client's (wandb-core).

use std::time::{Duration, SystemTime};

use time::macros::format_description;
use time::PrimitiveDateTime;

/// How often and how patiently one kind of request is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// Base of the exponential backoff.
    pub min_wait: Duration,
    /// Ceiling of the exponential backoff.
    pub max_wait: Duration,
    /// Limit on one attempt (request and whole response body); `None` waits forever.
    pub attempt_timeout: Option<Duration>,
}

/// A server's `Retry-After` above this is treated as bogus: a typo'd date must not park a run
/// for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    pub fn new(max_attempts: u32, min_wait: Duration, max_wait: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            min_wait,
            max_wait,
            attempt_timeout: None,
        }
    }

    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// wandb-core's GraphQL policy: 20 retries, 2–60 s apart, 30 s per attempt.
    pub fn graphql_default() -> Self {
        Self::new(21, Duration::from_secs(2), Duration::from_secs(60))
            .with_attempt_timeout(Duration::from_secs(30))
    }

    /// wandb-core's file_stream policy: retries for about a week, 180 s per attempt, because
    /// the server accepts late data and a run must survive long network outages.
    pub fn file_stream_default() -> Self {
        Self::new(10_086, Duration::from_secs(2), Duration::from_secs(60))
            .with_attempt_timeout(Duration::from_secs(180))
    }

    /// wandb-core's file transfer policy: 20 retries, no per-attempt limit (large files).
    pub fn transfer_default() -> Self {
        Self::new(21, Duration::from_secs(2), Duration::from_secs(60))
    }

    /// Wait before retry number `retry` (0 for the first retry): `min(max, 2^retry × min × jitter)`
    /// where `jitter` is drawn from U[1, 1.25] by the caller.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2f64.powi(retry.min(62) as i32) * jitter;
        let wait = self.min_wait.as_secs_f64() * factor;
        if !wait.is_finite() || wait >= self.max_wait.as_secs_f64() {
            self.max_wait
        } else {
            Duration::from_secs_f64(wait.max(0.0))
        }
    }

    /// Wait before retry number `retry`, honouring the server's `Retry-After` when it gave one.
    pub(crate) fn wait_before(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER),
            None => self.backoff(retry, rand::random_range(1.0..=1.25)),
        }
    }
}

/// Whether an HTTP status is worth another attempt. Retried: 429 and 5xx except 501 (the
/// server will never implement it). Client errors are final, except that `UpsertBucket` also
/// retries 409 (a concurrent upsert of the same run), as wandb-core does.
pub(crate) fn is_retryable_status(status: u16, retry_conflict: bool) -> bool {
    match status {
        429 => true,
        409 => retry_conflict,
        501 => false,
        500..=599 => true,
        _ => false,
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate) measured from `now`.
/// Unparseable values give `None`, so the caller falls back to its backoff.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date: SystemTime = PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc()
        .into();
    // A date in the past means "retry now".
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(5, Duration::from_secs(2), Duration::from_secs(60))
    }

    #[test]
    fn backoff_doubles_from_min_and_stops_at_max() {
        let p = policy();
        assert_eq!(p.backoff(0, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(16));
        assert_eq!(p.backoff(4, 1.0), Duration::from_secs(32));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff(500, 1.25), Duration::from_secs(60));
    }

    #[test]
    fn jitter_scales_the_wait_up_to_a_quarter() {
        let p = policy();
        assert_eq!(p.backoff(2, 1.25), Duration::from_secs(10));
        for _ in 0..100 {
            let wait = p.wait_before(2, None);
            assert!(
                wait >= Duration::from_secs(8) && wait <= Duration::from_secs(10),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn retry_after_overrides_backoff_within_reason() {
        let p = policy();
        assert_eq!(
            p.wait_before(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.wait_before(0, Some(Duration::from_secs(1 << 40))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 PST", now),
            None
        );
    }

    #[test]
    fn retryable_statuses_follow_wandb_core() {
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(is_retryable_status(status, false), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 409, 410, 413, 422, 501] {
            assert!(!is_retryable_status(status, false), "{status}");
        }
        assert!(is_retryable_status(409, true));
        assert!(!is_retryable_status(422, true));
    }
}
