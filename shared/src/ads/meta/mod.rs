//! Meta Marketing API connector: ad set insights and `bid_amount` / `status` edits.
//!
//! `config.rs` is the file section, `request.rs` builds requests and parses replies (pure), `client.rs`
//! sends them.

#[cfg(feature = "http-client")]
pub mod client;
pub mod config;
#[cfg(feature = "http-client")]
pub mod request;

#[cfg(feature = "http-client")]
pub use client::{MetaClient, MetaConfig};
pub use config::MetaSettings;
