//! The Meta client: HTTP calls through the connector contract (retries, classification).

use super::request;

use crate::connector::{ConnectorError, RetryPolicy, Secret};
use crate::optimizer::Campaign;
use crate::optimizer::ports::{Change, Observation, Window};

/// Meta connection settings, with the token resolved.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub endpoint: String,
    pub api_version: String,
    pub access_token: Secret,
    pub retry: RetryPolicy,
}

/// The Meta client.
#[derive(Debug, Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    config: MetaConfig,
}

const VENDOR: &str = "meta";

impl MetaClient {
    /// A client over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: MetaConfig) -> Self {
        MetaClient { http, config }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.config.access_token.expose())
    }

    /// Insights plus the ad set's bid and status (two calls).
    pub async fn fetch(&self, c: &Campaign, window: Window) -> Result<Observation, ConnectorError> {
        let url = request::insights_url(
            &self.config.endpoint,
            &self.config.api_version,
            &c.entity_id,
            window,
        );
        let metrics = crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.http.get(&url).header("authorization", self.bearer()),
            request::classify,
            |reply| request::parse_insights(&reply.body, &c.conversion_action_types),
        )
        .await?;
        let url = request::adset_url(
            &self.config.endpoint,
            &self.config.api_version,
            &c.entity_id,
        );
        let adset = crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.http.get(&url).header("authorization", self.bearer()),
            request::classify,
            |reply| request::parse_adset(&reply.body, &c.currency),
        )
        .await?;
        Ok(request::observation(metrics, adset))
    }

    /// Edits the ad set (or validates the edit). A bid change to an ad set whose strategy has no
    /// `bid_amount` is refused by the engine before it gets here (see [`request::bid_fixed`]).
    pub async fn apply(
        &self,
        c: &Campaign,
        change: Change,
        validate_only: bool,
    ) -> Result<(), ConnectorError> {
        let url = request::update_url(
            &self.config.endpoint,
            &self.config.api_version,
            &c.entity_id,
        );
        let form = request::update_form(change, &c.currency, validate_only);
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || {
                self.http
                    .post(&url)
                    .header("authorization", self.bearer())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form.clone())
            },
            request::classify,
            |_| Ok(()),
        )
        .await
    }
}
