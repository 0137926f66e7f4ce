//! The `[optimizer]` section: ad platforms, campaigns and their guardrails, notifications.
//!
//! Defaults follow the article: reduce 10% when CPA > 1.2x target, raise 5% when CPA < 0.8x target,
//! keep otherwise, once an hour. Each platform's and Slack's section is its connector's `config.rs`
//! (re-exported here); secrets are references (`SecretRef`: an env var and/or an SSM parameter), never
//! values.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Located, is_http_url as is_url};
pub use crate::ads::generic::config::GenericSettings;
pub use crate::ads::google::config::GoogleAdsSettings;
pub use crate::ads::meta::config::MetaSettings;
use crate::optimizer::{
    Campaign, EngineSettings, EntityKind, GenericEndpoints, Guardrails, Mode, Platform, units,
};
pub use crate::slack::config::SlackSettings;

/// Hourly-optimizer settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Send the Slack message even when a run changed, skipped and failed nothing. Default false.
    #[serde(default)]
    pub notify_when_idle: bool,
    /// Most bid changes one run makes across all campaigns (most urgent first). Default: no cap.
    #[serde(default)]
    pub max_changes_per_run: Option<u32>,
    /// Slack incoming webhook for run messages. No section: no messages.
    #[serde(default)]
    pub slack: Option<SlackSettings>,
    /// Google Ads API access. Required when a campaign uses `google_ads`.
    #[serde(default)]
    pub google_ads: Option<GoogleAdsSettings>,
    /// Meta Marketing API access. Required when a campaign uses `meta`.
    #[serde(default)]
    pub meta: Option<MetaSettings>,
    /// Generic platform settings (shared by every `generic` campaign).
    #[serde(default)]
    pub generic: GenericSettings,
    /// The campaigns the optimizer manages.
    #[serde(default)]
    pub campaigns: Vec<Spanned<CampaignConfig>>,
}

/// One campaign, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Unique name; journals, messages and reverts use it.
    pub name: String,
    pub platform: Platform,
    /// Google customer id (digits), Meta ad account id (`act_...`), or a label (generic).
    #[serde(default)]
    pub account: String,
    /// `campaign`, `ad_group` (Google) or `ad_set` (Meta).
    pub entity: EntityKind,
    /// The entity's id on the platform.
    pub entity_id: String,
    /// Target CPA in the account currency. Required for Google and Meta; the generic platform may
    /// report it as `target_cpa` instead.
    #[serde(default)]
    pub target_cpa: Option<f64>,
    /// ISO 4217 code of the account currency.
    pub currency: String,
    /// `apply`, `dry_run` or `notify_only`. Default `dry_run`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub min_bid: Option<f64>,
    #[serde(default)]
    pub max_bid: Option<f64>,
    /// Bid to assume when the platform reports none and the journal has none (generic platform).
    #[serde(default)]
    pub initial_bid: Option<f64>,
    /// Fraction to reduce by. Default 0.10.
    #[serde(default = "default_reduce_step")]
    pub reduce_step: f64,
    /// Fraction to raise by. Default 0.05.
    #[serde(default = "default_raise_step")]
    pub raise_step: f64,
    /// Reduce when CPA > this x target. Default 1.2.
    #[serde(default = "default_high")]
    pub high_threshold: f64,
    /// Raise when CPA < this x target. Default 0.8.
    #[serde(default = "default_low")]
    pub low_threshold: f64,
    /// Days of metrics, ending today (UTC). Default 7.
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// Clicks needed before the CPA rule acts. Default 0.
    #[serde(default)]
    pub min_clicks: u64,
    /// Conversions needed before the CPA rule acts. Default 0.
    #[serde(default)]
    pub min_conversions: u32,
    /// With no conversions, act once spend exceeds this multiple of the target. Default 1.2.
    #[serde(default = "default_high")]
    pub zero_conversion_spend_multiple: f64,
    /// With no conversions over the multiple, pause instead of reducing. Default false.
    #[serde(default)]
    pub pause_instead_of_reduce: bool,
    /// Scheduled hours between two changes to the entity. Default 1.
    #[serde(default = "default_cooldown")]
    pub cooldown_hours: u32,
    /// Meta action types that count as conversions. Default `["lead"]`.
    #[serde(default = "default_actions")]
    pub conversion_action_types: Vec<String>,
    /// Generic: the metrics URL (GET).
    #[serde(default)]
    pub metrics_url: Option<String>,
    /// Generic: the bid URL (POST).
    #[serde(default)]
    pub bid_url: Option<String>,
    /// Override of the currency's minor-unit digits (the platform's smallest bid step).
    #[serde(default)]
    pub minor_unit_digits: Option<u32>,
}

fn default_mode() -> Mode {
    Mode::DryRun
}
fn default_reduce_step() -> f64 {
    0.10
}
fn default_raise_step() -> f64 {
    0.05
}
fn default_high() -> f64 {
    1.2
}
fn default_low() -> f64 {
    0.8
}
fn default_lookback() -> u32 {
    7
}
fn default_cooldown() -> u32 {
    1
}
fn default_actions() -> Vec<String> {
    vec!["lead".into()]
}

fn money(value: Option<f64>, what: &str) -> Result<Option<i64>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 => units::micros_from_f64(v)
            .map(Some)
            .ok_or_else(|| format!("{what} is too large")),
        Some(v) => Err(format!("{what} must be a positive amount, got {v}")),
    }
}

fn ratio(value: f64, what: &str, min_exclusive: f64, max_inclusive: f64) -> Result<i64, String> {
    if !(value.is_finite() && value > min_exclusive && value <= max_inclusive) {
        return Err(format!(
            "{what} must be in ({min_exclusive}, {max_inclusive}], got {value}"
        ));
    }
    units::bp_from_f64(value).ok_or_else(|| format!("{what} is out of range"))
}

impl CampaignConfig {
    /// The campaign in exact units. `Err((field, message))` names the offending field.
    pub fn resolve(&self) -> Result<Campaign, (&'static str, String)> {
        if self.name.trim().is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        if self.entity_id.trim().is_empty() {
            return Err(("entity_id", "must not be empty".into()));
        }
        let currency = self.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err((
                "currency",
                format!("must be an ISO 4217 code like USD, got {:?}", self.currency),
            ));
        }
        match (self.platform, self.entity) {
            (Platform::GoogleAds, EntityKind::Campaign | EntityKind::AdGroup) => {}
            (Platform::GoogleAds, _) => {
                return Err(("entity", "google_ads supports campaign or ad_group".into()));
            }
            (Platform::Meta, EntityKind::AdSet) => {}
            (Platform::Meta, _) => {
                return Err((
                    "entity",
                    "meta supports ad_set (bid_amount is set on ad sets)".into(),
                ));
            }
            (Platform::Generic, _) => {}
        }
        if self.platform == Platform::GoogleAds
            && !(self.account.len() >= 6 && self.account.chars().all(|c| c.is_ascii_digit()))
        {
            return Err((
                "account",
                "must be the Google Ads customer id, digits only (no dashes)".into(),
            ));
        }
        if self.platform == Platform::Meta && self.account.trim().is_empty() {
            return Err(("account", "must be the Meta ad account id (act_...)".into()));
        }
        if matches!(self.platform, Platform::GoogleAds | Platform::Meta)
            && !self.entity_id.chars().all(|c| c.is_ascii_digit())
        {
            // Google ids go into a GAQL query and Meta ids into a URL path: digits only.
            return Err((
                "entity_id",
                "must be the platform's numeric id (digits only)".into(),
            ));
        }
        let target = money(self.target_cpa, "target_cpa").map_err(|m| ("target_cpa", m))?;
        if target.is_none() && self.platform != Platform::Generic {
            return Err((
                "target_cpa",
                "is required for google_ads and meta campaigns".into(),
            ));
        }
        let min_bid = money(self.min_bid, "min_bid").map_err(|m| ("min_bid", m))?;
        let max_bid = money(self.max_bid, "max_bid").map_err(|m| ("max_bid", m))?;
        if let (Some(lo), Some(hi)) = (min_bid, max_bid)
            && lo > hi
        {
            return Err(("max_bid", "must not be below min_bid".into()));
        }
        let initial_bid = money(self.initial_bid, "initial_bid").map_err(|m| ("initial_bid", m))?;
        let reduce =
            ratio(self.reduce_step, "reduce_step", 0.0, 0.9).map_err(|m| ("reduce_step", m))?;
        let raise =
            ratio(self.raise_step, "raise_step", 0.0, 10.0).map_err(|m| ("raise_step", m))?;
        let high = ratio(self.high_threshold, "high_threshold", 0.0, 100.0)
            .map_err(|m| ("high_threshold", m))?;
        let low = ratio(self.low_threshold, "low_threshold", 0.0, 100.0)
            .map_err(|m| ("low_threshold", m))?;
        if low >= high {
            return Err(("low_threshold", "must be below high_threshold".into()));
        }
        let zero_multiple = ratio(
            self.zero_conversion_spend_multiple,
            "zero_conversion_spend_multiple",
            0.0,
            1000.0,
        )
        .map_err(|m| ("zero_conversion_spend_multiple", m))?;
        if !(1..=365).contains(&self.lookback_days) {
            return Err(("lookback_days", "must be between 1 and 365".into()));
        }
        if self.cooldown_hours > 24 * 90 {
            return Err(("cooldown_hours", "must be at most 2160 (90 days)".into()));
        }
        let digits = match self.minor_unit_digits {
            Some(d) if d <= 6 => d,
            Some(_) => return Err(("minor_unit_digits", "must be between 0 and 6".into())),
            None => units::minor_unit_digits(&currency),
        };
        // Meta takes amounts in its own currency offsets (whole pesos for COP, cents for BHD), so a Meta
        // bid moves in the coarser of that step and the currency's minor unit.
        let bid_unit = match self.platform {
            Platform::Meta => units::micros_per_minor_unit(digits).max(
                units::micros_per_minor_unit(units::meta_amount_digits(&currency)),
            ),
            _ => units::micros_per_minor_unit(digits),
        };
        let generic = if self.platform == Platform::Generic {
            let metrics_url = self.metrics_url.clone().unwrap_or_default();
            let bid_url = self.bid_url.clone().unwrap_or_default();
            if !is_url(&metrics_url) {
                return Err((
                    "metrics_url",
                    "a generic campaign needs an http(s) metrics_url".into(),
                ));
            }
            if !is_url(&bid_url) {
                return Err((
                    "bid_url",
                    "a generic campaign needs an http(s) bid_url".into(),
                ));
            }
            Some(GenericEndpoints {
                metrics_url,
                bid_url,
            })
        } else {
            if self.metrics_url.is_some() || self.bid_url.is_some() {
                return Err((
                    "metrics_url",
                    "metrics_url and bid_url apply to generic campaigns only".into(),
                ));
            }
            None
        };
        if self.platform == Platform::Meta
            && self
                .conversion_action_types
                .iter()
                .all(|a| a.trim().is_empty())
        {
            return Err((
                "conversion_action_types",
                "must list at least one action type".into(),
            ));
        }
        Ok(Campaign {
            id: self.name.trim().to_string(),
            platform: self.platform,
            account: self.account.trim().to_string(),
            entity_kind: self.entity,
            entity_id: self.entity_id.trim().to_string(),
            currency,
            target_cpa_micros: target,
            mode: self.mode,
            guardrails: Guardrails {
                high_threshold_bp: high,
                low_threshold_bp: low,
                reduce_step_bp: reduce,
                raise_step_bp: raise,
                min_clicks: self.min_clicks,
                min_conversions: self.min_conversions,
                zero_conversion_spend_multiple_bp: zero_multiple,
                pause_instead_of_reduce: self.pause_instead_of_reduce,
                cooldown_hours: self.cooldown_hours,
                min_bid_micros: min_bid,
                max_bid_micros: max_bid,
                bid_unit_micros: bid_unit,
                currency_digits: digits,
            },
            lookback_days: self.lookback_days,
            initial_bid_micros: initial_bid,
            conversion_action_types: self
                .conversion_action_types
                .iter()
                .map(|a| a.trim().to_string())
                .collect(),
            generic,
        })
    }
}

impl OptimizerConfig {
    /// Checks what serde cannot: bid ranges, thresholds, platform sections, references, duplicates.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        if let Some(slack) = &self.slack {
            slack.validate(at)?;
        }
        if let Some(google) = &self.google_ads {
            google.validate(at)?;
        }
        if let Some(meta) = &self.meta {
            meta.validate(at)?;
        }
        self.generic.validate(at)?;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut entities: HashMap<String, String> = HashMap::new();
        for (i, spanned) in self.campaigns.iter().enumerate() {
            let span = Some(spanned.span());
            let c = spanned.get_ref();
            let campaign = c.resolve().map_err(|(field, message)| {
                at.error(
                    span.clone(),
                    &format!("optimizer.campaigns[{i}].{field}"),
                    message,
                )
            })?;
            if let Some(first) = names.insert(campaign.id.clone(), i) {
                return Err(at.error(
                    span,
                    &format!("optimizer.campaigns[{i}].name"),
                    format!("duplicate campaign name (also campaigns[{first}])"),
                ));
            }
            if let Some(other) = entities.insert(campaign.entity_key(), campaign.id.clone()) {
                return Err(at.error(
                    span,
                    &format!("optimizer.campaigns[{i}].entity_id"),
                    format!("campaign {other:?} already manages this entity"),
                ));
            }
            let missing = match c.platform {
                Platform::GoogleAds if self.google_ads.is_none() => Some("[optimizer.google_ads]"),
                Platform::Meta if self.meta.is_none() => Some("[optimizer.meta]"),
                _ => None,
            };
            if let Some(section) = missing {
                return Err(at.error(
                    span,
                    &format!("optimizer.campaigns[{i}].platform"),
                    format!("needs a {section} section"),
                ));
            }
        }
        Ok(())
    }

    /// The campaigns in exact units (validate first; an invalid campaign is an error here too).
    pub fn resolve_campaigns(&self) -> Result<Vec<Campaign>, String> {
        self.campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.get_ref()
                    .resolve()
                    .map_err(|(field, m)| format!("optimizer.campaigns[{i}].{field}: {m}"))
            })
            .collect()
    }

    /// Run-wide engine settings.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            max_changes_per_run: self.max_changes_per_run,
            notify_when_idle: self.notify_when_idle,
            concurrency_google_ads: self
                .google_ads
                .as_ref()
                .map(|g| g.concurrency)
                .unwrap_or(crate::ads::DEFAULT_CONCURRENCY),
            concurrency_meta: self
                .meta
                .as_ref()
                .map(|m| m.concurrency)
                .unwrap_or(crate::ads::DEFAULT_CONCURRENCY),
            concurrency_generic: self.generic.concurrency,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::optimizer::{EntityKind, Mode, Platform};

    const ARTICLE: &str = r#"
[optimizer]
[[optimizer.campaigns]]
name = "article-example"
platform = "generic"
entity = "campaign"
entity_id = "123"
currency = "USD"
initial_bid = 1.00
metrics_url = "http://127.0.0.1:18185/metrics/123"
bid_url = "http://127.0.0.1:18185/bids/123"
"#;

    #[test]
    fn a_minimal_campaign_gets_the_articles_defaults() {
        let loaded = load_str("fluxo.toml", ARTICLE).unwrap();
        let campaigns = loaded.config.optimizer.resolve_campaigns().unwrap();
        let c = &campaigns[0];
        assert_eq!(c.platform, Platform::Generic);
        assert_eq!(c.entity_kind, EntityKind::Campaign);
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.guardrails.high_threshold_bp, 12_000);
        assert_eq!(c.guardrails.low_threshold_bp, 8_000);
        assert_eq!(c.guardrails.reduce_step_bp, 1_000);
        assert_eq!(c.guardrails.raise_step_bp, 500);
        assert_eq!(c.guardrails.cooldown_hours, 1);
        assert_eq!(c.guardrails.bid_unit_micros, 10_000);
        assert_eq!(c.initial_bid_micros, Some(1_000_000));
        assert_eq!(c.target_cpa_micros, None);
    }

    #[test]
    fn a_google_campaign_without_its_platform_section_is_refused_at_its_line() {
        let text = "[optimizer]\n\n[[optimizer.campaigns]]\nname = \"g\"\nplatform = \"google_ads\"\naccount = \"1234567890\"\nentity = \"ad_group\"\nentity_id = \"1\"\ncurrency = \"USD\"\ntarget_cpa = 4.0\n";
        let err = load_str("f.toml", text).unwrap_err();
        assert_eq!(err.field, "optimizer.campaigns[0].platform");
        assert!(err.message.contains("[optimizer.google_ads]"), "{err}");
        assert!(err.line >= 3, "{err}");
    }

    #[test]
    fn thresholds_must_be_ordered() {
        let text = ARTICLE.replace(
            "currency = \"USD\"",
            "currency = \"USD\"\nlow_threshold = 1.5",
        );
        let err = load_str("f.toml", &text).unwrap_err();
        assert_eq!(err.field, "optimizer.campaigns[0].low_threshold");
    }

    #[test]
    fn meta_campaigns_must_target_ad_sets() {
        let text = "[optimizer.meta]\naccess_token = { env = \"META_TOKEN\" }\n[[optimizer.campaigns]]\nname = \"m\"\nplatform = \"meta\"\naccount = \"act_1\"\nentity = \"campaign\"\nentity_id = \"1\"\ncurrency = \"BRL\"\ntarget_cpa = 4.0\n";
        let err = load_str("f.toml", text).unwrap_err();
        assert_eq!(err.field, "optimizer.campaigns[0].entity");
    }

    #[test]
    fn meta_bids_step_in_metas_currency_offsets() {
        let meta = |currency: &str| {
            let text = format!(
                "[optimizer.meta]\naccess_token = {{ env = \"META_TOKEN\" }}\n[[optimizer.campaigns]]\nname = \"m\"\nplatform = \"meta\"\naccount = \"act_1\"\nentity = \"ad_set\"\nentity_id = \"1\"\ncurrency = \"{currency}\"\ntarget_cpa = 4.0\n"
            );
            let loaded = load_str("f.toml", &text).unwrap();
            loaded.config.optimizer.resolve_campaigns().unwrap()[0]
                .guardrails
                .bid_unit_micros
        };
        // Whole pesos (Meta offset 1), though ISO gives COP cents.
        assert_eq!(meta("COP"), 1_000_000);
        assert_eq!(meta("TWD"), 1_000_000);
        // Hundredths (Meta offset 100), though ISO gives BHD thousandths.
        assert_eq!(meta("BHD"), 10_000);
        assert_eq!(meta("USD"), 10_000);
    }

    #[test]
    fn secrets_are_references_never_values() {
        let text = "[optimizer.slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/x\"\n";
        let err = load_str("f.toml", text).unwrap_err();
        assert!(
            err.field.starts_with("optimizer.slack.webhook_url"),
            "{err}"
        );
        let text = "[optimizer.slack]\nwebhook_url = {}\n";
        let err = load_str("f.toml", text).unwrap_err();
        assert!(err.message.contains("secret lives"), "{err}");
    }

    #[test]
    fn duplicate_names_and_entities_are_refused() {
        let text = format!(
            "{ARTICLE}\n{}",
            ARTICLE
                .replace("[optimizer]", "")
                .replace("entity_id = \"123\"", "entity_id = \"124\"")
        );
        let err = load_str("f.toml", &text).unwrap_err();
        assert_eq!(err.field, "optimizer.campaigns[1].name");
        let text = format!(
            "{ARTICLE}\n{}",
            ARTICLE
                .replace("[optimizer]", "")
                .replace("article-example", "other")
        );
        let err = load_str("f.toml", &text).unwrap_err();
        assert_eq!(err.field, "optimizer.campaigns[1].entity_id");
    }

    #[test]
    fn google_needs_an_access_token_or_the_refresh_token_flow_not_both() {
        let both = "[optimizer.google_ads]\naccess_token = { env = \"T\" }\noauth_client_id = \"x\"\noauth_client_secret = { env = \"S\" }\noauth_refresh_token = { env = \"R\" }\n";
        assert_eq!(
            load_str("f.toml", both).unwrap_err().field,
            "optimizer.google_ads"
        );
        assert_eq!(
            load_str("f.toml", "[optimizer.google_ads]\n")
                .unwrap_err()
                .field,
            "optimizer.google_ads"
        );
        let refresh = "[optimizer.google_ads]\noauth_client_id = \"x\"\noauth_client_secret = { ssm = \"/fluxo/optimizer/s\" }\noauth_refresh_token = { ssm = \"/fluxo/optimizer/r\" }\n";
        assert!(load_str("f.toml", refresh).is_ok());
    }

    #[test]
    fn zero_decimal_currencies_bid_in_whole_units() {
        let text = ARTICLE.replace("\"USD\"", "\"JPY\"");
        let c = &load_str("f.toml", &text)
            .unwrap()
            .config
            .optimizer
            .resolve_campaigns()
            .unwrap()[0];
        assert_eq!(c.guardrails.bid_unit_micros, 1_000_000);
    }

    #[test]
    fn unknown_campaign_fields_are_refused() {
        let text = ARTICLE.replace("currency = \"USD\"", "currency = \"USD\"\ntarget = 3");
        let err = load_str("f.toml", &text).unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
    }
}
