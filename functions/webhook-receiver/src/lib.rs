//! webhook-receiver: accepts leads over HTTP, stores each one durably and queues it for the lead-router.

pub mod body;
pub mod config;
pub mod cors;
pub mod handler;
pub mod response;

pub use config::ReceiverConfig;
pub use handler::Receiver;
