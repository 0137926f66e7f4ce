//! The `[email_trigger]` section: email platforms, how each sequence maps to platform actions, consent,
//! and product-view recommendations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Located};
use crate::email::Platform;
use crate::email::brevo::config::{BrevoConfig, BrevoSequence};
use crate::email::mailchimp::config::{MailchimpConfig, MailchimpSequence};
use crate::email::rdstation::config::{RdStationConfig, RdStationSequence};
use crate::email::webhook::config::{WebhookConfig, WebhookSequence};

/// Mailchimp allows 10 simultaneous connections per account: calls in flight never exceed this.
pub const MAX_CONCURRENCY: usize = 10;
/// SQS delays a message by 15 minutes at most: the longest aggregation window of product views.
pub const MAX_WINDOW_SECS: u64 = 900;
/// email-trigger's timeout, in seconds (`EmailTriggerFunction.Properties.Timeout` in the template).
pub const FUNCTION_TIMEOUT_SECS: u64 = 30;
/// No new work starts this close to Lambda's deadline: what is left goes back to SQS.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// email-trigger settings. An empty section enrolls nobody: every sequence is unmapped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTriggerConfig {
    /// Build and record the exact requests instead of sending them.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Platform calls in flight at once, across the batch (at most 10: Mailchimp's connection limit).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a claim keeps a duplicate delivery away, in seconds.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// TCP/TLS connect timeout, in milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts within one invocation, the first included; then SQS redelivers.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff delay, in milliseconds (exponential, with jitter).
    #[serde(default = "default_base_ms")]
    pub base_delay_ms: u64,
    /// Longest wait between attempts, in milliseconds, whatever the vendor asks for.
    #[serde(default = "default_max_ms")]
    pub max_delay_ms: u64,
    /// Mailchimp Marketing API.
    #[serde(default)]
    pub mailchimp: Option<MailchimpConfig>,
    /// Brevo.
    #[serde(default)]
    pub brevo: Option<BrevoConfig>,
    /// RD Station Marketing.
    #[serde(default)]
    pub rdstation: Option<RdStationConfig>,
    /// A signed (Standard Webhooks) HTTP POST to any other tool.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Each sequence the router names, and what it does on each platform.
    #[serde(default)]
    pub sequences: BTreeMap<String, SequenceConfig>,
    /// Product-view recommendations.
    #[serde(default)]
    pub recommendations: RecommendationsConfig,
}

/// One sequence: whether it is marketing (needs consent) and its action on each platform. A platform
/// table present means the person is sent there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// Marketing email needs the person's marketing consent. Only a transactional sequence sets false.
    #[serde(default = "yes")]
    pub marketing: bool,
    #[serde(default)]
    pub mailchimp: Option<MailchimpSequence>,
    #[serde(default)]
    pub brevo: Option<BrevoSequence>,
    #[serde(default)]
    pub rdstation: Option<RdStationSequence>,
    #[serde(default)]
    pub webhook: Option<WebhookSequence>,
}

impl SequenceConfig {
    /// The platforms this sequence is sent to, in a fixed order.
    pub fn platforms(&self) -> Vec<Platform> {
        let mut out = Vec::new();
        if self.mailchimp.is_some() {
            out.push(Platform::Mailchimp);
        }
        if self.brevo.is_some() {
            out.push(Platform::Brevo);
        }
        if self.rdstation.is_some() {
            out.push(Platform::Rdstation);
        }
        if self.webhook.is_some() {
            out.push(Platform::Webhook);
        }
        out
    }
}

/// Product views turned into one recommendation per person and period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// Whether product views trigger recommendations at all.
    #[serde(default)]
    pub enabled: bool,
    /// Views are gathered for this long after the first one, in seconds (at most 900: SQS's delay).
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// At most one recommendation per person in this many hours.
    #[serde(default = "default_period")]
    pub period_hours: u64,
    /// Products in one recommendation: the last N distinct viewed, most recent first.
    #[serde(default = "default_products")]
    pub max_products: usize,
    /// Name of the event sent to the platforms (Mailchimp member event, Brevo event, webhook type).
    #[serde(default = "default_event_name")]
    pub event_name: String,
    /// Platforms the recommendation goes to (each must be configured).
    #[serde(default)]
    pub platforms: Vec<Platform>,
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        RecommendationsConfig {
            enabled: false,
            window_secs: default_window(),
            period_hours: default_period(),
            max_products: default_products(),
            event_name: default_event_name(),
            platforms: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_concurrency() -> usize {
    8
}
fn default_lease() -> u64 {
    60
}
fn default_connect_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    3
}
fn default_base_ms() -> u64 {
    200
}
fn default_max_ms() -> u64 {
    5_000
}
fn default_window() -> u64 {
    MAX_WINDOW_SECS
}
fn default_period() -> u64 {
    24
}
fn default_products() -> usize {
    3
}
fn default_event_name() -> String {
    "product_recommendation".to_string()
}

impl Default for EmailTriggerConfig {
    fn default() -> Self {
        EmailTriggerConfig {
            dry_run: true,
            concurrency: default_concurrency(),
            lease_secs: default_lease(),
            connect_timeout_ms: default_connect_ms(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_attempts(),
            base_delay_ms: default_base_ms(),
            max_delay_ms: default_max_ms(),
            mailchimp: None,
            brevo: None,
            rdstation: None,
            webhook: None,
            sequences: BTreeMap::new(),
            recommendations: RecommendationsConfig::default(),
        }
    }
}

impl EmailTriggerConfig {
    /// Whether a platform has its table.
    pub fn has(&self, platform: Platform) -> bool {
        match platform {
            Platform::Mailchimp => self.mailchimp.is_some(),
            Platform::Brevo => self.brevo.is_some(),
            Platform::Rdstation => self.rdstation.is_some(),
            Platform::Webhook => self.webhook.is_some(),
        }
    }

    /// Every configured platform.
    pub fn platforms(&self) -> Vec<Platform> {
        Platform::ALL.into_iter().filter(|p| self.has(*p)).collect()
    }

    /// Checks ranges, the platforms' tables, and that every sequence names only configured platforms.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        let p = "email_trigger";
        let range = |ok: bool, field: &str, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(at.error(None, &format!("{p}.{field}"), message))
            }
        };
        range(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "concurrency",
            "must be between 1 and 10 (Mailchimp allows 10 simultaneous connections)",
        )?;
        range(
            (5..=900).contains(&self.lease_secs),
            "lease_secs",
            "must be between 5 and 900",
        )?;
        range(
            (100..=60_000).contains(&self.connect_timeout_ms),
            "connect_timeout_ms",
            "must be between 100 and 60000",
        )?;
        range(
            (100..=25_000).contains(&self.timeout_ms),
            "timeout_ms",
            "must be between 100 and 25000 (the function times out at 30 s)",
        )?;
        range(
            (1..=10).contains(&self.max_attempts),
            "max_attempts",
            "must be between 1 and 10",
        )?;
        range(
            self.base_delay_ms > 0
                && self.base_delay_ms <= self.max_delay_ms
                && self.max_delay_ms <= 60_000,
            "base_delay_ms",
            "must be above 0 and at most max_delay_ms, which must be at most 60000",
        )?;
        if let Some(c) = &self.mailchimp {
            c.validate(at, self.dry_run)?;
        }
        if let Some(c) = &self.brevo {
            c.validate(at, self.dry_run)?;
        }
        if let Some(c) = &self.rdstation {
            c.validate(at, self.dry_run)?;
        }
        if let Some(c) = &self.webhook {
            c.validate(at, self.dry_run)?;
        }
        for (name, sequence) in &self.sequences {
            let path = format!("{p}.sequences.{name}");
            if sequence.platforms().is_empty() {
                return Err(at.error(
                    None,
                    &path,
                    "names no platform: add a mailchimp, brevo, rdstation or webhook table",
                ));
            }
            for platform in sequence.platforms() {
                if !self.has(platform) {
                    return Err(at.error(
                        None,
                        &format!("{path}.{}", platform.as_str()),
                        format!("needs the [email_trigger.{}] table", platform.as_str()),
                    ));
                }
            }
            if let Some(m) = &sequence.mailchimp {
                m.validate(at, &format!("{path}.mailchimp"))?;
            }
            if let Some(b) = &sequence.brevo {
                b.validate(at, &format!("{path}.brevo"))?;
            }
        }
        let r = &self.recommendations;
        let rp = "recommendations";
        range(
            (1..=MAX_WINDOW_SECS).contains(&r.window_secs),
            &format!("{rp}.window_secs"),
            "must be between 1 and 900 (SQS delays a message by 15 minutes at most)",
        )?;
        range(
            (1..=24 * 365).contains(&r.period_hours),
            &format!("{rp}.period_hours"),
            "must be between 1 and 8760",
        )?;
        range(
            (1..=20).contains(&r.max_products),
            &format!("{rp}.max_products"),
            "must be between 1 and 20",
        )?;
        range(
            (2..=30).contains(&r.event_name.len())
                && r.event_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            &format!("{rp}.event_name"),
            "must be 2 to 30 letters, digits, '_' or '-' (Mailchimp's limit for event names)",
        )?;
        if r.enabled && r.platforms.is_empty() {
            return Err(at.error(
                None,
                &format!("{p}.{rp}.platforms"),
                "must name at least one platform when enabled",
            ));
        }
        for platform in &r.platforms {
            if !self.has(*platform) {
                return Err(at.error(
                    None,
                    &format!("{p}.{rp}.platforms"),
                    format!(
                        "{} needs the [email_trigger.{}] table",
                        platform.as_str(),
                        platform.as_str()
                    ),
                ));
            }
        }
        if r.platforms.contains(&Platform::Mailchimp)
            && self.mailchimp.as_ref().is_some_and(|m| m.list_id.is_none())
        {
            return Err(at.error(
                None,
                &format!("{p}.mailchimp.list_id"),
                "is required for Mailchimp recommendations (the audience of the member events)",
            ));
        }
        Ok(())
    }

    /// Retry policy of every platform call.
    #[cfg(feature = "http-client")]
    pub fn retry_policy(&self) -> crate::connector::RetryPolicy {
        crate::connector::RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: Duration::from_millis(self.base_delay_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    #[test]
    fn a_sequence_naming_an_unconfigured_platform_is_refused_by_name() {
        let err = load_str(
            "t.toml",
            "[email_trigger.sequences.a]\nbrevo = { list_ids = [2] }\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "email_trigger.sequences.a.brevo");
        assert!(err.message.contains("[email_trigger.brevo]"), "{err}");
    }

    #[test]
    fn more_than_mailchimps_ten_connections_is_refused() {
        let err = load_str("t.toml", "[email_trigger]\nconcurrency = 11\n").unwrap_err();
        assert_eq!(err.field, "email_trigger.concurrency");
    }

    #[test]
    fn a_window_longer_than_sqs_can_delay_is_refused() {
        let err = load_str(
            "t.toml",
            "[email_trigger.recommendations]\nwindow_secs = 901\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "email_trigger.recommendations.window_secs");
    }

    #[test]
    fn a_live_platform_without_its_key_is_refused() {
        let err = load_str(
            "t.toml",
            "[email_trigger]\ndry_run = false\n[email_trigger.brevo]\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "email_trigger.brevo.api_key");
    }
}
