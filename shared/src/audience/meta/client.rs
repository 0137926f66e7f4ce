//! Sends Meta custom audience changes through the connector contract: Bearer token, form body, Meta's
//! throttling codes classified retryable (long waits go back to SQS).

use std::time::Duration;

use super::config::MetaAudienceConfig;
use super::request::{self, Row};
use crate::audience::connector::call;
use crate::audience::{Op, RecordedRequest};
use crate::connector::{ConnectorError, Deadline, RetryPolicy, Secret};

const VENDOR: &str = "meta_audiences";

/// What Meta answered over every request of one upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub calls: u32,
    /// Rows of the requests Meta accepted (the first ones: requests go in order).
    pub rows_done: usize,
    pub num_received: u64,
    pub num_invalid_entries: u64,
}

/// The Meta custom audience client.
#[derive(Debug, Clone)]
pub struct MetaAudienceClient {
    http: reqwest::Client,
    config: MetaAudienceConfig,
    token: Secret,
    policy: RetryPolicy,
}

/// The retry policy of a config.
pub fn policy(config: &MetaAudienceConfig) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.max_attempts,
        base_delay: Duration::from_millis(config.base_delay_ms),
        max_delay: Duration::from_millis(config.max_delay_ms),
    }
}

/// The requests one upload makes, as a dry run records them: method, URL, redacted auth, and the form
/// fields as JSON.
pub fn recorded(
    config: &MetaAudienceConfig,
    audience_id: &str,
    op: Op,
    rows: &[Row],
    session_id: u64,
) -> Vec<RecordedRequest> {
    let url = request::users_url(&config.endpoint, &config.api_version, audience_id);
    let chunks: Vec<&[Row]> = rows.chunks(config.rows_per_request.max(1)).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| RecordedRequest {
            method: request::method(op).to_string(),
            url: url.clone(),
            headers: vec![
                ("authorization".into(), "Bearer [redacted]".into()),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: serde_json::json!({
                "payload": request::payload(chunk),
                "session": request::session(session_id, i + 1, i + 1 == n, rows.len()),
            }),
        })
        .collect()
}

impl MetaAudienceClient {
    /// A client over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: MetaAudienceConfig, token: Secret) -> Self {
        let policy = policy(&config);
        MetaAudienceClient {
            http,
            config,
            token,
            policy,
        }
    }

    /// Sends the rows in requests of at most `rows_per_request`, one session across them. When a
    /// request fails, the error comes with what the earlier requests did (their rows are done).
    pub async fn send(
        &self,
        audience_id: &str,
        op: Op,
        rows: &[Row],
        deadline: Deadline,
    ) -> Result<Sent, (Sent, ConnectorError)> {
        let url = request::users_url(&self.config.endpoint, &self.config.api_version, audience_id);
        let session_id = fastrand::u64(1..u64::MAX / 2);
        let chunks: Vec<&[Row]> = rows.chunks(self.config.rows_per_request.max(1)).collect();
        let n = chunks.len();
        let mut sent = Sent::default();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let body = request::form(
                &request::payload(chunk),
                &request::session(session_id, i + 1, i + 1 == n, rows.len()),
            );
            let method = match op {
                Op::Add => reqwest::Method::POST,
                Op::Remove => reqwest::Method::DELETE,
            };
            let receipt = call(
                VENDOR,
                &self.policy,
                deadline,
                || {
                    self.http
                        .request(method.clone(), &url)
                        .bearer_auth(self.token.expose())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                },
                crate::ads::meta::request::classify,
                |reply| request::parse_receipt(&reply.body),
            )
            .await;
            sent.calls += 1;
            let receipt = match receipt {
                Ok(r) => r,
                Err(e) => return Err((sent, e)),
            };
            sent.rows_done += chunk.len();
            sent.num_received += receipt.num_received;
            sent.num_invalid_entries += receipt.num_invalid_entries;
        }
        Ok(sent)
    }
}
