//! Integration tests: one binary.

// Tests may unwrap: a failure here is a test failure, with the panic message as its report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audience;
mod config;
mod effects;
mod email;
mod events;
mod extract;
mod lead_router;
mod optimizer;
mod receiver;
mod reports;
mod sources;
mod support;
