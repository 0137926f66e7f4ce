//! The Lambda entry per invocation: an SQS batch of the email queue (answered with the partial batch
//! response), or an erasure request `{"action": "erase", "email": "..."}` (answered with its report).

use std::time::SystemTime;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

use crate::setup::Live;
use crate::trigger::invocation_deadline;

/// Decodes the event, runs the use case, encodes the answer.
pub async fn handle(live: &Live, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let deadline = invocation_deadline(event.context.deadline, SystemTime::now());
    let trigger = live.current().await;
    if event.payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event.payload)?;
        let response = trigger.handle_until(batch, deadline).await;
        return Ok(serde_json::to_value(response)?);
    }
    if event.payload.get("action").and_then(Value::as_str) == Some("erase") {
        let email = event
            .payload
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let report = crate::erase::erase(&trigger, &live.audience_queue, email, deadline).await?;
        return Ok(serde_json::to_value(report)?);
    }
    Err(
        "unsupported event: expected an SQS batch or {\"action\": \"erase\", \"email\": ...}"
            .into(),
    )
}
