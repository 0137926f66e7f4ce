//! Packing records into queue messages (many records per message, under SQS's size limit), the queue
//! sink over any [`MessageQueue`], and reading the messages back (report-export).

use serde::{Deserialize, Serialize};

use super::ports::{AnalyticsError, AnalyticsSink, SendFuture};
use super::records::Record;
use crate::ports::{MessageQueue, OutboundMessage, QueueError};

/// Largest message body packed: SQS takes 256 KiB per message and per `SendMessageBatch` call; the
/// queue adapter sends up to 10 per call, so each stays well under a tenth of it.
pub const MAX_MESSAGE_BYTES: usize = 24 * 1024;
/// The message format's version.
pub const FORMAT_VERSION: u32 = 1;

/// One analytics message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub v: u32,
    pub records: Vec<Record>,
}

impl Message {
    /// Reads a message body.
    pub fn parse(body: &str) -> Result<Message, String> {
        let message: Message = serde_json::from_str(body).map_err(|e| {
            format!(
                "not an analytics message (line {}, column {}): {}",
                e.line(),
                e.column(),
                e.classify_name()
            )
        })?;
        if message.v != FORMAT_VERSION {
            return Err(format!("unknown analytics message version {}", message.v));
        }
        Ok(message)
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected fields or types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Records packed into message bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The message bodies.
    pub messages: Vec<String>,
    /// For each message, the range of record indexes it holds.
    pub ranges: Vec<std::ops::Range<usize>>,
}

impl Batch {
    /// Packs records, in order, into as few messages of at most [`MAX_MESSAGE_BYTES`] as fit. A record
    /// that does not serialize is skipped (and logged): it is a bug, not a reason to lose the others.
    pub fn pack(records: &[Record]) -> Batch {
        let mut batch = Batch {
            messages: Vec::new(),
            ranges: Vec::new(),
        };
        let head = format!("{{\"v\":{FORMAT_VERSION},\"records\":[");
        let mut body = head.clone();
        let mut start = 0;
        let mut count = 0;
        for (i, record) in records.iter().enumerate() {
            let json = match serde_json::to_string(record) {
                Ok(j) => j,
                Err(error) => {
                    tracing::error!(%error, table = record.table().name(), "an analytics record did not serialize; skipped");
                    continue;
                }
            };
            if count > 0 && body.len() + json.len() + 3 > MAX_MESSAGE_BYTES {
                body.push_str("]}");
                batch
                    .messages
                    .push(std::mem::replace(&mut body, head.clone()));
                batch.ranges.push(start..i);
                start = i;
                count = 0;
            }
            if count > 0 {
                body.push(',');
            }
            body.push_str(&json);
            count += 1;
        }
        if count > 0 {
            body.push_str("]}");
            batch.messages.push(body);
            batch.ranges.push(start..records.len());
        }
        batch
    }

    /// The records of the given messages (to keep them after a failed send).
    pub fn records_of(&self, records: &[Record], messages: &[usize]) -> Vec<Record> {
        messages
            .iter()
            .filter_map(|&m| self.ranges.get(m))
            .flat_map(|r| records.get(r.clone()).unwrap_or_default().iter().cloned())
            .collect()
    }
}

/// The analytics sink over a message queue (the SQS analytics queue in AWS and on moto).
#[derive(Debug, Clone)]
pub struct QueueSink<Q> {
    queue: Q,
}

impl<Q: MessageQueue> QueueSink<Q> {
    /// Wraps a queue.
    pub fn new(queue: Q) -> Self {
        QueueSink { queue }
    }
}

impl<Q: MessageQueue + 'static> AnalyticsSink for QueueSink<Q> {
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a> {
        Box::pin(async move {
            let messages: Vec<OutboundMessage> = batch
                .messages
                .iter()
                .enumerate()
                .map(|(i, body)| OutboundMessage {
                    id: i.to_string(),
                    body: body.clone(),
                })
                .collect();
            let failed = self
                .queue
                .send_batch(&messages)
                .await
                .map_err(|e| match e {
                    QueueError::Unavailable(m) => AnalyticsError::Unavailable(m),
                    QueueError::Rejected(m) => AnalyticsError::Rejected(m),
                })?;
            Ok(failed.iter().filter_map(|id| id.parse().ok()).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::records::{Destination, EffectOutcome, EffectRecord};

    fn effects(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Effects(EffectRecord::new(
                    chrono::Utc::now(),
                    &format!("lead-{i}"),
                    Destination::Crm,
                    None,
                    "upsert",
                    EffectOutcome::Done,
                ))
            })
            .collect()
    }

    #[test]
    fn records_pack_into_few_messages_under_the_size_limit_and_read_back_in_order() {
        let records = effects(500);
        let batch = Batch::pack(&records);
        assert!(batch.messages.len() > 1 && batch.messages.len() < 20);
        let mut back = Vec::new();
        for m in &batch.messages {
            assert!(m.len() <= MAX_MESSAGE_BYTES);
            back.extend(Message::parse(m).unwrap().records);
        }
        assert_eq!(back, records);
        assert_eq!(batch.ranges.iter().map(|r| r.len()).sum::<usize>(), 500);
    }

    #[test]
    fn the_records_of_failed_messages_are_kept_exactly() {
        let records = effects(300);
        let batch = Batch::pack(&records);
        let kept = batch.records_of(&records, &[1]);
        assert_eq!(kept.as_slice(), &records[batch.ranges[1].clone()]);
    }

    #[test]
    fn a_foreign_body_is_refused_without_echoing_it() {
        let err = Message::parse("{\"email\":\"ana@example.com\"}").unwrap_err();
        assert!(!err.contains("ana@example.com"), "{err}");
        assert!(Message::parse("{\"v\":9,\"records\":[]}").is_err());
    }
}
