//! The analytics records: one row type per lake table (`leads`, `effects`, `ad_metrics`, `bid_changes`),
//! built from the domain types the functions already hold. No raw email, name or phone ever enters one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::LeadEnvelope;
use crate::optimizer::ports::JournalEntry;

/// Micros of a currency unit in one unit.
const MICROS: f64 = 1_000_000.0;

/// One of the lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// One row per accepted lead.
    Leads,
    /// One row per effect outcome: the routing decision, CRM, email, audience.
    Effects,
    /// One row per campaign per optimizer run (or per day from the daily extract).
    AdMetrics,
    /// One row per optimizer journal entry.
    BidChanges,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 4] = [
        Table::Leads,
        Table::Effects,
        Table::AdMetrics,
        Table::BidChanges,
    ];

    /// The table's name in S3 prefixes, Glue and Athena.
    pub fn name(self) -> &'static str {
        match self {
            Table::Leads => "leads",
            Table::Effects => "effects",
            Table::AdMetrics => "ad_metrics",
            Table::BidChanges => "bid_changes",
        }
    }

    /// The table of a name, if any.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// An accepted lead, as the receiver stored it. Personal data appears only as the keyed fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadRecord {
    pub lead_id: String,
    pub received_at: DateTime<Utc>,
    /// The intake endpoint (`/leads/{source}`), `form` for the plain `/leads`.
    pub source_kind: String,
    /// The lead's `source` field (the site, the campaign's landing page...).
    pub source_name: Option<String>,
    pub form: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub has_gclid: bool,
    pub has_fbclid: bool,
    /// Ad platform ids, when the lead carries them (lead-ad sources, custom fields).
    pub campaign_id: Option<String>,
    pub adset_id: Option<String>,
    pub ad_id: Option<String>,
    pub interest: Option<String>,
    /// Marketing consent granted at intake.
    pub consent: bool,
    /// Keyed HMAC of the normalized email (`fluxo::domain::fingerprint`).
    pub email_fingerprint: String,
}

impl LeadRecord {
    /// The row of an accepted lead.
    pub fn of(envelope: &LeadEnvelope) -> Self {
        let lead = &envelope.lead;
        let custom = |k: &str| lead.custom.get(k).filter(|v| !v.is_empty()).cloned();
        LeadRecord {
            lead_id: envelope.lead_id.as_str().to_string(),
            received_at: envelope.received_at,
            source_kind: envelope
                .endpoint
                .clone()
                .unwrap_or_else(|| "form".to_string()),
            source_name: lead.source.clone(),
            form: lead.form.clone(),
            utm_source: lead.utm.source.clone(),
            utm_medium: lead.utm.medium.clone(),
            utm_campaign: lead.utm.campaign.clone(),
            utm_term: lead.utm.term.clone(),
            utm_content: lead.utm.content.clone(),
            has_gclid: lead.gclid.is_some(),
            has_fbclid: lead.fbclid.is_some(),
            campaign_id: custom("campaign_id"),
            adset_id: custom("adset_id"),
            ad_id: custom("ad_id"),
            interest: lead.interest.clone(),
            consent: lead.has_marketing_consent(),
            email_fingerprint: lead.email.fingerprint(),
        }
    }
}

/// Where an effect went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// The router's decision (segment, score, fan-out): not an external effect, but the funnel's step.
    Routing,
    Crm,
    Email,
    Audience,
}

impl Destination {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Routing => "routing",
            Destination::Crm => "crm",
            Destination::Email => "email",
            Destination::Audience => "audience",
        }
    }
}

/// How an effect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectOutcome {
    /// Performed now.
    Done,
    /// Not performed on purpose (no consent, nothing to do, done by an earlier delivery).
    Skipped,
    /// Failed for good: recorded, not retried (for messages: on their way to the DLQ).
    Failed,
    /// Failed for now: retried by a redelivery.
    Retrying,
}

impl EffectOutcome {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectOutcome::Done => "done",
            EffectOutcome::Skipped => "skipped",
            EffectOutcome::Failed => "failed",
            EffectOutcome::Retrying => "retrying",
        }
    }
}

/// One effect outcome (or the routing decision) for one lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    /// Lead x destination x target x action x outcome: a redelivered outcome repeats its id, so readers
    /// can count distinct ids.
    pub effect_id: String,
    pub at: DateTime<Utc>,
    pub lead_id: String,
    pub destination: Destination,
    /// The vendor or connector (`hubspot`, `rest`, ...).
    pub vendor: Option<String>,
    /// The sequence, audience or segment the effect is about.
    pub target: Option<String>,
    /// `route`, `upsert`, `enroll`, `add`, `remove`, ...
    pub action: String,
    pub outcome: EffectOutcome,
    pub attempts: Option<i64>,
    pub latency_ms: Option<i64>,
    /// `retryable` or `permanent` for failures.
    pub error_class: Option<String>,
    /// A short, PII-free reason (an error kind, `no_consent`), never a vendor's raw answer.
    pub reason: Option<String>,
    /// Routing rows: the segment and score the rules gave.
    pub segment: Option<String>,
    pub score: Option<i64>,
}

impl EffectRecord {
    /// An effect outcome for a lead; fill the optional fields with struct update syntax or the setters.
    pub fn new(
        at: DateTime<Utc>,
        lead_id: &str,
        destination: Destination,
        target: Option<&str>,
        action: &str,
        outcome: EffectOutcome,
    ) -> Self {
        let effect_id = format!(
            "{lead_id}:{}:{}:{action}:{}",
            destination.as_str(),
            target.unwrap_or(""),
            outcome.as_str()
        );
        EffectRecord {
            effect_id,
            at,
            lead_id: lead_id.to_string(),
            destination,
            vendor: None,
            target: target.map(str::to_string),
            action: action.to_string(),
            outcome,
            attempts: None,
            latency_ms: None,
            error_class: None,
            reason: None,
            segment: None,
            score: None,
        }
    }

    /// Sets the vendor.
    pub fn vendor(mut self, vendor: &str) -> Self {
        self.vendor = Some(vendor.to_string());
        self
    }

    /// Sets the attempts and the latency.
    pub fn timing(mut self, attempts: u32, latency: std::time::Duration) -> Self {
        self.attempts = Some(i64::from(attempts));
        self.latency_ms = Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX));
        self
    }

    /// Sets the error class and a PII-free reason.
    pub fn failure(mut self, class: crate::error::ErrorClass, reason: &str) -> Self {
        self.error_class = Some(class.as_str().to_string());
        self.reason = Some(reason.to_string());
        self
    }
}

/// A campaign's metrics as the optimizer (or the daily extract) read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdMetricRecord {
    /// Platform x account x entity x window end x run: one id per observation.
    pub metric_id: String,
    pub at: DateTime<Utc>,
    /// `optimizer` (the lookback window of an hourly run) or `daily_extract` (one day).
    pub origin: String,
    pub platform: String,
    pub account: String,
    /// The campaign's name in Fluxo's config (or the platform's campaign id for the daily extract).
    pub campaign_id: String,
    pub entity_kind: String,
    pub entity_id: String,
    /// The metrics' days, both ends included.
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
    /// In units of `currency`.
    pub spend: f64,
    pub clicks: i64,
    pub conversions: f64,
    /// Spend per conversion; `None` without conversions.
    pub cpa: Option<f64>,
    pub target_cpa: Option<f64>,
    pub currency: String,
}

/// One optimizer journal entry: the decision, its rule, the bid before and after, and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidChangeRecord {
    pub entry_id: String,
    pub at: DateTime<Utc>,
    pub run_id: String,
    /// `evaluation` or `revert`.
    pub kind: String,
    pub campaign_id: String,
    pub platform: String,
    pub account: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub mode: String,
    pub config_version: String,
    pub rule: Option<String>,
    /// The change decided (`set_bid`, `pause`...), if any.
    pub change: Option<String>,
    pub bid_before: Option<f64>,
    pub bid_after: Option<f64>,
    pub cpa: Option<f64>,
    pub target_cpa: Option<f64>,
    pub currency: String,
    pub outcome: String,
    pub reason: String,
}

fn units(micros: i64) -> f64 {
    micros as f64 / MICROS
}

/// A snake_case label of a serde enum value.
fn label<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(m) => m
            .get("kind")
            .or_else(|| m.get("type"))
            .and_then(|v| v.as_str().map(str::to_string))
            .or_else(|| m.keys().next().cloned()),
        _ => None,
    }
}

impl BidChangeRecord {
    /// The row of one journal entry.
    pub fn of(e: &JournalEntry) -> Self {
        let cpa = e
            .decision
            .as_ref()
            .and_then(|d| d.cpa_micros)
            .or_else(|| e.metrics.as_ref().and_then(cpa_micros));
        BidChangeRecord {
            entry_id: e.entry_id.clone(),
            at: e.at,
            run_id: e.run_id.clone(),
            kind: label(&e.kind).unwrap_or_default(),
            campaign_id: e.campaign_id.clone(),
            platform: e.platform.to_string(),
            account: e.account.clone(),
            entity_kind: e.entity_kind.to_string(),
            entity_id: e.entity_id.clone(),
            mode: e.mode.as_str().to_string(),
            config_version: e.config_version.clone(),
            rule: e.rule.clone(),
            change: e.change.as_ref().and_then(label),
            bid_before: e.bid_before_micros.map(units),
            bid_after: e.bid_after_micros.map(units),
            cpa: cpa.map(units),
            target_cpa: e.target_cpa_micros.map(units),
            currency: e.currency.clone(),
            outcome: e.outcome.as_str().to_string(),
            reason: e.reason.clone(),
        }
    }
}

fn cpa_micros(m: &crate::optimizer::Metrics) -> Option<i64> {
    (m.conversions_milli > 0).then(|| {
        let cpa = i128::from(m.spend_micros) * 1000 / i128::from(m.conversions_milli);
        i64::try_from(cpa).unwrap_or(i64::MAX)
    })
}

impl AdMetricRecord {
    /// The metrics row of a journal entry that carries metrics, over the window the run looked at.
    pub fn of(e: &JournalEntry, window_start: NaiveDate, window_end: NaiveDate) -> Option<Self> {
        let m = e.metrics.as_ref()?;
        Some(AdMetricRecord {
            metric_id: format!(
                "{}#{}#{}#{}#{}",
                e.platform, e.account, e.entity_id, window_end, e.run_id
            ),
            at: e.at,
            origin: "optimizer".to_string(),
            platform: e.platform.to_string(),
            account: e.account.clone(),
            campaign_id: e.campaign_id.clone(),
            entity_kind: e.entity_kind.to_string(),
            entity_id: e.entity_id.clone(),
            window_start,
            window_end,
            spend: units(m.spend_micros),
            clicks: i64::try_from(m.clicks).unwrap_or(i64::MAX),
            conversions: m.conversions_milli as f64 / 1000.0,
            cpa: cpa_micros(m).map(units),
            target_cpa: e.target_cpa_micros.map(units),
            currency: e.currency.clone(),
        })
    }
}

/// The `origin` of the daily extract's `ad_metrics` rows (the hourly run's rows say `optimizer`).
pub const DAILY_EXTRACT: &str = "daily_extract";

impl AdMetricRecord {
    /// The daily extract's row of one campaign on `day`, read at `at` from an account-level report.
    /// Its `metric_id` is the day key `daily_extract#platform#account#campaign#day`, without the time of
    /// the read: a re-run of the same day repeats the same ids, so readers that count each id once (the
    /// dashboard, the README's queries) never count a day twice. `currency` is the account's when the
    /// report gave none.
    pub fn daily(
        at: DateTime<Utc>,
        platform: &str,
        account: &str,
        day: NaiveDate,
        campaign: &crate::ads::DailyCampaign,
        currency: &str,
    ) -> Self {
        let metrics = crate::optimizer::Metrics {
            spend_micros: campaign.spend_micros,
            conversions_milli: campaign.conversions_milli,
            clicks: campaign.clicks,
            cpc_micros: None,
        };
        AdMetricRecord {
            metric_id: format!(
                "{DAILY_EXTRACT}#{platform}#{account}#{}#{day}",
                campaign.campaign_id
            ),
            at,
            origin: DAILY_EXTRACT.to_string(),
            platform: platform.to_string(),
            account: account.to_string(),
            campaign_id: campaign.campaign_id.clone(),
            entity_kind: "campaign".to_string(),
            entity_id: campaign.campaign_id.clone(),
            window_start: day,
            window_end: day,
            spend: units(campaign.spend_micros),
            clicks: i64::try_from(campaign.clicks).unwrap_or(i64::MAX),
            conversions: campaign.conversions_milli as f64 / 1000.0,
            cpa: cpa_micros(&metrics).map(units),
            target_cpa: None,
            currency: campaign
                .currency
                .clone()
                .unwrap_or_else(|| currency.to_string()),
        }
    }
}

/// One analytics record, tagged with its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "table", content = "row", rename_all = "snake_case")]
pub enum Record {
    Leads(LeadRecord),
    Effects(EffectRecord),
    AdMetrics(AdMetricRecord),
    BidChanges(BidChangeRecord),
}

impl Record {
    /// The record's table.
    pub fn table(&self) -> Table {
        match self {
            Record::Leads(_) => Table::Leads,
            Record::Effects(_) => Table::Effects,
            Record::AdMetrics(_) => Table::AdMetrics,
            Record::BidChanges(_) => Table::BidChanges,
        }
    }

    /// The record's time: its partition is this day (UTC).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Record::Leads(r) => r.received_at,
            Record::Effects(r) => r.at,
            Record::AdMetrics(r) => r.at,
            Record::BidChanges(r) => r.at,
        }
    }

    /// The Hive partition value `dt` (`YYYY-MM-DD`, UTC).
    pub fn dt(&self) -> NaiveDate {
        self.at().date_naive()
    }

    /// The record's row as a JSON object (the column values by name).
    pub fn row(&self) -> serde_json::Map<String, serde_json::Value> {
        let value = match self {
            Record::Leads(r) => serde_json::to_value(r),
            Record::Effects(r) => serde_json::to_value(r),
            Record::AdMetrics(r) => serde_json::to_value(r),
            Record::BidChanges(r) => serde_json::to_value(r),
        };
        match value {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// The records of an optimizer run's journal entries: one `ad_metrics` row per entry that had metrics,
/// one `bid_changes` row per entry.
pub fn of_run(outcomes: &[JournalEntry], lookback_days: impl Fn(&str) -> u32) -> Vec<Record> {
    let mut records = Vec::with_capacity(outcomes.len() * 2);
    for e in outcomes {
        let end = e.at.date_naive();
        let days = u64::from(lookback_days(&e.campaign_id).max(1) - 1);
        let start = end - chrono::Days::new(days);
        if let Some(m) = AdMetricRecord::of(e, start, end) {
            records.push(Record::AdMetrics(m));
        }
        records.push(Record::BidChanges(BidChangeRecord::of(e)));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_row_is_keyed_by_the_day_not_the_time_it_was_read() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let campaign = crate::ads::DailyCampaign {
            campaign_id: "11".into(),
            spend_micros: 12_500_000,
            clicks: 40,
            conversions_milli: 2_500,
            currency: None,
        };
        let first = "2026-11-28T03:30:00Z".parse().unwrap();
        let rerun = "2026-11-28T09:12:00Z".parse().unwrap();
        let a = AdMetricRecord::daily(first, "google_ads", "1234567890", day, &campaign, "BRL");
        let b = AdMetricRecord::daily(rerun, "google_ads", "1234567890", day, &campaign, "BRL");
        assert_eq!(
            a.metric_id,
            "daily_extract#google_ads#1234567890#11#2026-11-27"
        );
        assert_eq!(a.metric_id, b.metric_id);
        assert_eq!(a.origin, DAILY_EXTRACT);
        assert_eq!((a.window_start, a.window_end), (day, day));
        assert_eq!((a.spend, a.clicks, a.conversions), (12.5, 40, 2.5));
        assert_eq!(a.cpa, Some(5.0));
        assert_eq!(a.currency, "BRL");
        let none = crate::ads::DailyCampaign {
            conversions_milli: 0,
            currency: Some("USD".into()),
            ..campaign
        };
        let c = AdMetricRecord::daily(first, "meta", "act_1", day, &none, "BRL");
        assert_eq!((c.cpa, c.currency.as_str()), (None, "USD"));
    }
}
