//! RD Station Marketing: conversion events (`event_type: CONVERSION`) with the LGPD `legal_bases` taken
//! from the person's consent. API key (conversions only) or OAuth bearer.

/// What an erasure reports for RD Station Marketing. Its public API (developers.rdstation.com, Contacts:
/// read by uuid or email, update, upsert by email; conversions and events) offers no contact deletion,
/// so nothing is sent: a conversion would even re-create a contact already deleted by hand.
pub const ERASURE_NOT_SUPPORTED: &str = "not erased: RD Station Marketing's public API has no contact \
deletion; delete the contact in RD Station by hand";

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
