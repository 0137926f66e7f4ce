//! The invocation: read each message's records, write the batch's files, report failures.
//!
//! A message that is not an analytics message is reported as a batch item failure (it reaches the DLQ
//! after the queue's receive limit) and logged by id only. If any file of the batch cannot be written,
//! every message is reported: SQS redelivers them and the files are written again under the same names
//! when the batch comes back whole (a batch regrouped with other messages gets other names; every row
//! carries its own id, so readers count distinct ids).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use fluxo::analytics::Record;
use fluxo::analytics::sink::Message;
use fluxo::error::Retryable;

use crate::export::{Exporter, LakeFiles, batch_id};

/// The function's name in metrics.
pub const FUNCTION: &str = "report-export";

/// Handles one SQS batch.
pub async fn handle<L: LakeFiles>(exporter: &Exporter<L>, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut records: Vec<Record> = Vec::new();
    let mut good: Vec<String> = Vec::new();
    for m in &event.records {
        let id = m.message_id.clone().unwrap_or_default();
        match Message::parse(m.body.as_deref().unwrap_or_default()) {
            Ok(message) => {
                records.extend(message.records);
                good.push(id);
            }
            Err(problem) => {
                tracing::warn!(message_id = %id, %problem, "not an analytics message; it goes to the DLQ after the receive limit");
                response.add_failure(id);
            }
        }
    }
    if records.is_empty() {
        return response;
    }
    let batch = batch_id(good.iter().map(String::as_str));
    match exporter.export(&records, &batch).await {
        Ok(files) => {
            let bytes: usize = files.iter().map(|(_, _, size)| size).sum();
            for (key, rows, size) in &files {
                tracing::info!(%key, rows, bytes = size, "partition file written");
            }
            tracing::info!(batch = %batch, messages = good.len(), records = records.len(), files = files.len(), bytes, "batch exported");
            fluxo::observability::count("Fluxo", FUNCTION, "RecordsExported", records.len() as u64);
        }
        Err(error) => {
            let class = match &error {
                crate::export::ExportError::Write { source, .. } => source.class(),
                crate::export::ExportError::Encode { .. } => fluxo::ErrorClass::Permanent,
            };
            tracing::error!(%error, class = class.as_str(), batch = %batch, "batch not exported; SQS redelivers it");
            fluxo::observability::count("Fluxo", FUNCTION, "ExportFailures", 1);
            for id in good {
                response.add_failure(id);
            }
        }
    }
    response
}
