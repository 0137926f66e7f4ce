//! The report-export Lambda: analytics records from the analytics queue to the S3 data lake (Parquet).

pub mod export;
pub mod handler;
pub mod setup;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use export::{Exporter, LakeFiles, PartitionFile, files_of};
pub use setup::{Settings, build};
