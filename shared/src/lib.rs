//! Fluxo's shared library, split by capability: what two or more function crates share.
//!
//! - [`domain`]: the pure lead domain (lead types, the canonical field table, intake). No I/O.
//! - [`ports`]: the cross-cutting ports (clock, randomness, store and queue errors, intake store);
//!   each capability keeps its own ports beside it ([`routing::ports`], [`optimizer::ports`]).
//! - [`routing`], [`optimizer`]: the router's and the optimizer's shared domain (the use cases
//!   themselves live in their function crates).
//! - [`connector`]: the vendor connector contract; [`crm`], [`ads`], [`slack`]: the vendor connectors,
//!   each vendor with `config.rs`, `request.rs` (pure) and `client.rs`.
//! - `adapters`: AWS only (DynamoDB, SQS, SSM, S3, signed calls), with one error classifier.
//! - [`config`]: the config file model, its source and live reloading.
//! - `lambda` (features `lambda`, `ssm`, `s3`): the cold start every function shares.
//!
//! Only `adapters` knows AWS SDK types, and only the connectors know HTTP types. Adapters and HTTP are
//! behind cargo features so that each function links only what it calls. `testing` (feature `testing`)
//! holds the shared unit-test fakes. ARCHITECTURE.md at the repository root is the map.

pub mod ads;
pub mod analytics;
pub mod audience;
pub mod config;
pub mod crm;
pub mod domain;
pub mod email;
pub mod envelope;
pub mod error;
pub mod idempotency;
#[cfg(all(feature = "lambda", feature = "ssm", feature = "s3"))]
pub mod lambda;
pub mod observability;
pub mod optimizer;
pub mod ports;
pub mod routing;
pub mod secrets;
pub mod settings;
pub mod slack;
pub mod sources;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "aws")]
pub mod adapters;
#[cfg(feature = "http-client")]
pub mod connector;

pub use domain::{Consent, CustomFields, Email, Lead, LeadId, Phone, Utm};
pub use envelope::LeadEnvelope;
pub use error::{ErrorClass, Retryable};
