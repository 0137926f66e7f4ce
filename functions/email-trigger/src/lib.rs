//! The email-trigger Lambda: enrolls people in email sequences (once per person and sequence, consent
//! first), unsubscribes them on withdrawal, turns product views into throttled recommendations, and
//! erases a person on request.

pub mod analytics;
pub mod erase;
pub mod handler;
pub mod setup;
pub mod trigger;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use setup::{LiveTrigger, Settings, SetupError, build};
pub use trigger::Trigger;
