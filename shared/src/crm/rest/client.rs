//! Sends generic REST CRM requests: bearer auth, timeouts, classification, bounded retries.

use crate::connector::{
    ConnectorError, Deadline, Outcome, Reply, RetryPolicy, Secret, exchange, send_with_retry_until,
};
use crate::crm::{CrmContact, CrmReceipt};

use super::request;

/// Vendor label in logs and errors.
pub const VENDOR: &str = "rest-crm";

/// A ready-to-send generic REST CRM client.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    url: String,
    token: Secret,
    success_status: Vec<u16>,
    policy: RetryPolicy,
}

/// Sorts a reply: a configured success status is success; 408/425/429/5xx are retryable (honouring
/// `Retry-After`); any other status, another 2xx included, is a permanent error, as in the article.
pub fn classify(reply: &Reply, success_status: &[u16]) -> Outcome<CrmReceipt> {
    if success_status.contains(&reply.status) {
        return Outcome::Success(CrmReceipt {
            contact_id: request::contact_id(&reply.body),
            dry_run: None,
        });
    }
    reply.failure_outcome()
}

impl RestClient {
    /// Builds the client; `http` carries the connect and total timeouts.
    pub fn new(
        http: reqwest::Client,
        url: String,
        token: Secret,
        success_status: Vec<u16>,
        policy: RetryPolicy,
    ) -> Self {
        RestClient {
            http,
            url,
            token,
            success_status,
            policy,
        }
    }

    /// Upserts one contact, retrying within the policy; nothing starts or sleeps past the deadline.
    pub async fn upsert(
        &self,
        contact: &CrmContact,
        deadline: Deadline,
    ) -> Result<CrmReceipt, ConnectorError> {
        let prepared = request::build(&self.url, contact);
        send_with_retry_until(VENDOR, &self.policy, deadline, |_| {
            let builder = self
                .http
                .post(&prepared.url)
                .bearer_auth(self.token.expose())
                .header("idempotency-key", contact.lead_id.as_str())
                .json(&prepared.body);
            exchange(builder, |reply| classify(reply, &self.success_status))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn created_is_success_with_the_contact_id() {
        let o = classify(&reply(201, &[], r#"{"id":"c1"}"#), &[201]);
        assert_eq!(
            o,
            Outcome::Success(CrmReceipt {
                contact_id: Some("c1".into()),
                dry_run: None
            })
        );
    }

    #[test]
    fn another_2xx_is_reported_as_an_error_like_the_article_does() {
        assert!(matches!(
            classify(&reply(200, &[], "ok"), &[201]),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn throttling_is_retryable_after_the_vendors_delay() {
        let o = classify(&reply(429, &[("Retry-After", "1")], ""), &[201]);
        assert!(
            matches!(o, Outcome::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(1))
        );
        assert!(matches!(
            classify(&reply(503, &[], ""), &[201]),
            Outcome::Retryable { .. }
        ));
    }

    #[test]
    fn a_validation_error_is_permanent_with_its_reason() {
        let o = classify(&reply(400, &[], "email invalid"), &[201]);
        assert_eq!(
            o,
            Outcome::Permanent {
                reason: "HTTP 400: email invalid".into()
            }
        );
    }
}
