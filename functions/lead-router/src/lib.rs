//! The lead-router Lambda: merges each lead into its profile, upserts it into the CRM, qualifies it and fans it out.

pub mod analytics;
pub mod handler;
pub mod setup;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use handler::Router;
pub use setup::{LiveRouter, Settings, SetupError, build};
