//! Generic platform connector: a configured metrics URL (the article's JSON) and a configured bid URL.
//!
//! `config.rs` is the file section, `request.rs` builds requests and parses replies (pure), `client.rs`
//! sends them.

#[cfg(feature = "http-client")]
pub mod client;
pub mod config;
#[cfg(feature = "http-client")]
pub mod request;

#[cfg(feature = "http-client")]
pub use client::{GenericClient, GenericConfig};
pub use config::GenericSettings;
