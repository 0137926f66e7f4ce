//! RD Station Marketing: conversion events (`event_type: CONVERSION`) with the LGPD `legal_bases` taken
//! from the person's consent. API key (conversions only) or OAuth bearer.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
