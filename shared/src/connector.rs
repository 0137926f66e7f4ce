//! The connector contract every vendor connector follows: timeouts, response classification, and
//! bounded retries with exponential backoff, jitter and the vendor's own retry hints.
//!
//! A connector has a typed config (secrets redacted in `Debug`), a pure request builder, and uses
//! [`send_with_retry`] to send. Responses are sorted by a classifier into success, retryable or permanent.

use std::fmt;
use std::time::Duration;

use crate::error::{ErrorClass, Retryable};

/// A secret value (token, API key, webhook URL). `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Timeouts and retry bounds for one connector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts within one invocation, the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Longest single delay, whatever the vendor asks for. Longer waits are left to SQS redelivery.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// How a vendor answered, after classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Success(T),
    /// Worth retrying: 429, 5xx, timeouts, the vendor's rate-limit signals. `retry_after` is the
    /// vendor's hint, if any.
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed as sent: a 4xx validation error, bad credentials.
    Permanent {
        reason: String,
    },
}

/// A failed call, after retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("{vendor}: retryable failure after {attempts} attempt(s): {reason}")]
    Exhausted {
        vendor: &'static str,
        attempts: u32,
        reason: String,
    },
    #[error("{vendor}: permanent failure: {reason}")]
    Permanent {
        vendor: &'static str,
        reason: String,
    },
}

impl Retryable for ConnectorError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::Exhausted { .. } => ErrorClass::Retryable,
            ConnectorError::Permanent { .. } => ErrorClass::Permanent,
        }
    }
}

impl ConnectorError {
    /// The reason text, for journals and failure records.
    pub fn reason(&self) -> &str {
        match self {
            ConnectorError::Exhausted { reason, .. } | ConnectorError::Permanent { reason, .. } => {
                reason
            }
        }
    }
}

/// Builds the HTTP client every connector shares: rustls, connect and total timeouts.
pub fn http_client(
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(total_timeout)
        .user_agent(concat!("fluxo/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A response read in full: status, headers that matter for retries, and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A header value, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Retry-After` header in seconds (the HTTP-date form is ignored).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }

    /// The default classification: 2xx success, 408/429/5xx retryable (honouring `Retry-After`),
    /// other 4xx permanent. Vendor classifiers call this for the cases they do not handle themselves.
    pub fn default_outcome(&self) -> Outcome<()> {
        match self.status {
            200..=299 => Outcome::Success(()),
            408 | 425 | 429 | 500..=599 => Outcome::Retryable {
                reason: self.summary(),
                retry_after: self.retry_after(),
            },
            _ => Outcome::Permanent {
                reason: self.summary(),
            },
        }
    }

    /// The outcome of a reply that is not the status the caller expected: the default classification,
    /// except that an unexpected 2xx is a permanent failure (the vendor did something else than asked).
    pub fn failure_outcome<T>(&self) -> Outcome<T> {
        match self.default_outcome() {
            Outcome::Success(()) => Outcome::Permanent {
                reason: format!("unexpected status: {}", self.summary()),
            },
            Outcome::Retryable {
                reason,
                retry_after,
            } => Outcome::Retryable {
                reason,
                retry_after,
            },
            Outcome::Permanent { reason } => Outcome::Permanent { reason },
        }
    }

    /// `HTTP <status>: <first 300 chars of the body>`, for failure records.
    pub fn summary(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("HTTP {}: {}", self.status, body.trim())
    }
}

/// Sends a request and reads the whole reply. A transport error or timeout is returned as retryable.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Reply, String> {
    let response = request.send().await.map_err(describe_transport_error)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let body = response.text().await.map_err(describe_transport_error)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn describe_transport_error(e: reqwest::Error) -> String {
    // reqwest's Display includes the URL, which can carry a token (Slack webhooks); keep only the kind.
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "response body could not be read".to_string()
    } else {
        "request failed".to_string()
    }
}

/// Why one attempt failed, as backon sees it.
enum AttemptFailure {
    Retry {
        reason: String,
        hint: Option<Duration>,
    },
    Permanent(String),
}

/// Runs `attempt` until it succeeds, fails permanently, or `policy.max_attempts` is reached.
///
/// `attempt` builds and sends one request and classifies the reply; it gets the 0-based attempt
/// number. Transport errors should be returned as [`Outcome::Retryable`]. Between attempts, `backon`
/// sleeps with exponential backoff and jitter, or for the vendor's hint when it gave one, never longer
/// than `policy.max_delay`.
pub async fn send_with_retry<T, F, Fut>(
    vendor: &'static str,
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<T, ConnectorError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    use backon::{ExponentialBuilder, Retryable as _};

    let attempts = policy.max_attempts.max(1);
    let max_delay = policy.max_delay;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.base_delay)
        .with_max_delay(max_delay)
        .with_max_times(usize::try_from(attempts - 1).unwrap_or(0))
        .with_jitter();
    let mut n = 0u32;
    let op = || {
        let current = n;
        n += 1;
        let fut = attempt(current);
        async move {
            match fut.await {
                Outcome::Success(value) => Ok(value),
                Outcome::Permanent { reason } => Err(AttemptFailure::Permanent(reason)),
                Outcome::Retryable {
                    reason,
                    retry_after,
                } => Err(AttemptFailure::Retry {
                    reason,
                    hint: retry_after,
                }),
            }
        }
    };
    let result = op
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, AttemptFailure::Retry { .. }))
        .adjust(move |e, delay| match e {
            AttemptFailure::Retry { hint: Some(hint), .. } => delay.map(|_| (*hint).min(max_delay)),
            _ => delay,
        })
        .notify(|e, delay| {
            if let AttemptFailure::Retry { reason, .. } = e {
                tracing::warn!(vendor, reason = %reason, retry_in_ms = delay.as_millis() as u64, "retryable vendor failure");
            }
        })
        .await;
    result.map_err(|e| match e {
        AttemptFailure::Permanent(reason) => ConnectorError::Permanent { vendor, reason },
        AttemptFailure::Retry { reason, .. } => ConnectorError::Exhausted {
            vendor,
            attempts,
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)]) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: "x".into(),
        }
    }

    #[test]
    fn secrets_print_redacted() {
        let s = Secret::new("tok_123");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn status_codes_are_classified() {
        assert_eq!(reply(201, &[]).default_outcome(), Outcome::Success(()));
        assert!(matches!(
            reply(503, &[]).default_outcome(),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            reply(400, &[]).default_outcome(),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn retry_after_seconds_are_honoured() {
        let outcome = reply(429, &[("Retry-After", "2")]).default_outcome();
        assert_eq!(
            outcome,
            Outcome::Retryable {
                reason: "HTTP 429: x".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn vendor_retry_hint_sets_the_wait_but_never_past_the_cap() {
        let p = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(3),
        };
        let started = tokio::time::Instant::now();
        let result = send_with_retry("test", &p, |n| async move {
            if n == 0 {
                Outcome::Retryable {
                    reason: "429".into(),
                    retry_after: Some(Duration::from_secs(60)),
                }
            } else {
                Outcome::Success(())
            }
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(started.elapsed().as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success() {
        let p = RetryPolicy::default();
        let result = send_with_retry("test", &p, |n| async move {
            if n < 2 {
                Outcome::Retryable {
                    reason: "busy".into(),
                    retry_after: None,
                }
            } else {
                Outcome::Success(n)
            }
        })
        .await;
        assert_eq!(result, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let p = RetryPolicy::default();
        let mut calls = 0;
        let result: Result<(), _> = send_with_retry("test", &p, |_| {
            calls += 1;
            async {
                Outcome::Permanent {
                    reason: "bad".into(),
                }
            }
        })
        .await;
        assert_eq!(calls, 1);
        assert!(matches!(result, Err(ConnectorError::Permanent { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_as_retryable() {
        let p = RetryPolicy::default();
        let result: Result<(), _> = send_with_retry("test", &p, |_| async {
            Outcome::Retryable {
                reason: "down".into(),
                retry_after: None,
            }
        })
        .await;
        let err = result.unwrap_err();
        assert!(err.is_retryable());
        assert!(matches!(err, ConnectorError::Exhausted { attempts: 3, .. }));
    }
}
