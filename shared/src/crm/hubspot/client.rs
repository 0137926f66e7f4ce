//! Sends HubSpot batch upserts and GDPR deletes: bearer auth, timeouts, HubSpot's rate-limit signals,
//! bounded retries, and the isolation of a bad input by splitting the batch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::connector::{
    ConnectorError, DEADLINE_REASON, Deadline, Outcome, Reply, RetryPolicy, Secret, exchange,
    send_with_retry_until,
};
use crate::crm::{CrmContact, CrmReceipt};
use crate::domain::Email;

use super::request::{self, Erased, Input, InputResult};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "hubspot";

/// The reason given to leads handed back to SQS because HubSpot's daily limit is spent.
pub const DAILY_LIMIT_REASON: &str =
    "HubSpot's daily API limit is reached; handed back to SQS until it resets";

/// A ready-to-send HubSpot client.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    batch_size: usize,
    policy: RetryPolicy,
    /// Set when HubSpot answered a 429 on its daily limit: no call is made before this instant.
    daily_pause: Arc<Mutex<Option<Instant>>>,
}

/// How HubSpot answered one batch, after classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200, 201 or 207: read per input.
    Accepted { status: u16, body: String },
    /// A 4xx that one bad input can cause (400, 409, 413, 422...): HubSpot refuses the whole batch,
    /// so the batch is split to find the input at fault.
    Refused(String),
    /// A 429 with `policyName = DAILY`: it will not clear for hours. No retry now.
    DailyLimit(String),
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

/// Whether a 429 is HubSpot's daily limit (`policyName` `DAILY` in the body).
fn is_daily_limit(reply: &Reply) -> bool {
    serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|b| {
            b.get("policyName")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .is_some_and(|p| p.eq_ignore_ascii_case("DAILY"))
}

/// Sorts a reply: 200/201/207 accepted (per-input results are read next); a 429 on the daily limit is
/// handed back to the queue; other 429s, 408 and 5xx are retried with HubSpot's wait; 401, 403, 404
/// and 405 are permanent for the whole batch (no input causes them); any other 4xx refuses the batch
/// because of some input, which the caller isolates by splitting the batch.
pub fn classify(reply: &Reply) -> Outcome<Answer> {
    match reply.status {
        200 | 201 | 207 => Outcome::Success(Answer::Accepted {
            status: reply.status,
            body: reply.body.clone(),
        }),
        429 if is_daily_limit(reply) => Outcome::Success(Answer::DailyLimit(reply.summary())),
        429 | 408 | 425 | 500..=599 => Outcome::Retryable {
            reason: reply.summary(),
            retry_after: rate_limit_wait(reply),
        },
        401 | 403 | 404 | 405 => Outcome::Permanent {
            reason: reply.summary(),
        },
        400..=499 => Outcome::Success(Answer::Refused(reply.summary())),
        _ => reply.failure_outcome(),
    }
}

/// How HubSpot answered a GDPR delete, after classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseAnswer {
    Erased(Erased),
    /// A 429 with `policyName = DAILY`: no retry now.
    DailyLimit(String),
}

/// Sorts a GDPR-delete reply: 2xx deleted and 404 already gone; a 429 on the daily limit pauses; other
/// 429s, 408 and 5xx are retried with HubSpot's wait; any other 4xx is permanent.
pub fn classify_erase(reply: &Reply) -> Outcome<EraseAnswer> {
    if let Some(erased) = request::read_gdpr_delete(reply.status) {
        return Outcome::Success(EraseAnswer::Erased(erased));
    }
    match reply.status {
        429 if is_daily_limit(reply) => Outcome::Success(EraseAnswer::DailyLimit(reply.summary())),
        429 | 408 | 425 | 500..=599 => Outcome::Retryable {
            reason: reply.summary(),
            retry_after: rate_limit_wait(reply),
        },
        400..=499 => Outcome::Permanent {
            reason: reply.summary(),
        },
        _ => reply.failure_outcome(),
    }
}

/// Splits a group in two halves; the first half goes out first.
fn split(group: Vec<usize>, work: &mut Vec<Vec<usize>>) {
    let (first, second) = group.split_at(group.len() / 2);
    work.push(second.to_vec());
    work.push(first.to_vec());
}

/// The first instant the daily limit may have reset: the next full hour. HubSpot resets it at midnight
/// in the account's time zone, which the API does not tell; time zones are whole (or half, or quarter)
/// hours off UTC, so one probe per hour finds the reset within the hour.
fn next_probe(now: SystemTime) -> Duration {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Duration::from_secs(3600 - secs % 3600)
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
            daily_pause: Arc::default(),
        }
    }

    /// What is left of the daily-limit pause, if one holds.
    fn paused(&self) -> Option<Duration> {
        self.daily_pause
            .lock()
            .ok()
            .and_then(|p| *p)
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Pauses every call until the next probe of the daily limit; returns the pause.
    fn pause_for_the_daily_limit(&self) -> Duration {
        let wait = next_probe(SystemTime::now());
        if let Ok(mut p) = self.daily_pause.lock() {
            *p = Some(Instant::now() + wait);
        }
        wait
    }

    /// Sends one batch with bounded retries; no retry once the deadline is near.
    async fn send_batch(
        &self,
        inputs: &[&Input],
        deadline: Deadline,
    ) -> Result<Answer, ConnectorError> {
        let prepared = request::build(&self.base_url, inputs);
        send_with_retry_until(VENDOR, &self.policy, deadline, |_| {
            let builder = self
                .http
                .post(&prepared.url)
                .bearer_auth(self.token.expose())
                .json(&prepared.body);
            exchange(builder, classify)
        })
        .await
    }

    /// GDPR-deletes the contact with this email, retrying within the policy; nothing starts or sleeps
    /// past the deadline. While HubSpot's daily limit holds, nothing is sent and the erasure fails with
    /// [`ConnectorError::Paused`].
    pub async fn erase(&self, email: &Email, deadline: Deadline) -> Result<Erased, ConnectorError> {
        if let Some(wait) = self.paused() {
            return Err(ConnectorError::Paused {
                vendor: VENDOR,
                reason: DAILY_LIMIT_REASON.to_string(),
                wait,
            });
        }
        let prepared = request::gdpr_delete(&self.base_url, email);
        let answer = send_with_retry_until(VENDOR, &self.policy, deadline, |_| {
            let builder = self
                .http
                .post(&prepared.url)
                .bearer_auth(self.token.expose())
                .json(&prepared.body);
            exchange(builder, classify_erase)
        })
        .await?;
        match answer {
            EraseAnswer::Erased(erased) => Ok(erased),
            EraseAnswer::DailyLimit(reason) => {
                tracing::warn!(reason = %reason, "HubSpot daily limit reached during an erasure");
                let wait = self.pause_for_the_daily_limit();
                Err(ConnectorError::Paused {
                    vendor: VENDOR,
                    reason: DAILY_LIMIT_REASON.to_string(),
                    wait,
                })
            }
        }
    }

    /// Upserts the contacts; one result per contact, in order.
    ///
    /// Contacts with the same email become one input. Inputs go out `batch_size` at a time. A batch
    /// HubSpot refuses with a 4xx is split in two and each half sent again, until the input at fault is
    /// alone: only it fails permanently. Once HubSpot reports its daily limit, nothing more is sent
    /// until the next full hour and every input left fails with [`ConnectorError::Paused`], carrying
    /// what is left of the pause, so the caller can have SQS redeliver it only then. Once the deadline
    /// comes, nothing more is sent and every input left fails as retryable, so SQS redelivers it later.
    pub async fn upsert(
        &self,
        contacts: &[CrmContact],
        deadline: Deadline,
    ) -> Vec<Result<CrmReceipt, ConnectorError>> {
        let inputs = request::merge_inputs(contacts);
        let mut outcome: Vec<Option<Result<Option<String>, ConnectorError>>> =
            vec![None; inputs.len()];
        let all: Vec<usize> = (0..inputs.len()).collect();
        // A stack of groups of input indexes; the first chunk on top, so inputs go out in order.
        let mut work: Vec<Vec<usize>> = all
            .chunks(self.batch_size)
            .rev()
            .map(<[usize]>::to_vec)
            .collect();
        let mut stop: Option<ConnectorError> = None;
        while let Some(group) = work.pop() {
            if stop.is_none()
                && let Some(wait) = self.paused()
            {
                stop = Some(ConnectorError::Paused {
                    vendor: VENDOR,
                    reason: DAILY_LIMIT_REASON.to_string(),
                    wait,
                });
            }
            if stop.is_none() && deadline.passed() {
                stop = Some(ConnectorError::Exhausted {
                    vendor: VENDOR,
                    attempts: 0,
                    reason: DEADLINE_REASON.to_string(),
                });
            }
            if let Some(e) = &stop {
                for &i in &group {
                    outcome[i] = Some(Err(e.clone()));
                }
                continue;
            }
            let batch: Vec<&Input> = group.iter().filter_map(|&i| inputs.get(i)).collect();
            match self.send_batch(&batch, deadline).await {
                Ok(Answer::Accepted { status, body }) => {
                    let results = request::read_response(status, &body, &batch);
                    let mut unmatched = Vec::new();
                    let mut reason = None;
                    for (&i, result) in group.iter().zip(results) {
                        match result {
                            InputResult::Upserted(id) => outcome[i] = Some(Ok(id)),
                            InputResult::Rejected(r) => {
                                outcome[i] = Some(Err(ConnectorError::Permanent {
                                    vendor: VENDOR,
                                    reason: r,
                                }))
                            }
                            InputResult::Unmatched(r) => {
                                unmatched.push(i);
                                reason = reason.or(r);
                            }
                        }
                    }
                    match unmatched.len() {
                        0 => {}
                        // Alone in its batch and still not answered for: that error is its own.
                        1 if group.len() == 1 => {
                            outcome[group[0]] = Some(Err(ConnectorError::Permanent {
                                vendor: VENDOR,
                                reason: reason.unwrap_or_else(|| {
                                    "missing from HubSpot's batch results".to_string()
                                }),
                            }))
                        }
                        1 => work.push(unmatched),
                        _ => split(unmatched, &mut work),
                    }
                }
                Ok(Answer::Refused(reason)) => {
                    if group.len() == 1 {
                        outcome[group[0]] = Some(Err(ConnectorError::Permanent {
                            vendor: VENDOR,
                            reason,
                        }));
                    } else {
                        tracing::info!(
                            inputs = group.len(),
                            "HubSpot refused the batch; splitting it to isolate the input at fault"
                        );
                        split(group, &mut work);
                    }
                }
                Ok(Answer::DailyLimit(reason)) => {
                    tracing::warn!(reason = %reason, "HubSpot daily limit reached; handing the leads back to SQS");
                    let wait = self.pause_for_the_daily_limit();
                    let e = ConnectorError::Paused {
                        vendor: VENDOR,
                        reason: DAILY_LIMIT_REASON.to_string(),
                        wait,
                    };
                    for &i in &group {
                        outcome[i] = Some(Err(e.clone()));
                    }
                    stop = Some(e);
                }
                Err(e) => {
                    for &i in &group {
                        outcome[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        let mut out: Vec<Result<CrmReceipt, ConnectorError>> = contacts
            .iter()
            .map(|_| {
                Err(ConnectorError::Exhausted {
                    vendor: VENDOR,
                    attempts: 0,
                    reason: "not sent".to_string(),
                })
            })
            .collect();
        for (input, result) in inputs.iter().zip(outcome) {
            let Some(result) = result else { continue };
            for &m in &input.members {
                if let Some(slot) = out.get_mut(m) {
                    *slot = result.clone().map(|contact_id| CrmReceipt {
                        contact_id,
                        dry_run: None,
                    });
                }
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
    fn a_429_on_the_daily_limit_is_handed_back_not_retried() {
        let mut r = reply(
            429,
            &[("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")],
        );
        r.body = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#.into();
        assert!(matches!(
            classify(&r),
            Outcome::Success(Answer::DailyLimit(_))
        ));
    }

    #[test]
    fn the_next_probe_of_the_daily_limit_is_the_next_full_hour() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000 + 600);
        assert_eq!(next_probe(at), Duration::from_secs(3000));
    }

    #[test]
    fn multi_status_is_read_per_input_and_a_4xx_refusal_is_split() {
        assert!(matches!(
            classify(&reply(207, &[])),
            Outcome::Success(Answer::Accepted { status: 207, .. })
        ));
        assert!(matches!(
            classify(&reply(400, &[])),
            Outcome::Success(Answer::Refused(_))
        ));
        assert!(matches!(
            classify(&reply(401, &[])),
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

    mod erase {
        use wiremock::matchers::{body_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        use super::super::*;

        fn client(server: &MockServer) -> HubSpotClient {
            HubSpotClient::new(
                crate::connector::http_client(Duration::from_secs(2), Duration::from_secs(5))
                    .unwrap(),
                server.uri(),
                Secret::new("pat-na1-it"),
                100,
                RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(5),
                    max_delay: Duration::from_millis(50),
                },
            )
        }

        fn gdpr_delete() -> wiremock::MockBuilder {
            Mock::given(method("POST"))
                .and(path("/crm/v3/objects/contacts/gdpr-delete"))
                .and(header("authorization", "Bearer pat-na1-it"))
                .and(header("content-type", "application/json"))
                .and(body_json(serde_json::json!({
                    "objectId": "ana.silva@exemplo.com",
                    "idProperty": "email"
                })))
        }

        fn email() -> Email {
            Email::parse("Ana.Silva@exemplo.com").unwrap()
        }

        #[tokio::test]
        async fn a_gdpr_delete_posts_the_documented_body_and_204_is_deleted() {
            let server = MockServer::start().await;
            gdpr_delete()
                .respond_with(ResponseTemplate::new(204))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server).erase(&email(), Deadline::none()).await;
            assert_eq!(erased.unwrap(), Erased::Deleted);
        }

        #[tokio::test]
        async fn a_gdpr_delete_of_an_unknown_contact_404_is_already_gone() {
            let server = MockServer::start().await;
            gdpr_delete()
                .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
                    "status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"
                })))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server).erase(&email(), Deadline::none()).await;
            assert_eq!(erased.unwrap(), Erased::AlreadyGone);
        }

        #[tokio::test]
        async fn a_gdpr_delete_answered_429_is_retried_after_hubspots_window() {
            let server = MockServer::start().await;
            gdpr_delete()
                .respond_with(
                    ResponseTemplate::new(429)
                        .insert_header("X-HubSpot-RateLimit-Interval-Milliseconds", "20")
                        .insert_header("X-HubSpot-RateLimit-Remaining", "0")
                        .set_body_json(serde_json::json!({
                            "status": "error", "errorType": "RATE_LIMIT",
                            "policyName": "TEN_SECONDLY_ROLLING"
                        })),
                )
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
            gdpr_delete()
                .respond_with(ResponseTemplate::new(204))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server).erase(&email(), Deadline::none()).await;
            assert_eq!(erased.unwrap(), Erased::Deleted);
        }

        #[tokio::test]
        async fn a_gdpr_delete_on_the_daily_limit_pauses_and_sends_nothing_more() {
            let server = MockServer::start().await;
            gdpr_delete()
                .respond_with(ResponseTemplate::new(429).set_body_json(serde_json::json!({
                    "status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"
                })))
                .expect(1)
                .mount(&server)
                .await;
            let c = client(&server);
            let first = c.erase(&email(), Deadline::none()).await.unwrap_err();
            assert!(matches!(first, ConnectorError::Paused { .. }));
            let second = c.erase(&email(), Deadline::none()).await.unwrap_err();
            assert!(
                matches!(second, ConnectorError::Paused { .. }),
                "no call while paused"
            );
        }

        #[tokio::test]
        async fn a_gdpr_delete_refused_with_a_403_fails_for_good() {
            let server = MockServer::start().await;
            gdpr_delete()
                .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
                    "status": "error", "category": "MISSING_SCOPES"
                })))
                .expect(1)
                .mount(&server)
                .await;
            let e = client(&server)
                .erase(&email(), Deadline::none())
                .await
                .unwrap_err();
            assert!(matches!(e, ConnectorError::Permanent { .. }), "{e}");
        }
    }
}
