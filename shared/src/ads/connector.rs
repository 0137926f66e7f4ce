//! The ad platform dispatcher: [`Platforms`] serves the optimizer's `AdPlatforms` port by sending each
//! campaign to its platform's client, and `call` is the send-classify-parse loop every client uses.

use super::{generic, google, meta};
use crate::connector::{self, ConnectorError, Outcome, Reply, RetryPolicy};
use crate::error::Retryable;
use crate::optimizer::ports::{AdPlatforms, Change, Observation, PlatformError, Window};
use crate::optimizer::{Campaign, Platform};

/// Sends with retries, classifies, then parses a successful reply. A reply that cannot be parsed is a
/// permanent failure (the platform answered, but not in the documented shape).
pub(crate) async fn call<T, B, P>(
    vendor: &'static str,
    policy: &RetryPolicy,
    build: B,
    classify: fn(&Reply) -> Outcome<()>,
    parse: P,
) -> Result<T, ConnectorError>
where
    B: Fn() -> reqwest::RequestBuilder,
    P: Fn(&Reply) -> Result<T, String>,
{
    connector::send_with_retry(vendor, policy, |_| {
        let request = build();
        let parse = &parse;
        async move {
            match connector::send(request).await {
                Err(reason) => Outcome::Retryable {
                    reason,
                    retry_after: None,
                },
                Ok(reply) => match classify(&reply) {
                    Outcome::Success(()) => match parse(&reply) {
                        Ok(value) => Outcome::Success(value),
                        Err(reason) => Outcome::Permanent {
                            reason: format!("unexpected response: {reason}"),
                        },
                    },
                    Outcome::Retryable {
                        reason,
                        retry_after,
                    } => Outcome::Retryable {
                        reason,
                        retry_after,
                    },
                    Outcome::Permanent { reason } => Outcome::Permanent { reason },
                },
            }
        }
    })
    .await
}

fn platform_error(platform: Platform, e: ConnectorError) -> PlatformError {
    PlatformError {
        platform: platform.as_str(),
        class: e.class(),
        reason: e.reason().to_string(),
    }
}

/// The configured platform clients. A campaign on a platform without a client fails with a reason.
#[derive(Debug)]
pub struct Platforms {
    pub google_ads: Option<google::GoogleAdsClient>,
    pub meta: Option<meta::MetaClient>,
    pub generic: generic::GenericClient,
}

fn not_configured(platform: Platform) -> PlatformError {
    PlatformError {
        platform: platform.as_str(),
        class: crate::error::ErrorClass::Permanent,
        reason: format!("platform {} is not configured", platform.as_str()),
    }
}

impl AdPlatforms for Platforms {
    async fn fetch(
        &self,
        campaign: &Campaign,
        window: Window,
    ) -> Result<Observation, PlatformError> {
        let p = campaign.platform;
        match p {
            Platform::GoogleAds => match &self.google_ads {
                Some(client) => client
                    .fetch(campaign, window)
                    .await
                    .map_err(|e| platform_error(p, e)),
                None => Err(not_configured(p)),
            },
            Platform::Meta => match &self.meta {
                Some(client) => client
                    .fetch(campaign, window)
                    .await
                    .map_err(|e| platform_error(p, e)),
                None => Err(not_configured(p)),
            },
            Platform::Generic => self
                .generic
                .fetch(campaign)
                .await
                .map_err(|e| platform_error(p, e)),
        }
    }

    async fn apply(
        &self,
        campaign: &Campaign,
        change: Change,
        validate_only: bool,
        idempotency_key: &str,
        bid_strategy: Option<&str>,
    ) -> Result<(), PlatformError> {
        let p = campaign.platform;
        match p {
            Platform::GoogleAds => match &self.google_ads {
                Some(client) => client
                    .apply(campaign, change, validate_only, bid_strategy)
                    .await
                    .map_err(|e| platform_error(p, e)),
                None => Err(not_configured(p)),
            },
            Platform::Meta => match &self.meta {
                Some(client) => client
                    .apply(campaign, change, validate_only)
                    .await
                    .map_err(|e| platform_error(p, e)),
                None => Err(not_configured(p)),
            },
            // The generic platform has no validate-only mode: a dry-run never calls it.
            Platform::Generic if validate_only => Ok(()),
            Platform::Generic => self
                .generic
                .apply(campaign, change, idempotency_key)
                .await
                .map_err(|e| platform_error(p, e)),
        }
    }

    fn supports_validate_only(&self, campaign: &Campaign) -> bool {
        matches!(campaign.platform, Platform::GoogleAds | Platform::Meta)
    }
}
