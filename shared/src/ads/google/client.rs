//! The Google Ads client: HTTP calls through the connector contract (retries, classification).

use super::request;

use std::time::Duration;

use tokio::time::Instant;

use chrono::NaiveDate;

use crate::ads::DailyCampaign;
use crate::connector::{ConnectorError, RetryPolicy, Secret};
use crate::optimizer::Campaign;
use crate::optimizer::ports::{Change, Observation, Window};

/// How the client gets its OAuth2 access token.
#[derive(Debug, Clone)]
pub enum GoogleAuth {
    /// A fixed access token.
    Static(Secret),
    /// Access tokens minted from a refresh token, cached until a minute before they expire.
    Refresh {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
}

/// Google Ads connection settings, with the secrets resolved.
#[derive(Debug, Clone)]
pub struct GoogleAdsConfig {
    pub endpoint: String,
    pub api_version: String,
    pub auth: GoogleAuth,
    pub login_customer_id: Option<String>,
    pub retry: RetryPolicy,
}

/// The Google Ads client.
#[derive(Debug)]
pub struct GoogleAdsClient {
    http: reqwest::Client,
    config: GoogleAdsConfig,
    /// The current access token and when to renew it (refresh flow only).
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

/// Renew access tokens this long before Google says they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

const VENDOR: &str = "google_ads";

impl GoogleAdsClient {
    /// A client over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: GoogleAdsConfig) -> Self {
        GoogleAdsClient {
            http,
            config,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// The access token to send: the fixed one, or a cached / freshly minted one.
    async fn access_token(&self) -> Result<Secret, ConnectorError> {
        let (token_url, client_id, client_secret, refresh_token) = match &self.config.auth {
            GoogleAuth::Static(token) => return Ok(token.clone()),
            GoogleAuth::Refresh {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => (token_url, client_id, client_secret, refresh_token),
        };
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let body =
            request::token_request_body(client_id, client_secret.expose(), refresh_token.expose());
        let (token, expires_in) = crate::ads::call(
            VENDOR,
            &self.config.retry,
            || {
                self.http
                    .post(token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
            },
            request::classify_token,
            |reply| request::parse_token(&reply.body),
        )
        .await?;
        let token = Secret::new(token);
        let lifetime = Duration::from_secs(expires_in).saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    fn post(&self, token: &Secret, url: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let mut builder = self.http.post(url).json(body);
        for (name, value) in
            request::headers(token.expose(), self.config.login_customer_id.as_deref())
        {
            builder = builder.header(name, value);
        }
        builder
    }

    /// Metrics, bid and status of the campaign's entity over the window.
    pub async fn fetch(&self, c: &Campaign, window: Window) -> Result<Observation, ConnectorError> {
        let url =
            request::search_stream_url(&self.config.endpoint, &self.config.api_version, &c.account);
        let body =
            request::search_body(&request::metrics_query(c.entity_kind, &c.entity_id, window));
        let token = self.access_token().await?;
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.post(&token, &url, &body),
            request::classify,
            |reply| request::parse_search_stream(&reply.body, c.entity_kind),
        )
        .await
    }

    /// The daily extract's report of one account (customer id, digits): every campaign's cost, clicks and
    /// conversions on `day`, in one `googleAds:searchStream` call (the stream has no pages).
    pub async fn daily_campaigns(
        &self,
        customer_id: &str,
        day: NaiveDate,
    ) -> Result<Vec<DailyCampaign>, ConnectorError> {
        if customer_id.is_empty() || !customer_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConnectorError::Permanent {
                vendor: VENDOR,
                reason: "not sent: a Google Ads customer id is digits only".into(),
            });
        }
        let url = request::search_stream_url(
            &self.config.endpoint,
            &self.config.api_version,
            customer_id,
        );
        let body = request::search_body(&request::daily_campaigns_query(day));
        let token = self.access_token().await?;
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.post(&token, &url, &body),
            request::classify,
            |reply| request::parse_daily_campaigns(&reply.body),
        )
        .await
    }

    /// Makes (or with `validate_only`, validates) a change. A bid change sets the field of the campaign's
    /// bidding strategy (`strategy`, as fetched); one the strategy ignores or refuses is never sent.
    pub async fn apply(
        &self,
        c: &Campaign,
        change: Change,
        validate_only: bool,
        strategy: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let url = request::mutate_url(
            &self.config.endpoint,
            &self.config.api_version,
            &c.account,
            c.entity_kind,
        );
        let body = request::mutate_body(
            &c.account,
            c.entity_kind,
            &c.entity_id,
            change,
            validate_only,
            strategy,
        )
        .map_err(|reason| ConnectorError::Permanent {
            vendor: VENDOR,
            reason: format!("not sent: {reason}"),
        })?;
        let token = self.access_token().await?;
        crate::ads::call(
            VENDOR,
            &self.config.retry,
            || self.post(&token, &url, &body),
            request::classify,
            |_| Ok(()),
        )
        .await
    }
}
