//! SQS adapter: the leads queue, any JSON message queue with batched sends, and holding back a received
//! message (`ChangeMessageVisibility`).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::envelope::LeadEnvelope;
use crate::error::ErrorClass;
use crate::ports::{
    LeadQueue, MAX_REDELIVERY_DELAY, MessageQueue, OutboundMessage, QueueError, Redelivery,
};

/// SQS's limit on entries per `SendMessageBatch`.
const BATCH_LIMIT: usize = 10;

/// One SQS queue, by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Wraps a client and a queue URL. Build the client once, at cold start.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self::new(Client::new(config), url)
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Sorts an SDK error with the one AWS classifier ([`super::errors`]): retryable is `Unavailable`,
/// permanent is `Rejected`.
pub fn classify<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> QueueError
where
    E: ProvideErrorMetadata,
{
    let failure = super::errors::classify(err);
    match failure.class {
        ErrorClass::Retryable => QueueError::Unavailable(failure.message),
        ErrorClass::Permanent => QueueError::Rejected(failure.message),
    }
}

impl LeadQueue for SqsQueue {
    async fn send_lead(&self, envelope: &LeadEnvelope) -> Result<(), QueueError> {
        let body = envelope
            .to_json()
            .map_err(|e| QueueError::Rejected(format!("envelope did not serialize: {e}")))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes(
                "lead_id",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(envelope.lead_id.as_str())
                    .build()
                    .map_err(|e| QueueError::Rejected(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

impl MessageQueue for SqsQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<String>, QueueError> {
        let mut failed = Vec::new();
        for chunk in messages.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .map(|m| {
                    SendMessageBatchRequestEntry::builder()
                        .id(&m.id)
                        .message_body(&m.body)
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            failed.extend(output.failed().iter().map(|f| f.id().to_string()));
        }
        Ok(failed)
    }
}

/// A delay as `ChangeMessageVisibility` takes it: whole seconds, rounded up so that the message never
/// returns before `after`, at most [`MAX_REDELIVERY_DELAY`].
fn visibility_secs(after: std::time::Duration) -> i32 {
    let capped = after.min(MAX_REDELIVERY_DELAY);
    let secs = capped.as_secs() + u64::from(capped.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

impl Redelivery for SqsQueue {
    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        after: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_secs(after))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_delay_becomes_whole_seconds_rounded_up_and_capped_below_sqss_maximum() {
        assert_eq!(visibility_secs(Duration::from_secs(1200)), 1200);
        assert_eq!(visibility_secs(Duration::from_millis(1_500)), 2);
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        let longest = visibility_secs(Duration::from_secs(40 * 3600));
        assert_eq!(
            u64::try_from(longest).ok(),
            Some(MAX_REDELIVERY_DELAY.as_secs())
        );
        assert!(longest < 12 * 3600, "SQS refuses 12 hours or more");
    }
}
