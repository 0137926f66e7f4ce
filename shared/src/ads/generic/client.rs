//! The generic platform client: HTTP calls through the connector contract (retries, classification).

use super::request;

use crate::connector::{ConnectorError, Reply, RetryPolicy, Secret};
use crate::optimizer::Campaign;
use crate::optimizer::ports::{Change, Observation};

/// Generic platform settings, with the optional token resolved.
#[derive(Debug, Clone)]
pub struct GenericConfig {
    pub token: Option<Secret>,
    pub retry: RetryPolicy,
}

/// The generic platform client.
#[derive(Debug, Clone)]
pub struct GenericClient {
    http: reqwest::Client,
    config: GenericConfig,
}

const VENDOR: &str = "generic";

impl GenericClient {
    /// A client over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: GenericConfig) -> Self {
        GenericClient { http, config }
    }

    fn auth(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.token {
            Some(token) => builder.header("authorization", format!("Bearer {}", token.expose())),
            None => builder,
        }
    }

    /// GETs the campaign's metrics URL.
    pub async fn fetch(&self, c: &Campaign) -> Result<Observation, ConnectorError> {
        let url = c
            .generic
            .as_ref()
            .map(|g| g.metrics_url.clone())
            .unwrap_or_default();
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.auth(self.http.get(&url)),
            Reply::default_outcome,
            |reply| request::parse_metrics(&reply.body),
        )
        .await
    }

    /// POSTs the change to the campaign's bid URL, with an `Idempotency-Key` header.
    pub async fn apply(
        &self,
        c: &Campaign,
        change: Change,
        idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        let url = c
            .generic
            .as_ref()
            .map(|g| g.bid_url.clone())
            .unwrap_or_default();
        let body = request::bid_body(c, change, idempotency_key);
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || {
                self.auth(
                    self.http
                        .post(&url)
                        .header("idempotency-key", idempotency_key)
                        .json(&body),
                )
            },
            Reply::default_outcome,
            |_| Ok(()),
        )
        .await
    }
}
