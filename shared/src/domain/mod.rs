//! The lead domain: value types that are valid by construction, and the intake that builds them.

pub mod fields;
pub mod fingerprint;
pub mod intake;
mod lead;

pub use lead::{AdAttribution, Consent, CustomFields, Email, Lead, LeadId, Phone, Utm};
