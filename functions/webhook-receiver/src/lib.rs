//! webhook-receiver: accepts leads over HTTP, stores each one durably and queues it for the lead-router;
//! a scheduled sweep queues any stored lead its request could not queue.

pub mod body;
pub mod config;
pub mod cors;
pub mod dispatch;
pub mod handler;
pub mod response;

pub use config::ReceiverConfig;
pub use handler::{Receiver, SweepReport};
