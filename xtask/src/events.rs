//! Builds the Lambda events the local stack sends (SQS batches, EventBridge schedules) and reads the SQS batch response.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
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
pub fn sqs_event(messages: &[ReceivedMessage], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> =
                m.attributes.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": a.string_value,
                            "binaryValue": a.binary_value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": a.data_type,
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The event EventBridge sends for a scheduled rule.
pub fn scheduled_event(
    id: &str,
    rule_arn: &str,
    account: &str,
    region: &str,
    time: DateTime<Utc>,
) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    })
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
        let event = sqs_event(
            &[message("m1", 2)],
            "arn:aws:sqs:us-east-1:123456789012:LeadsQueue",
            "us-east-1",
        );
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
    }

    #[test]
    fn builds_one_record_per_message_and_reads_the_receive_count() {
        let event = sqs_event(&[message("m1", 1), message("m2", 1)], "arn", "us-east-1");
        assert_eq!(event["Records"].as_array().unwrap().len(), 2);
        assert_eq!(message("m1", 3).receive_count(), 3);
    }

    #[test]
    fn builds_a_scheduled_event() {
        let time = DateTime::parse_from_rfc3339("2025-01-02T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = scheduled_event(
            "id-1",
            "arn:aws:events:us-east-1:123456789012:rule/x",
            "123456789012",
            "us-east-1",
            time,
        );
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
        assert_eq!(event["time"], "2025-01-02T03:00:00Z");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:us-east-1:123456789012:rule/x"
        );
        assert_eq!(event["detail"], json!({}));
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
