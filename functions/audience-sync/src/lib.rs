//! The audience-sync Lambda: consumes the audience queue in large batches and keeps Meta custom
//! audiences and Google Customer Match lists in step, once per person x audience.

pub mod handler;
pub mod setup;
pub mod sync;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use setup::{LiveSync, Settings, SetupError, build};
pub use sync::{Message, Report, Syncer};
