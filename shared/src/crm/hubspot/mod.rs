//! HubSpot contacts: batch upsert by email (`idProperty = "email"`), the batch's leads in one call.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
