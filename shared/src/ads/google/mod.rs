//! Google Ads REST connector: metrics through `googleAds:searchStream`, changes through `adGroups:mutate` /
//! `campaigns:mutate` (with `validateOnly` for dry-runs).
//!
//! `config.rs` is the file section, `request.rs` builds requests and parses replies (pure), `client.rs`
//! sends them.

#[cfg(feature = "http-client")]
pub mod client;
pub mod config;
#[cfg(feature = "http-client")]
pub mod request;

#[cfg(feature = "http-client")]
pub use client::{GoogleAdsClient, GoogleAdsConfig, GoogleAuth};
pub use config::GoogleAdsSettings;
