//! The Slack incoming-webhook client: 1 message/s pacing, retries on 429 (after `Retry-After`) and 5xx.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::request;
use crate::connector::{self, ConnectorError, Outcome, RetryPolicy, Secret};
use crate::error::Retryable;
use crate::optimizer::ports::{Delivery, Notifier, NotifyError, RunSummary};

/// Slack webhook settings, with the URL resolved.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The webhook URL; it embeds a token, so it is a secret and never logged.
    pub webhook_url: Secret,
    /// Minimum gap between messages (Slack allows one per second).
    pub min_interval: Duration,
    pub retry: RetryPolicy,
}

/// Posts run messages to a Slack incoming webhook.
#[derive(Debug)]
pub struct SlackNotifier {
    http: reqwest::Client,
    config: SlackConfig,
    last_sent: tokio::sync::Mutex<Option<Instant>>,
}

impl SlackNotifier {
    /// A notifier over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: SlackConfig) -> Self {
        SlackNotifier {
            http,
            config,
            last_sent: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends one message, after the pacing gap, retrying 429 (after `Retry-After`) and 5xx.
    pub async fn send(&self, message: &Value) -> Result<(), ConnectorError> {
        let mut last = self.last_sent.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + self.config.min_interval).await;
        }
        let url = self.config.webhook_url.expose().to_string();
        let result = connector::send_with_retry("slack", &self.config.retry, |_| {
            let request = self.http.post(&url).json(message);
            async move {
                match connector::send(request).await {
                    Err(reason) => Outcome::Retryable {
                        reason,
                        retry_after: None,
                    },
                    Ok(reply) => request::classify(&reply),
                }
            }
        })
        .await;
        *last = Some(Instant::now());
        result
    }
}

impl Notifier for SlackNotifier {
    async fn notify(&self, summary: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
        let messages = request::run_messages(summary);
        for message in &messages {
            self.send(message).await.map_err(|e| NotifyError {
                class: e.class(),
                reason: e.to_string(),
            })?;
        }
        Ok(Delivery::Sent(messages.len()))
    }
}
