//! Fluxo's shared library: the lead domain, the ports each function depends on, and the adapters behind them.
//!
//! Domain code is pure. I/O sits behind the small traits in [`ports`], and only the modules under
//! [`adapters`] (AWS) and [`connector`] (vendor HTTP) know SDK or HTTP types. Adapters are behind cargo
//! features so that each function links only what it calls.

pub mod ads;
pub mod config;
pub mod crm;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod idempotency;
pub mod observability;
pub mod optimizer;
pub mod ports;
pub mod routing;
pub mod secrets;
pub mod settings;
pub mod slack;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "aws")]
pub mod adapters;
#[cfg(feature = "http-client")]
pub mod connector;

pub use domain::{Consent, CustomFields, Email, Lead, LeadId, Phone, Utm};
pub use envelope::LeadEnvelope;
pub use error::{ErrorClass, Retryable};
