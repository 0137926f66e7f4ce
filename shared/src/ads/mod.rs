//! Ad platform connectors (Google Ads, Meta, generic) and the dispatcher that serves the optimizer's
//! `AdPlatforms` port. Each vendor folder has the connector roles: `config.rs` (its file section),
//! `request.rs` (pure request building and parsing), `client.rs` (the HTTP calls); `connector.rs`
//! dispatches a campaign to its platform's client. The account-level daily reports (the daily extract
//! of issue 12) answer [`DailyCampaign`] rows.

pub mod generic;
pub mod google;
pub mod meta;

#[cfg(feature = "http-client")]
mod connector;
#[cfg(feature = "http-client")]
pub use connector::Platforms;
#[cfg(feature = "http-client")]
pub(crate) use connector::call;

/// Concurrent calls to one platform, unless its section says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Attempts per platform call (429/5xx/timeouts are retried), unless its section says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Total timeout per platform call, in seconds, unless its section says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// One campaign's metrics for one day, from an account-level report (Google Ads GAQL on `campaign`,
/// Meta insights at `level=campaign`): what the daily extract writes to the lake's `ad_metrics` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyCampaign {
    /// The platform's campaign id (digits).
    pub campaign_id: String,
    /// Spend in micros of the account currency.
    pub spend_micros: i64,
    pub clicks: u64,
    /// Conversions in thousandths (Google reports fractional conversions).
    pub conversions_milli: i64,
    /// The account currency (ISO 4217) the report gave with the row, if it gave one.
    pub currency: Option<String>,
}
