//! Builds the Lambda events the local stack sends (SQS batches, EventBridge schedules) and reads the SQS batch response.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

/// A received SQS message, independent of the SDK's types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, ...).
    pub attributes: BTreeMap<String, String>,
    pub message_attributes: BTreeMap<String, MessageAttribute>,
}

/// A user message attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageAttribute {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Vec<u8>>,
}

impl ReceivedMessage {
    /// `ApproximateReceiveCount`, 0 when absent.
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

/// The SQS event Lambda sends to a function for a batch.
pub fn sqs_event(messages: &[ReceivedMessage], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.md5_of_body = Some(m.md5_of_body.clone());
            record.attributes = m
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            record.message_attributes = m
                .message_attributes
                .iter()
                .map(|(k, a)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = a.string_value.clone();
                    attribute.binary_value = a.binary_value.as_deref().map(base64_data);
                    attribute.data_type = Some(a.data_type.clone());
                    (k.clone(), attribute)
                })
                .collect();
            record.event_source = Some("aws:sqs".to_string());
            record.event_source_arn = Some(queue_arn.to_string());
            record.aws_region = Some(region.to_string());
            record
        })
        .collect();
    event
}

/// The event EventBridge sends for a scheduled rule (`time` in whole seconds, as EventBridge sends it).
pub fn scheduled_event(
    id: &str,
    rule_arn: &str,
    account: &str,
    region: &str,
    time: DateTime<Utc>,
) -> EventBridgeEvent {
    let mut event = EventBridgeEvent::default();
    event.detail_type = "Scheduled Event".to_string();
    event.source = "aws.events".to_string();
    event.detail = json!({});
    event.version = Some("0".to_string());
    event.id = Some(id.to_string());
    event.account = Some(account.to_string());
    event.time = Some(time.trunc_subsecs(0));
    event.region = Some(region.to_string());
    event.resources = Some(vec![rule_arn.to_string()]);
    event
}

/// Bytes as the events' base64 field type.
fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

/// What Lambda makes of a function's answer to an SQS batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Delete every message.
    AllSucceeded,
    /// Delete every message except these ids.
    PartiallyFailed(BTreeSet<String>),
    /// Delete nothing.
    AllFailed(String),
}

/// Reads a successful invocation's response, as Lambda does.
///
/// Without `ReportBatchItemFailures` any successful answer deletes the whole batch. With it, an empty or
/// null answer, or an empty `batchItemFailures`, succeeds; listed ids fail; an answer that cannot be read,
/// or that lists an id not in the batch, fails the whole batch.
pub fn batch_outcome(
    response: &[u8],
    batch_ids: &BTreeSet<String>,
    report_batch_item_failures: bool,
) -> BatchOutcome {
    if !report_batch_item_failures {
        return BatchOutcome::AllSucceeded;
    }
    let text = String::from_utf8_lossy(response);
    if text.trim().is_empty() {
        return BatchOutcome::AllSucceeded;
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return BatchOutcome::AllFailed(format!("the response is not JSON: {e}")),
    };
    let failures = match &value {
        Value::Null => return BatchOutcome::AllSucceeded,
        Value::Object(o) => match o.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchOutcome::AllSucceeded,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return BatchOutcome::AllFailed(format!(
                    "batchItemFailures is not a list: {other}"
                ));
            }
        },
        other => {
            return BatchOutcome::AllFailed(format!(
                "the response is not an SqsBatchResponse: {other}"
            ));
        }
    };
    let mut failed = BTreeSet::new();
    for item in failures {
        match item.get("itemIdentifier").and_then(Value::as_str) {
            Some(id) if batch_ids.contains(id) => {
                failed.insert(id.to_string());
            }
            _ => return BatchOutcome::AllFailed(format!("invalid batch item failure {item}")),
        }
    }
    if failed.is_empty() {
        BatchOutcome::AllSucceeded
    } else {
        BatchOutcome::PartiallyFailed(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, count: u32) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body: r#"{"lead_id":"01J"}"#.into(),
            md5_of_body: "abc".into(),
            attributes: BTreeMap::from([
                ("ApproximateReceiveCount".into(), count.to_string()),
                ("SentTimestamp".into(), "1700000000000".into()),
            ]),
            message_attributes: BTreeMap::from([(
                "kind".into(),
                MessageAttribute {
                    data_type: "String".into(),
                    string_value: Some("lead.accepted".into()),
                    binary_value: None,
                },
            )]),
        }
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_an_sqs_event_shaped_like_lambdas() {
        let mut m = message("m1", 2);
        m.message_attributes.insert(
            "raw".into(),
            MessageAttribute {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(b"\x00\xff".to_vec()),
            },
        );
        let event = serde_json::to_value(sqs_event(
            &[m],
            "arn:aws:sqs:us-east-1:123456789012:LeadsQueue",
            "us-east-1",
        ))
        .unwrap();
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["receiptHandle"], "rh-m1");
        assert_eq!(record["body"], r#"{"lead_id":"01J"}"#);
        assert_eq!(record["md5OfBody"], "abc");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(
            record["eventSourceARN"],
            "arn:aws:sqs:us-east-1:123456789012:LeadsQueue"
        );
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(
            record["messageAttributes"]["kind"]["stringValue"],
            "lead.accepted"
        );
        assert_eq!(record["messageAttributes"]["kind"]["dataType"], "String");
        assert_eq!(record["messageAttributes"]["raw"]["binaryValue"], "AP8=");
        assert_eq!(record["messageAttributes"]["raw"]["dataType"], "Binary");
        // What the functions decode is what was built.
        let decoded: SqsEvent = serde_json::from_value(event).unwrap();
        assert_eq!(
            decoded.records[0].body.as_deref(),
            Some(r#"{"lead_id":"01J"}"#)
        );
    }

    #[test]
    fn builds_one_record_per_message_and_reads_the_receive_count() {
        let event = serde_json::to_value(sqs_event(
            &[message("m1", 1), message("m2", 1)],
            "arn",
            "us-east-1",
        ))
        .unwrap();
        assert_eq!(event["Records"].as_array().unwrap().len(), 2);
        assert_eq!(message("m1", 3).receive_count(), 3);
    }

    #[test]
    fn builds_a_scheduled_event() {
        let time = DateTime::parse_from_rfc3339("2025-01-02T03:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = serde_json::to_value(scheduled_event(
            "id-1",
            "arn:aws:events:us-east-1:123456789012:rule/x",
            "123456789012",
            "us-east-1",
            time,
        ))
        .unwrap();
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
        assert_eq!(event["time"], "2025-01-02T03:00:00Z");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:us-east-1:123456789012:rule/x"
        );
        assert_eq!(event["detail"], json!({}));
        assert_eq!(event["version"], "0");
        assert_eq!(event["id"], "id-1");
        assert_eq!(event["account"], "123456789012");
        assert_eq!(event["region"], "us-east-1");
    }

    #[test]
    fn deletes_the_whole_batch_without_report_batch_item_failures() {
        let outcome = batch_outcome(
            br#"{"batchItemFailures":[{"itemIdentifier":"a"}]}"#,
            &ids(&["a"]),
            false,
        );
        assert_eq!(outcome, BatchOutcome::AllSucceeded);
    }

    #[test]
    fn keeps_only_the_messages_the_function_reports_as_failed() {
        let outcome = batch_outcome(
            br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
            &ids(&["a", "b"]),
            true,
        );
        assert_eq!(outcome, BatchOutcome::PartiallyFailed(ids(&["b"])));
    }

    #[test]
    fn treats_an_empty_or_null_answer_as_success() {
        for body in [&b""[..], b"null", br#"{"batchItemFailures":[]}"#, b"{}"] {
            assert_eq!(
                batch_outcome(body, &ids(&["a"]), true),
                BatchOutcome::AllSucceeded
            );
        }
    }

    #[test]
    fn fails_the_whole_batch_on_an_unreadable_answer_or_unknown_id() {
        assert!(matches!(
            batch_outcome(b"not json", &ids(&["a"]), true),
            BatchOutcome::AllFailed(_)
        ));
        assert!(matches!(
            batch_outcome(
                br#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
                &ids(&["a"]),
                true
            ),
            BatchOutcome::AllFailed(_)
        ));
    }
}
