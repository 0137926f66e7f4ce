//! Settings of the Mailchimp connector (`[email_trigger.mailchimp]`) and of a sequence's Mailchimp action.

use serde::Deserialize;

use crate::config::{ConfigError, Located};
use crate::crm::config::check_url;
use crate::secrets::SecretRef;

/// `status_if_new` of a new member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewStatus {
    /// Single opt-in: the form's consent is the opt-in.
    #[default]
    Subscribed,
    /// Double opt-in: Mailchimp emails a confirmation first.
    Pending,
}

impl NewStatus {
    /// The API value.
    pub fn as_str(&self) -> &'static str {
        match self {
            NewStatus::Subscribed => "subscribed",
            NewStatus::Pending => "pending",
        }
    }
}

/// `[email_trigger.mailchimp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailchimpConfig {
    /// The API key (`…-us21`), by reference. Optional in dry-run.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// The data center (`us21`); read from the key's suffix when not given.
    #[serde(default)]
    pub data_center: Option<String>,
    /// The API base URL, overriding the data center (tests, proxies).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Status of a new member of a marketing sequence: `subscribed` or `pending` (double opt-in).
    #[serde(default)]
    pub status_if_new: NewStatus,
    /// The audience of recommendation events; unsubscribes and erasures cover it and every sequence's.
    #[serde(default)]
    pub list_id: Option<String>,
}

/// A sequence's Mailchimp action: the audience, tags, and optionally a Customer Journey step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailchimpSequence {
    /// The audience (list) id.
    pub list_id: String,
    /// Tags applied to the member (created when unknown).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A Customer Journey step with an API trigger.
    #[serde(default)]
    pub journey: Option<JourneyStep>,
}

/// The ids in the URL the journey builder shows for an API starting point or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyStep {
    pub journey_id: u64,
    pub step_id: u64,
}

impl MailchimpConfig {
    /// Checks the data center or URL, and the key unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "email_trigger.mailchimp";
        if let Some(url) = &self.base_url {
            check_url(url).map_err(|m| at.error(None, &format!("{p}.base_url"), m))?;
        }
        if let Some(dc) = &self.data_center
            && (dc.is_empty() || !dc.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(at.error(
                None,
                &format!("{p}.data_center"),
                "must be the key's suffix, e.g. us21",
            ));
        }
        let has_key = self.api_key.as_ref().is_some_and(SecretRef::is_set);
        if !dry_run && !has_key {
            return Err(at.error(
                None,
                &format!("{p}.api_key"),
                "is required when dry_run = false, e.g. api_key = { env = \"MAILCHIMP_API_KEY\", ssm = \"/fluxo/email/mailchimp\" }",
            ));
        }
        if dry_run && self.base_url.is_none() && self.data_center.is_none() {
            return Err(at.error(
                None,
                &format!("{p}.data_center"),
                "is required in dry-run (there is no key to read it from), e.g. data_center = \"us21\"",
            ));
        }
        Ok(())
    }

    /// The API base URL: `base_url`, else `https://{dc}.api.mailchimp.com/3.0` with the configured data
    /// center or the key's suffix.
    pub fn resolved_base_url(&self, key: Option<&str>) -> Option<String> {
        if let Some(url) = &self.base_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let dc = self
            .data_center
            .clone()
            .or_else(|| {
                key.and_then(|k| k.rsplit_once('-'))
                    .map(|(_, dc)| dc.to_string())
            })
            .filter(|dc| !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()))?;
        Some(format!("https://{dc}.api.mailchimp.com/3.0"))
    }
}

impl MailchimpSequence {
    /// Checks the list id and tags.
    pub fn validate(&self, at: &Located<'_>, path: &str) -> Result<(), ConfigError> {
        if self.list_id.trim().is_empty()
            || !self.list_id.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(at.error(
                None,
                &format!("{path}.list_id"),
                "must be the audience id (letters and digits)",
            ));
        }
        if self
            .tags
            .iter()
            .any(|t| t.trim().is_empty() || t.len() > 100)
        {
            return Err(at.error(
                None,
                &format!("{path}.tags"),
                "tags must be 1 to 100 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_center_comes_from_the_keys_suffix() {
        let c = MailchimpConfig {
            api_key: None,
            data_center: None,
            base_url: None,
            status_if_new: NewStatus::Subscribed,
            list_id: None,
        };
        assert_eq!(
            c.resolved_base_url(Some("0123abcd-us21")).as_deref(),
            Some("https://us21.api.mailchimp.com/3.0")
        );
        assert_eq!(c.resolved_base_url(Some("nodash")), None);
    }
}
