//! The hourly optimizer's domain: campaigns, metrics, the pure CPA decision and its guardrails, the ports a
//! run uses. The run itself (the `Engine`) is hourly-optimizer's use case and lives in that crate.

pub mod decide;
pub mod memory;
pub mod plan;
pub mod ports;
pub mod units;

use serde::{Deserialize, Serialize};

pub use decide::{Action, Clamp, Decision, DecisionInput, Rule, decide};

/// Run-wide settings of an optimizer run (from `[optimizer]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Most changes one run makes across all campaigns; `None` for no cap.
    pub max_changes_per_run: Option<u32>,
    /// Send a message even when a run changed, skipped and failed nothing.
    pub notify_when_idle: bool,
    /// Concurrent calls per platform.
    pub concurrency_google_ads: usize,
    pub concurrency_meta: usize,
    pub concurrency_generic: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_changes_per_run: None,
            notify_when_idle: false,
            concurrency_google_ads: 10,
            concurrency_meta: 10,
            concurrency_generic: 10,
        }
    }
}

/// An ad platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    GoogleAds,
    Meta,
    Generic,
}

impl Platform {
    /// The snake_case label used in config, journals and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::GoogleAds => "google_ads",
            Platform::Meta => "meta",
            Platform::Generic => "generic",
        }
    }
}

/// The kind of entity whose bid the optimizer changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A campaign: Google's target CPA (MaximizeConversions), or the generic platform's bid.
    Campaign,
    /// A Google Ads ad group: its max CPC bid.
    AdGroup,
    /// A Meta ad set: its `bid_amount`.
    AdSet,
}

impl EntityKind {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Campaign => "campaign",
            EntityKind::AdGroup => "ad_group",
            EntityKind::AdSet => "ad_set",
        }
    }
}

/// What the optimizer may do to a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Change bids on the platform.
    Apply,
    /// Decide and validate the change with the platform (Google `validateOnly`, Meta `validate_only`)
    /// without making it.
    DryRun,
    /// Decide and notify; no platform write at all.
    NotifyOnly,
}

impl Mode {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Apply => "apply",
            Mode::DryRun => "dry_run",
            Mode::NotifyOnly => "notify_only",
        }
    }
}

/// One campaign's metrics over the lookback window, in exact units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Spend in micros of the account currency.
    pub spend_micros: i64,
    /// Conversions in thousandths (Google reports fractional conversions).
    pub conversions_milli: i64,
    pub clicks: u64,
    /// Average cost per click in micros, when the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpc_micros: Option<i64>,
}

/// The guardrails and rule parameters of one campaign, in exact units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guardrails {
    /// CPA above `high_threshold_bp / 10_000 x target` reduces the bid. Default 1.2x.
    pub high_threshold_bp: i64,
    /// CPA below `low_threshold_bp / 10_000 x target` raises the bid. Default 0.8x.
    pub low_threshold_bp: i64,
    /// Reduction step in basis points. Default 1,000 (10%).
    pub reduce_step_bp: i64,
    /// Raise step in basis points. Default 500 (5%).
    pub raise_step_bp: i64,
    /// Clicks needed before the CPA rule acts. Default 0.
    pub min_clicks: u64,
    /// Conversions needed before the CPA rule acts. Default 0.
    pub min_conversions: u32,
    /// With zero conversions, act once spend exceeds this multiple of the target. Default 1.2x.
    pub zero_conversion_spend_multiple_bp: i64,
    /// With zero conversions over the multiple, pause instead of reducing. Default false.
    pub pause_instead_of_reduce: bool,
    /// Scheduled hours to wait after a change before the next one. Default 1 (one change per hour).
    pub cooldown_hours: u32,
    pub min_bid_micros: Option<i64>,
    pub max_bid_micros: Option<i64>,
    /// The platform's smallest bid step in micros (one minor unit of the currency).
    pub bid_unit_micros: i64,
    /// Decimal digits of the currency's minor unit, for display.
    pub currency_digits: u32,
}

impl Guardrails {
    /// The article's rule (1.2x / 0.8x, -10% / +5%, hourly) with permissive guardrails, for a currency.
    pub fn article_defaults(currency: &str) -> Self {
        let digits = units::minor_unit_digits(currency);
        Guardrails {
            high_threshold_bp: 12_000,
            low_threshold_bp: 8_000,
            reduce_step_bp: 1_000,
            raise_step_bp: 500,
            min_clicks: 0,
            min_conversions: 0,
            zero_conversion_spend_multiple_bp: 12_000,
            pause_instead_of_reduce: false,
            cooldown_hours: 1,
            min_bid_micros: None,
            max_bid_micros: None,
            bid_unit_micros: units::micros_per_minor_unit(digits),
            currency_digits: digits,
        }
    }
}

/// The generic platform's endpoints for one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenericEndpoints {
    /// GET: returns `{"cpc":0.50,"conversions":10,"spend":50.0,"target_cpa":4.0}` (optionally `clicks`, `bid`, `paused`).
    pub metrics_url: String,
    /// POST: receives the bid change as JSON.
    pub bid_url: String,
}

/// A campaign the optimizer manages, resolved from config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Campaign {
    /// The campaign's name in the config (unique); journals and reverts use it.
    pub id: String,
    pub platform: Platform,
    /// Google customer id (digits), Meta ad account id, or any label for the generic platform.
    pub account: String,
    pub entity_kind: EntityKind,
    pub entity_id: String,
    /// ISO 4217 code of the account currency.
    pub currency: String,
    /// Target CPA in micros. The generic platform may supply it in its metrics instead.
    pub target_cpa_micros: Option<i64>,
    pub mode: Mode,
    pub guardrails: Guardrails,
    /// Days of metrics to judge on, ending today (UTC).
    pub lookback_days: u32,
    /// The bid to assume when the platform does not report one and nothing was journaled yet.
    pub initial_bid_micros: Option<i64>,
    /// Meta `actions[].action_type` values that count as conversions.
    pub conversion_action_types: Vec<String>,
    pub generic: Option<GenericEndpoints>,
}

impl Campaign {
    /// The key of the platform entity, shared by every campaign entry that points at it.
    pub fn entity_key(&self) -> String {
        format!(
            "{}#{}#{}#{}",
            self.platform.as_str(),
            self.account,
            self.entity_kind.as_str(),
            self.entity_id
        )
    }
}
