//! The daily ad-platform extract (issue 12): once a day, every campaign's metrics of one day, not only the
//! optimized ones, from one account-level report per account (a Google Ads GAQL report on `campaign`,
//! Meta insights at `level=campaign`), emitted as `ad_metrics` analytics records with
//! `origin = "daily_extract"` for the data lake.
//!
//! The accounts are those of the configured Google Ads and Meta campaigns. A re-run of the same day emits
//! rows with the same `metric_id` (the day key, see `AdMetricRecord::daily`), so a day is never counted
//! twice by the readers, which count each id once.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use fluxo::ads::{DailyCampaign, Platforms};
use fluxo::analytics::{AdMetricRecord, Record};
use fluxo::error::{ErrorClass, Retryable};
use fluxo::optimizer::ports::PlatformError;
use fluxo::optimizer::{Campaign, Platform};
use futures_util::StreamExt;
use serde::Serialize;

/// Accounts read at the same time.
pub const CONCURRENCY: usize = 4;

/// The account-level daily reports of the ad platforms.
pub trait DailyReports: Send + Sync {
    /// Every campaign of a Google Ads account (customer id) on `day`.
    fn google_daily(
        &self,
        account: &str,
        day: NaiveDate,
    ) -> impl Future<Output = Result<Vec<DailyCampaign>, PlatformError>> + Send;
    /// Every campaign of a Meta ad account on `day`, counting the `conversion_types` actions.
    fn meta_daily(
        &self,
        account: &str,
        day: NaiveDate,
        conversion_types: &[String],
    ) -> impl Future<Output = Result<Vec<DailyCampaign>, PlatformError>> + Send;
}

fn failed(platform: Platform, class: ErrorClass, reason: String) -> PlatformError {
    PlatformError {
        platform: platform.as_str(),
        class,
        reason,
    }
}

fn not_configured(platform: Platform) -> PlatformError {
    failed(
        platform,
        ErrorClass::Permanent,
        format!("platform {} is not configured", platform.as_str()),
    )
}

impl DailyReports for Platforms {
    async fn google_daily(
        &self,
        account: &str,
        day: NaiveDate,
    ) -> Result<Vec<DailyCampaign>, PlatformError> {
        let p = Platform::GoogleAds;
        let client = self.google_ads.as_ref().ok_or_else(|| not_configured(p))?;
        client
            .daily_campaigns(account, day)
            .await
            .map_err(|e| failed(p, e.class(), e.reason().to_string()))
    }

    async fn meta_daily(
        &self,
        account: &str,
        day: NaiveDate,
        conversion_types: &[String],
    ) -> Result<Vec<DailyCampaign>, PlatformError> {
        let p = Platform::Meta;
        let client = self.meta.as_ref().ok_or_else(|| not_configured(p))?;
        client
            .daily_campaigns(account, day, conversion_types)
            .await
            .map_err(|e| failed(p, e.class(), e.reason().to_string()))
    }
}

/// One account report to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountJob {
    pub platform: Platform,
    pub account: String,
    /// The currency of the account's first configured campaign, for rows the report gives none.
    pub currency: String,
    /// Meta: the union of the account's campaigns' `conversion_action_types` (the hourly rows count the
    /// same ones).
    pub conversion_types: Vec<String>,
}

/// The accounts of the configured Google Ads and Meta campaigns, each once, in a stable order. Generic
/// campaigns have no account report.
pub fn jobs(campaigns: &[Campaign]) -> Vec<AccountJob> {
    let mut by_account: BTreeMap<(&'static str, &str), AccountJob> = BTreeMap::new();
    for c in campaigns {
        if c.platform == Platform::Generic {
            continue;
        }
        let job = by_account
            .entry((c.platform.as_str(), c.account.as_str()))
            .or_insert_with(|| AccountJob {
                platform: c.platform,
                account: c.account.clone(),
                currency: c.currency.clone(),
                conversion_types: Vec::new(),
            });
        if c.platform == Platform::Meta {
            for t in &c.conversion_action_types {
                if !job.conversion_types.contains(t) {
                    job.conversion_types.push(t.clone());
                }
            }
        }
    }
    by_account.into_values().collect()
}

/// How one account's report ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountOutcome {
    pub platform: &'static str,
    pub account: String,
    /// Campaign rows emitted.
    pub rows: usize,
    /// `Retryable` or `NonRetryable` when the report failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a daily extract did: the invocation's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractReport {
    pub action: &'static str,
    pub day: NaiveDate,
    pub rows: usize,
    pub accounts: Vec<AccountOutcome>,
}

impl ExtractReport {
    /// The accounts whose report failed.
    pub fn failures(&self) -> impl Iterator<Item = &AccountOutcome> {
        self.accounts.iter().filter(|a| a.error_class.is_some())
    }
}

/// The `ad_metrics` records of one account's report.
pub fn records_of(
    job: &AccountJob,
    day: NaiveDate,
    at: DateTime<Utc>,
    rows: &[DailyCampaign],
) -> Vec<Record> {
    rows.iter()
        .map(|c| {
            Record::AdMetrics(AdMetricRecord::daily(
                at,
                job.platform.as_str(),
                &job.account,
                day,
                c,
                &job.currency,
            ))
        })
        .collect()
}

/// Reads every account's report of `day` (a few at a time) and returns the report and the records. One
/// account's failure never stops the others.
pub async fn run<R: DailyReports>(
    reports: &R,
    campaigns: &[Campaign],
    day: NaiveDate,
    at: DateTime<Utc>,
) -> (ExtractReport, Vec<Record>) {
    let reads = jobs(campaigns).into_iter().map(|job| async move {
        let result = match job.platform {
            Platform::GoogleAds => reports.google_daily(&job.account, day).await,
            Platform::Meta => {
                reports
                    .meta_daily(&job.account, day, &job.conversion_types)
                    .await
            }
            Platform::Generic => Ok(Vec::new()),
        };
        (job, result)
    });
    let mut done: Vec<_> = futures_util::stream::iter(reads)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    done.sort_by(|a, b| {
        (a.0.platform.as_str(), &a.0.account).cmp(&(b.0.platform.as_str(), &b.0.account))
    });
    let mut records = Vec::new();
    let mut accounts = Vec::with_capacity(done.len());
    for (job, result) in done {
        match result {
            Ok(rows) => {
                let emitted = records_of(&job, day, at, &rows);
                tracing::info!(platform = job.platform.as_str(), account = %job.account, rows = emitted.len(), %day, "daily report read");
                accounts.push(AccountOutcome {
                    platform: job.platform.as_str(),
                    account: job.account.clone(),
                    rows: emitted.len(),
                    error_class: None,
                    reason: None,
                });
                records.extend(emitted);
            }
            Err(e) => {
                tracing::warn!(platform = job.platform.as_str(), account = %job.account, class = e.class.as_str(), reason = %e.reason, %day, "daily report failed");
                accounts.push(AccountOutcome {
                    platform: job.platform.as_str(),
                    account: job.account.clone(),
                    rows: 0,
                    error_class: Some(e.class.as_str()),
                    reason: Some(e.reason),
                });
            }
        }
    }
    let report = ExtractReport {
        action: "daily_extract",
        day,
        rows: records.len(),
        accounts,
    };
    (report, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo::optimizer::{EntityKind, Guardrails, Mode};

    fn campaign(id: &str, platform: Platform, account: &str, types: &[&str]) -> Campaign {
        Campaign {
            id: id.into(),
            platform,
            account: account.into(),
            entity_kind: EntityKind::Campaign,
            entity_id: "1".into(),
            currency: "BRL".into(),
            target_cpa_micros: Some(1),
            mode: Mode::DryRun,
            guardrails: Guardrails::article_defaults("BRL"),
            lookback_days: 7,
            initial_bid_micros: None,
            conversion_action_types: types.iter().map(|t| t.to_string()).collect(),
            generic: None,
        }
    }

    #[test]
    fn each_google_and_meta_account_is_read_once_and_generic_campaigns_never() {
        let campaigns = [
            campaign("a", Platform::GoogleAds, "111111", &[]),
            campaign("b", Platform::GoogleAds, "111111", &[]),
            campaign("c", Platform::Meta, "act_9", &["lead"]),
            campaign("d", Platform::Meta, "act_9", &["lead", "purchase"]),
            campaign("e", Platform::Generic, "e2e", &[]),
        ];
        let jobs = jobs(&campaigns);
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(
            (jobs[0].platform, jobs[0].account.as_str()),
            (Platform::GoogleAds, "111111")
        );
        assert_eq!(jobs[1].platform, Platform::Meta);
        assert_eq!(jobs[1].conversion_types, ["lead", "purchase"]);
    }

    #[test]
    fn each_campaign_row_becomes_one_daily_ad_metrics_record() {
        let job = AccountJob {
            platform: Platform::Meta,
            account: "act_9".into(),
            currency: "BRL".into(),
            conversion_types: vec!["lead".into()],
        };
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let at = "2026-11-28T03:30:00Z".parse().unwrap();
        let rows = [
            DailyCampaign {
                campaign_id: "1".into(),
                spend_micros: 1_000_000,
                ..DailyCampaign::default()
            },
            DailyCampaign {
                campaign_id: "2".into(),
                ..DailyCampaign::default()
            },
        ];
        let records = records_of(&job, day, at, &rows);
        let ids: Vec<_> = records
            .iter()
            .map(|r| match r {
                Record::AdMetrics(m) => (m.metric_id.as_str(), m.origin.as_str(), m.at),
                _ => ("", "", at),
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("daily_extract#meta#act_9#1#2026-11-27", "daily_extract", at),
                ("daily_extract#meta#act_9#2#2026-11-27", "daily_extract", at)
            ]
        );
    }
}
