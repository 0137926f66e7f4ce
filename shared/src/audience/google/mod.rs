//! Google Ads Customer Match: one `OfflineUserDataJob` (`CUSTOMER_MATCH_USER_LIST`) per destination and
//! operation per run, `addOperations` with partial failure, then `:run`; the job's status is read on a
//! later invocation.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
