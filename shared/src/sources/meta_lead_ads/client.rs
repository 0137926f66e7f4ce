//! Fetches a lead from the Graph API with the Page token, through the connector contract: timeouts,
//! bounded retries with backoff and jitter on 5xx and Meta's throttling codes, and an expired token told
//! apart from other refusals.

use crate::connector::{
    ConnectorError, Deadline, Outcome, RetryPolicy, Secret, send, send_with_retry_until,
};

use super::request::{self, FetchedLead, Refusal};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "meta-graph";

/// Why a lead was not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The Page token expired or was revoked. Permanent until a new token is deployed; alarmed.
    #[error("the Page token expired or was revoked: {0}")]
    TokenExpired(String),
    /// Meta refused this lead for good.
    #[error("Meta refused the lead: {0}")]
    Refused(String),
    /// Meta kept failing or throttling; a later sweep retries.
    #[error(transparent)]
    Retryable(ConnectorError),
}

impl crate::error::Retryable for FetchError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            FetchError::Retryable(_) => crate::error::ErrorClass::Retryable,
            FetchError::TokenExpired(_) | FetchError::Refused(_) => {
                crate::error::ErrorClass::Permanent
            }
        }
    }
}

/// A ready-to-send Graph API client for one source.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    graph_url: String,
    page_token: Secret,
    policy: RetryPolicy,
}

impl GraphClient {
    /// Builds the client; `http` carries the connect and total timeouts.
    pub fn new(
        http: reqwest::Client,
        graph_url: String,
        page_token: Secret,
        policy: RetryPolicy,
    ) -> Self {
        GraphClient {
            http,
            graph_url,
            page_token,
            policy,
        }
    }

    /// `GET /{leadgen_id}?fields=...&access_token=...`. Idempotent: a read.
    pub async fn fetch_lead(
        &self,
        leadgen_id: &str,
        deadline: Deadline,
    ) -> Result<FetchedLead, FetchError> {
        // The token rides in the query, as the Graph API documents; transport errors never print the URL.
        let token: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("access_token", self.page_token.expose())
            .finish();
        let url = format!("{}&{token}", request::lead_url(&self.graph_url, leadgen_id));
        let result = send_with_retry_until(VENDOR, &self.policy, deadline, |_| {
            let builder = self.http.get(&url);
            async move {
                match send(builder).await {
                    Ok(reply) => request::classify(&reply),
                    Err(reason) => Outcome::Retryable {
                        reason,
                        retry_after: None,
                    },
                }
            }
        })
        .await;
        match result {
            Ok(Ok(lead)) => Ok(lead),
            Ok(Err(Refusal::TokenExpired(reason))) => Err(FetchError::TokenExpired(reason)),
            Ok(Err(Refusal::Refused(reason))) => Err(FetchError::Refused(reason)),
            Err(e @ ConnectorError::Permanent { .. }) => Err(FetchError::Refused(e.to_string())),
            Err(e) => Err(FetchError::Retryable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    fn client(server: &MockServer) -> GraphClient {
        GraphClient::new(
            crate::connector::http_client(Duration::from_secs(2), Duration::from_secs(5)).unwrap(),
            format!("{}/v25.0", server.uri()),
            Secret::new("page-token-1"),
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
        )
    }

    const LEAD: &str = r#"{"id":"444","created_time":"2026-11-28T10:00:00+0000","field_data":[{"name":"email","values":["ana@exemplo.com"]}],"campaign_id":"888"}"#;

    fn lead_request() -> wiremock::MockBuilder {
        Mock::given(method("GET"))
            .and(path("/v25.0/444"))
            .and(query_param("access_token", "page-token-1"))
            .and(query_param("fields", request::LEAD_FIELDS))
    }

    #[tokio::test]
    async fn a_lead_is_fetched_with_the_page_token_and_the_documented_fields() {
        let server = MockServer::start().await;
        lead_request()
            .respond_with(ResponseTemplate::new(200).set_body_string(LEAD))
            .expect(1)
            .mount(&server)
            .await;
        let lead = client(&server)
            .fetch_lead("444", Deadline::none())
            .await
            .unwrap();
        assert_eq!(lead.id, "444");
        assert_eq!(lead.campaign_id.as_deref(), Some("888"));
    }

    #[tokio::test]
    async fn a_5xx_then_throttling_are_retried_until_the_lead_comes() {
        let server = MockServer::start().await;
        lead_request()
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        lead_request()
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_string(r#"{"error":{"code":32,"message":"Page request limit"}}"#),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        lead_request()
            .respond_with(ResponseTemplate::new(200).set_body_string(LEAD))
            .mount(&server)
            .await;
        let lead = client(&server).fetch_lead("444", Deadline::none()).await;
        assert_eq!(lead.unwrap().id, "444");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn throttling_that_does_not_clear_is_retryable_for_the_next_sweep() {
        let server = MockServer::start().await;
        lead_request()
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_string(r#"{"error":{"code":17,"message":"User request limit"}}"#),
            )
            .expect(3)
            .mount(&server)
            .await;
        let err = client(&server)
            .fetch_lead("444", Deadline::none())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Retryable(_)), "{err:?}");
        assert!(crate::error::Retryable::is_retryable(&err));
    }

    #[tokio::test]
    async fn an_expired_token_is_permanent_and_not_retried() {
        let server = MockServer::start().await;
        lead_request()
            .respond_with(ResponseTemplate::new(400).set_body_string(
                r#"{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190,"error_subcode":463}}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server)
            .fetch_lead("444", Deadline::none())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TokenExpired(_)), "{err:?}");
        assert!(!crate::error::Retryable::is_retryable(&err));
        assert!(!err.to_string().contains("page-token-1"));
    }
}
