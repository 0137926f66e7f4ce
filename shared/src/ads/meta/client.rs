//! The Meta client: HTTP calls through the connector contract (retries, classification).

use super::request;

use chrono::NaiveDate;

use crate::ads::DailyCampaign;
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

/// Most pages one account insights report may take (500 rows each): 50,000 campaigns a day.
pub const MAX_INSIGHTS_PAGES: usize = 100;

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

    /// The daily extract's report of one ad account (`act_<digits>`): every campaign's spend, clicks and
    /// `conversion_types` actions on `day`, following the `after` cursor page by page. Each page is one
    /// call through the connector contract (retries, classification, Meta's usage-header waits).
    pub async fn daily_campaigns(
        &self,
        account: &str,
        day: NaiveDate,
        conversion_types: &[String],
    ) -> Result<Vec<DailyCampaign>, ConnectorError> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_INSIGHTS_PAGES {
            let url = request::account_insights_url(
                &self.config.endpoint,
                &self.config.api_version,
                account,
                day,
                after.as_deref(),
            )
            .map_err(|reason| ConnectorError::Permanent {
                vendor: VENDOR,
                reason: format!("not sent: {reason}"),
            })?;
            let (page, next) = crate::ads::call(
                VENDOR,
                &self.config.retry,
                || self.http.get(&url).header("authorization", self.bearer()),
                request::classify,
                |reply| request::parse_account_insights(&reply.body, conversion_types),
            )
            .await?;
            rows.extend(page);
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(rows),
            }
        }
        Err(ConnectorError::Permanent {
            vendor: VENDOR,
            reason: format!("the insights report has more than {MAX_INSIGHTS_PAGES} pages"),
        })
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
