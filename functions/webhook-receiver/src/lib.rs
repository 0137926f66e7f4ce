//! webhook-receiver: accepts leads (`POST /leads[/{source}]`) and e-commerce events (`POST /events`)
//! over HTTP, stores each one durably and queues it (leads for the lead-router, events for
//! email-trigger); a scheduled sweep queues any stored lead or event its request could not queue.
//!
//! `setup` (cold start) -> `handler` (per invocation: HTTP or schedule) -> `web` (routing, CORS,
//! rendering) -> `intake` (the lead pipeline and the sweep) and `events` (the event pipeline).

// The HTTP entry nests the adapter, the live config, the sources, the intake pipeline and the
// analytics flush in one future.
#![recursion_limit = "256"]

pub mod body;
pub mod cors;
pub mod events;
pub mod handler;
pub mod intake;
pub mod response;
pub mod setup;
pub mod sources;
pub mod web;

#[cfg(test)]
mod tests;

pub use intake::{Receiver, SweepReport};
pub use setup::Settings;
