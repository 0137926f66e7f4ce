//! The connector contract every vendor connector follows: timeouts, response classification, and
//! bounded retries with exponential backoff, jitter and the vendor's own retry hints.
//!
//! A connector has a typed config (secrets redacted in `Debug`), a pure request builder, and uses
//! [`send_with_retry`] to send. Responses are sorted by a classifier into success, retryable or permanent.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

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

impl<T> Outcome<T> {
    /// A retryable failure without a hint (a transport error, a timeout).
    pub fn retryable(reason: impl Into<String>) -> Self {
        Outcome::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// The same outcome, with a success's value mapped by `f`; failures pass through unchanged.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        self.and_then(|value| Outcome::Success(f(value)))
    }

    /// On success, the outcome of `f` (which may still fail); failures pass through unchanged.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Outcome<U>) -> Outcome<U> {
        match self {
            Outcome::Success(value) => f(value),
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
    /// The vendor said not to call again for a while (HubSpot's daily limit): nothing was sent, and no
    /// call is worth making before `wait` has passed. Retryable; the caller should hand the work back
    /// so that it returns only then (the lead-router delays the SQS message by `wait`).
    #[error("{vendor}: paused for {}s: {reason}", wait.as_secs())]
    Paused {
        vendor: &'static str,
        reason: String,
        wait: Duration,
    },
}

impl Retryable for ConnectorError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::Exhausted { .. } | ConnectorError::Paused { .. } => {
                ErrorClass::Retryable
            }
            ConnectorError::Permanent { .. } => ErrorClass::Permanent,
        }
    }
}

impl ConnectorError {
    /// The reason text, for journals and failure records.
    pub fn reason(&self) -> &str {
        match self {
            ConnectorError::Exhausted { reason, .. }
            | ConnectorError::Permanent { reason, .. }
            | ConnectorError::Paused { reason, .. } => reason,
        }
    }

    /// How long to wait before calling the vendor again, when it said so ([`ConnectorError::Paused`]).
    pub fn wait(&self) -> Option<Duration> {
        match self {
            ConnectorError::Paused { wait, .. } => Some(*wait),
            ConnectorError::Exhausted { .. } | ConnectorError::Permanent { .. } => None,
        }
    }
}

/// Builds the HTTP client every connector shares: rustls, connect and total timeouts.
///
/// Every client in the process shares one TLS set-up ([`shared_tls`]), so the platform's root
/// certificates are read and parsed once per cold start, not once per client.
pub fn http_client(
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    with_tls(
        reqwest::Client::builder(),
        shared_tls(&VENDOR_TLS, vendor_tls),
    )
    .connect_timeout(connect_timeout)
    .timeout(total_timeout)
    .user_agent(concat!("fluxo/", env!("CARGO_PKG_VERSION")))
    .build()
}

/// A built TLS set-up, shared by the clients of one process; `None` when it could not be built.
pub(crate) type SharedTls = std::sync::OnceLock<Option<rustls::ClientConfig>>;

static VENDOR_TLS: SharedTls = SharedTls::new();

/// The set-up in `cell`, built by `build` on first use. A set-up that cannot be built is logged once,
/// and the clients then build their own (reqwest's default).
pub(crate) fn shared_tls(
    cell: &'static SharedTls,
    build: fn() -> Result<rustls::ClientConfig, rustls::Error>,
) -> Option<rustls::ClientConfig> {
    cell.get_or_init(|| {
        build()
            .map(|mut config| {
                // What reqwest offers itself with its `http2` feature: HTTP/2, else HTTP/1.1.
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                config
            })
            .map_err(|error| tracing::warn!(%error, "the shared TLS set-up could not be built"))
            .ok()
    })
    .clone()
}

/// Uses `tls` when there is one; otherwise the builder keeps reqwest's own TLS set-up.
pub(crate) fn with_tls(
    builder: reqwest::ClientBuilder,
    tls: Option<rustls::ClientConfig>,
) -> reqwest::ClientBuilder {
    match tls {
        Some(config) => builder.tls_backend_preconfigured(config),
        None => builder,
    }
}

/// Vendors' endpoints (HubSpot, Meta, Google, Slack...): the platform's verifier and root certificates,
/// as reqwest sets them up itself.
fn vendor_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    Ok(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth(),
    )
}

/// The process's crypto provider: ring, installed as the process default on first use (so that a
/// client reqwest sets up itself finds it too), unless another was installed first.
pub(crate) fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    // Fails only when a provider is already installed, which is then the one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
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

    /// The `Retry-After` header: delay-seconds or an HTTP-date, read against the wall clock.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_at(SystemTime::now())
    }

    /// The `Retry-After` header as of `now`. See [`parse_retry_after`].
    pub fn retry_after_at(&self, now: SystemTime) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| parse_retry_after(v, now))
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
        self.default_outcome().and_then(|()| Outcome::Permanent {
            reason: format!("unexpected status: {}", self.summary()),
        })
    }

    /// `HTTP <status>: <first 300 chars of the body>`, for failure records.
    pub fn summary(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("HTTP {}: {}", self.status, body.trim())
    }
}

/// Reads a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date taken relative to `now`
/// (a date in the past means "now"). Never panics: a negative, non-finite or absurdly large number of
/// seconds (`1e20`) gives `None`, and the caller's own backoff applies; callers cap the wait anyway.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // `Duration::from_secs_f64` panics on values past u64::MAX seconds; this form does not.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The time by which a connector must stop starting new work: the function's deadline less a margin.
///
/// `Deadline::none()` never passes (unit tests, tools). Built on tokio's clock, so paused-time tests
/// can drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub fn none() -> Self {
        Deadline(None)
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline(Some(at))
    }

    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        Deadline(Instant::now().checked_add(after))
    }

    /// Lambda's deadline (milliseconds since the Unix epoch, from the invocation context) less `margin`.
    /// A deadline already past, or one that cannot be read, gives a deadline of now: no new work starts.
    pub fn from_epoch_millis(deadline_ms: u64, margin: Duration, now: SystemTime) -> Self {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let left = deadline
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .saturating_sub(margin);
        Deadline::after(left)
    }

    /// The instant, if any.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Time left; `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has come: no new work may start.
    pub fn passed(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether work that takes `needs` would still end before the deadline.
    pub fn allows(&self, needs: Duration) -> bool {
        self.remaining().is_none_or(|left| left > needs)
    }

    /// A deadline `by` earlier (leaves time for work that must follow).
    pub fn earlier(&self, by: Duration) -> Self {
        Deadline(
            self.0
                .map(|at| at.checked_sub(by).unwrap_or_else(Instant::now)),
        )
    }
}

/// The reason recorded when a connector stops at the deadline.
pub const DEADLINE_REASON: &str = "stopped at the function's deadline; SQS redelivers the message";

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

/// Sends a request and classifies its reply: one attempt of a call. A transport error or timeout is
/// retryable.
pub async fn exchange<T>(
    request: reqwest::RequestBuilder,
    classify: impl FnOnce(&Reply) -> Outcome<T>,
) -> Outcome<T> {
    match send(request).await {
        Ok(reply) => classify(&reply),
        Err(reason) => Outcome::retryable(reason),
    }
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
/// The same as [`send_with_retry_until`] without a deadline.
pub async fn send_with_retry<T, F, Fut>(
    vendor: &'static str,
    policy: &RetryPolicy,
    attempt: F,
) -> Result<T, ConnectorError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    send_with_retry_until(vendor, policy, Deadline::none(), attempt).await
}

/// Runs `attempt` until it succeeds, fails permanently, `policy.max_attempts` is reached, or the
/// deadline comes.
///
/// No attempt starts once `deadline` has passed, no backoff sleeps past it, and an attempt still running
/// at the deadline is abandoned (retryable: an upsert is safe to send again). Stopping at the deadline
/// gives [`ConnectorError::Exhausted`], so the message goes back to SQS.
///
/// `attempt` builds and sends one request and classifies the reply; it gets the 0-based attempt
/// number. Transport errors should be returned as [`Outcome::Retryable`]. Between attempts, `backon`
/// sleeps with exponential backoff and jitter, or for the vendor's hint when it gave one, never longer
/// than `policy.max_delay`.
pub async fn send_with_retry_until<T, F, Fut>(
    vendor: &'static str,
    policy: &RetryPolicy,
    deadline: Deadline,
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
    if deadline.passed() {
        return Err(ConnectorError::Exhausted {
            vendor,
            attempts: 0,
            reason: DEADLINE_REASON.to_string(),
        });
    }
    let stopped_at_deadline = std::sync::atomic::AtomicBool::new(false);
    let stopped = &stopped_at_deadline;
    let mut n = 0u32;
    let op = || {
        let current = n;
        n += 1;
        let fut = attempt(current);
        async move {
            let outcome = match deadline.instant() {
                Some(at) => tokio::time::timeout_at(at, fut)
                    .await
                    .unwrap_or_else(|_| Outcome::retryable(DEADLINE_REASON)),
                None => fut.await,
            };
            match outcome {
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
        .adjust(move |e, delay| {
            let delay = match e {
                AttemptFailure::Retry { hint: Some(hint), .. } => {
                    delay.map(|_| (*hint).min(max_delay))
                }
                _ => delay,
            };
            // Neither sleep nor start another attempt past the deadline: SQS redelivers instead.
            match delay {
                Some(d) if !deadline.allows(d) => {
                    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                    None
                }
                other => other,
            }
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
            attempts: n.min(attempts),
            reason: if stopped_at_deadline.load(std::sync::atomic::Ordering::Relaxed)
                && !reason.contains(DEADLINE_REASON)
            {
                format!("{reason}; {DEADLINE_REASON}")
            } else {
                reason
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static COUNTED_TLS: SharedTls = SharedTls::new();
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted_vendor_tls() -> Result<rustls::ClientConfig, rustls::Error> {
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        vendor_tls()
    }

    #[test]
    fn every_client_of_a_process_shares_one_tls_set_up_built_once() {
        for _ in 0..3 {
            let tls = shared_tls(&COUNTED_TLS, counted_vendor_tls);
            let tls = tls.expect("the platform's roots load on this machine");
            assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        }
        assert_eq!(BUILDS.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(http_client(Duration::from_secs(1), Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn an_outcome_maps_its_success_and_keeps_its_failures() {
        assert_eq!(Outcome::Success(2).map(|n| n * 10), Outcome::Success(20));
        let busy: Outcome<i32> = Outcome::Retryable {
            reason: "busy".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            busy.map(|n| n * 10),
            Outcome::Retryable {
                reason: "busy".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        let refused: Outcome<i32> = Outcome::Permanent {
            reason: "no".into(),
        };
        assert_eq!(
            refused.map(|n| n.to_string()),
            Outcome::Permanent {
                reason: "no".into()
            }
        );
        assert_eq!(
            Outcome::Success(1).and_then(|_| Outcome::<()>::retryable("later")),
            Outcome::retryable("later")
        );
    }

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

    #[test]
    fn absurd_retry_after_values_do_not_panic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        for value in [
            "1e20",
            "1e300",
            "-1",
            "-0.5",
            "NaN",
            "inf",
            "-inf",
            "1e",
            "",
            "  ",
            "abc",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let r = reply(429, &[("Retry-After", value)]);
            assert_eq!(r.retry_after_at(now), None, "Retry-After: {value}");
            assert!(
                matches!(
                    r.default_outcome(),
                    Outcome::Retryable {
                        retry_after: None,
                        ..
                    }
                ),
                "Retry-After: {value}"
            );
        }
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_that_date() {
        // 2025-11-24T16:00:00Z is 1_764_000_000.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let r = reply(503, &[("Retry-After", "Mon, 24 Nov 2025 16:00:30 GMT")]);
        assert_eq!(r.retry_after_at(now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Mon, 24 Nov 2025 15:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).map(|d| d.as_secs() > 0),
            Some(true),
            "a far-future date is a long wait, capped by the caller, not a panic"
        );
        assert_eq!(
            parse_retry_after("Mon, 99 Foo 2025 25:00:00 GMT", now),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_is_capped_by_the_policy() {
        let p = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        };
        let hint = reply(429, &[("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")]).retry_after();
        let started = tokio::time::Instant::now();
        let result = send_with_retry("test", &p, |n| async move {
            if n == 0 {
                Outcome::Retryable {
                    reason: "429".into(),
                    retry_after: hint,
                }
            } else {
                Outcome::Success(())
            }
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(started.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_or_sleeps_past_the_deadline() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        };
        let deadline = Deadline::after(Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<(), _> = send_with_retry_until("test", &p, deadline, |_| {
            calls += 1;
            async {
                Outcome::Retryable {
                    reason: "down".into(),
                    retry_after: Some(Duration::from_secs(2)),
                }
            }
        })
        .await;
        assert!(
            started.elapsed() <= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(calls < 10, "{calls} attempts");
        let err = result.unwrap_err();
        assert!(err.is_retryable());
        assert!(err.reason().contains("deadline"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_still_running_at_the_deadline_is_abandoned_as_retryable() {
        let p = RetryPolicy::default();
        let deadline = Deadline::after(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = send_with_retry_until("test", &p, deadline, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Outcome::Success(())
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(result.unwrap_err().is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_sent_once_the_deadline_has_passed() {
        let deadline = Deadline::after(Duration::ZERO);
        let mut calls = 0;
        let result: Result<(), _> =
            send_with_retry_until("test", &RetryPolicy::default(), deadline, |_| {
                calls += 1;
                async { Outcome::Success(()) }
            })
            .await;
        assert_eq!(calls, 0);
        assert!(result.unwrap_err().is_retryable());
    }

    #[test]
    fn lambdas_deadline_less_the_margin_is_the_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let in_30s = 1_764_000_030_000;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let d = Deadline::from_epoch_millis(in_30s, Duration::from_secs(3), now);
            assert_eq!(d.remaining(), Some(Duration::from_secs(27)));
            let past = Deadline::from_epoch_millis(1_000, Duration::from_secs(3), now);
            assert!(past.passed());
        });
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

    #[test]
    fn a_pause_is_retryable_and_carries_its_wait() {
        let e = ConnectorError::Paused {
            vendor: "test",
            reason: "daily limit".into(),
            wait: Duration::from_secs(600),
        };
        assert!(e.is_retryable());
        assert_eq!(e.reason(), "daily limit");
        assert_eq!(e.wait(), Some(Duration::from_secs(600)));
        let exhausted = ConnectorError::Exhausted {
            vendor: "test",
            attempts: 3,
            reason: "down".into(),
        };
        assert_eq!(exhausted.wait(), None);
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
