//! Sends generic REST CRM requests (upsert, and the configured erase): bearer auth, timeouts,
//! classification, bounded retries.

use crate::connector::{
    ConnectorError, Deadline, Outcome, Reply, RetryPolicy, Secret, exchange, send_with_retry_until,
};
use crate::crm::{CrmContact, CrmReceipt};
use crate::domain::Email;

use super::config::RestErase;
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
    erase: Option<RestErase>,
}

/// Sorts an erase reply: a configured success status is deleted (`true`), a gone status already gone
/// (`false`); 408/425/429/5xx are retryable (honouring `Retry-After`); anything else is permanent.
pub fn classify_erase(reply: &Reply, config: &RestErase) -> Outcome<bool> {
    match request::read_erase(config, reply.status) {
        Some(deleted) => Outcome::Success(deleted),
        None => reply.failure_outcome(),
    }
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
            erase: None,
        }
    }

    /// The same client, with the configured erase call.
    pub fn with_erase(mut self, erase: Option<RestErase>) -> Self {
        self.erase = erase;
        self
    }

    /// Whether an erase call is configured.
    pub fn can_erase(&self) -> bool {
        self.erase.is_some()
    }

    /// Erases one person with the configured call: `Ok(Some(true))` deleted, `Ok(Some(false))` already
    /// gone, `Ok(None)` no erase call configured (nothing sent). Retries within the policy; nothing
    /// starts or sleeps past the deadline.
    pub async fn erase(
        &self,
        email: &Email,
        deadline: Deadline,
    ) -> Result<Option<bool>, ConnectorError> {
        let Some(config) = &self.erase else {
            return Ok(None);
        };
        let prepared = request::erase(config, email);
        send_with_retry_until(VENDOR, &self.policy, deadline, |_| {
            let builder = match prepared.method {
                "POST" => self.http.post(&prepared.url).json(&prepared.body),
                _ => self.http.delete(&prepared.url),
            };
            // A delete is idempotent by nature: no idempotency key.
            let builder = builder.bearer_auth(self.token.expose());
            exchange(builder, |reply| classify_erase(reply, config))
        })
        .await
        .map(Some)
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

    mod erase {
        use std::time::Duration;

        use wiremock::matchers::{body_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        use super::super::*;

        fn client(server: &MockServer, erase: &str) -> RestClient {
            let erase: RestErase = toml::from_str(&erase.replace("BASE", &server.uri())).unwrap();
            RestClient::new(
                crate::connector::http_client(Duration::from_secs(2), Duration::from_secs(5))
                    .unwrap(),
                format!("{}/v1/leads", server.uri()),
                Secret::new("crm-token"),
                vec![201],
                RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(5),
                    max_delay: Duration::from_millis(50),
                },
            )
            .with_erase(Some(erase))
        }

        fn email() -> Email {
            Email::parse("ana.silva@exemplo.com").unwrap()
        }

        const BY_HASH: &str = "url = \"BASE/v1/contacts/{email_sha256}\"";

        fn delete_by_hash() -> wiremock::MockBuilder {
            Mock::given(method("DELETE"))
                .and(path(format!("/v1/contacts/{}", email().sha256_hex())))
                .and(header("authorization", "Bearer crm-token"))
        }

        #[tokio::test]
        async fn the_configured_delete_is_sent_with_the_bearer_token_and_204_is_deleted() {
            let server = MockServer::start().await;
            delete_by_hash()
                .respond_with(ResponseTemplate::new(204))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server, BY_HASH)
                .erase(&email(), Deadline::none())
                .await;
            assert_eq!(erased.unwrap(), Some(true));
            let sent = &server.received_requests().await.unwrap()[0];
            assert!(sent.body.is_empty(), "a DELETE carries no body");
        }

        #[tokio::test]
        async fn a_404_means_the_person_is_already_gone() {
            let server = MockServer::start().await;
            delete_by_hash()
                .respond_with(ResponseTemplate::new(404))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server, BY_HASH)
                .erase(&email(), Deadline::none())
                .await;
            assert_eq!(erased.unwrap(), Some(false));
        }

        #[tokio::test]
        async fn a_429_is_retried_after_the_crms_retry_after() {
            let server = MockServer::start().await;
            delete_by_hash()
                .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
            delete_by_hash()
                .respond_with(ResponseTemplate::new(204))
                .expect(1)
                .mount(&server)
                .await;
            let erased = client(&server, BY_HASH)
                .erase(&email(), Deadline::none())
                .await;
            assert_eq!(erased.unwrap(), Some(true));
        }

        #[tokio::test]
        async fn a_post_erase_sends_the_email_in_its_body() {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .and(path("/v1/erasures"))
                .and(header("authorization", "Bearer crm-token"))
                .and(body_json(
                    serde_json::json!({"email": "ana.silva@exemplo.com"}),
                ))
                .respond_with(ResponseTemplate::new(202))
                .expect(1)
                .mount(&server)
                .await;
            let c = client(&server, "method = \"POST\"\nurl = \"BASE/v1/erasures\"");
            assert_eq!(
                c.erase(&email(), Deadline::none()).await.unwrap(),
                Some(true)
            );
        }

        #[tokio::test]
        async fn without_an_erase_call_nothing_is_sent() {
            let server = MockServer::start().await;
            let c = client(&server, BY_HASH).with_erase(None);
            assert!(!c.can_erase());
            assert_eq!(c.erase(&email(), Deadline::none()).await.unwrap(), None);
            assert!(server.received_requests().await.unwrap().is_empty());
        }
    }
}
