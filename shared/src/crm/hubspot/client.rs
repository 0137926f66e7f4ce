//! Sends HubSpot batch upserts: bearer auth, timeouts, HubSpot's rate-limit signals, bounded retries.

use std::time::Duration;

use crate::connector::{
    ConnectorError, Outcome, Reply, RetryPolicy, Secret, send, send_with_retry,
};
use crate::crm::{CrmContact, CrmReceipt};

use super::request::{self, InputResult};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "hubspot";

/// A ready-to-send HubSpot client.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    batch_size: usize,
    policy: RetryPolicy,
}

/// How long HubSpot asks us to wait: `Retry-After` when sent, else the rate-limit window
/// (`X-HubSpot-RateLimit-Interval-Milliseconds`) when `X-HubSpot-RateLimit-Remaining` is exhausted or
/// the reply is a 429.
pub fn rate_limit_wait(reply: &Reply) -> Option<Duration> {
    if let Some(d) = reply.retry_after() {
        return Some(d);
    }
    let exhausted = reply.status == 429
        || reply
            .header("x-hubspot-ratelimit-remaining")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|r| r <= 0);
    if !exhausted {
        return None;
    }
    reply
        .header("x-hubspot-ratelimit-interval-milliseconds")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// Sorts a reply: 200/201/207 success (per-input results are read next); 429 and 5xx retryable with
/// HubSpot's wait; other 4xx permanent. A 429 on the daily limit stays retryable: SQS redelivers later.
pub fn classify(reply: &Reply) -> Outcome<String> {
    match reply.status {
        200 | 201 | 207 => Outcome::Success(reply.body.clone()),
        429 | 408 | 500..=599 => Outcome::Retryable {
            reason: reply.summary(),
            retry_after: rate_limit_wait(reply),
        },
        _ => reply.failure_outcome(),
    }
}

impl HubSpotClient {
    /// Builds the client; `http` carries the connect and total timeouts.
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        token: Secret,
        batch_size: usize,
        policy: RetryPolicy,
    ) -> Self {
        HubSpotClient {
            http,
            base_url,
            token,
            batch_size: batch_size.clamp(1, super::config::MAX_BATCH),
            policy,
        }
    }

    /// Upserts the contacts in as few calls as the batch size allows; one result per contact, in order.
    pub async fn upsert(&self, contacts: &[CrmContact]) -> Vec<Result<CrmReceipt, ConnectorError>> {
        let mut out = Vec::with_capacity(contacts.len());
        for chunk in contacts.chunks(self.batch_size) {
            let prepared = request::build(&self.base_url, chunk);
            let sent = send_with_retry(VENDOR, &self.policy, |_| {
                let builder = self
                    .http
                    .post(&prepared.url)
                    .bearer_auth(self.token.expose())
                    .json(&prepared.body);
                async move {
                    match send(builder).await {
                        Ok(reply) => classify(&reply),
                        Err(reason) => Outcome::Retryable {
                            reason,
                            retry_after: None,
                        },
                    }
                }
            })
            .await;
            match sent {
                Ok(body) => {
                    out.extend(
                        request::read_response(&body, chunk)
                            .into_iter()
                            .map(|r| match r {
                                InputResult::Upserted(contact_id) => Ok(CrmReceipt {
                                    contact_id,
                                    dry_run: None,
                                }),
                                InputResult::Rejected(reason) => Err(ConnectorError::Permanent {
                                    vendor: VENDOR,
                                    reason,
                                }),
                            }),
                    )
                }
                Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
            }
        }
        out
    }
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
            body:
                r#"{"status":"error","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#
                    .into(),
        }
    }

    #[test]
    fn a_429_waits_for_hubspots_rate_limit_window() {
        let r = reply(
            429,
            &[
                ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
                ("X-HubSpot-RateLimit-Remaining", "0"),
            ],
        );
        assert!(
            matches!(classify(&r), Outcome::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_after_wins_over_the_window() {
        let r = reply(
            429,
            &[
                ("Retry-After", "2"),
                ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
            ],
        );
        assert_eq!(rate_limit_wait(&r), Some(Duration::from_secs(2)));
    }

    #[test]
    fn multi_status_is_read_per_input_and_4xx_is_permanent() {
        assert!(matches!(classify(&reply(207, &[])), Outcome::Success(_)));
        assert!(matches!(
            classify(&reply(400, &[])),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(&reply(502, &[])),
            Outcome::Retryable {
                retry_after: None,
                ..
            }
        ));
    }
}
