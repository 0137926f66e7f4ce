//! The Lambda entry, per invocation: one function, two triggers. The HTTP API's requests go to the
//! receiver's HTTP layer (`web.rs`), the EventBridge schedule's events go to the sweep.

use std::convert::Infallible;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error, LambdaEvent, Service, service_fn};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::setup::Live;

/// The fields that tell an EventBridge scheduled event apart from an HTTP request.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    source: Option<&'a str>,
    #[serde(rename = "detail-type", borrow, default)]
    detail_type: Option<&'a str>,
}

/// Whether an event is an EventBridge scheduled event (`source: aws.events`, `detail-type: Scheduled Event`).
pub fn is_scheduled(event: &str) -> bool {
    serde_json::from_str::<Probe>(event)
        .is_ok_and(|p| p.source == Some("aws.events") && p.detail_type == Some("Scheduled Event"))
}

/// What one scheduled run did: stored leads queued, lead-ad notices fetched.
#[derive(Debug, serde::Serialize)]
struct ScheduledReport {
    #[serde(flatten)]
    leads: crate::SweepReport,
    lead_ads: crate::sources::NoticeReport,
}

/// Runs the Lambda runtime loop until the process ends. Each invocation uses the sources of the current
/// config version.
pub async fn run(live: &Live) -> Result<(), Error> {
    let Live {
        receiver,
        secrets,
        sources,
    } = live;
    let rebuild = |loaded| crate::sources::build_owned(secrets, loaded);
    let rebuild = &rebuild;
    let http = Adapter::from(service_fn(move |request| async move {
        let current = sources
            .current_retrying(rebuild, crate::sources::Sources::degraded)
            .await;
        Ok::<_, Infallible>(receiver.handle_with(request, &current).await)
    }));
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let mut http = http.clone();
        async move {
            let LambdaEvent { payload, context } = event;
            if is_scheduled(payload.get()) {
                let current = sources
                    .current_retrying(rebuild, crate::sources::Sources::degraded)
                    .await;
                let lead_ads = receiver.sweep_notices(&current).await?;
                // Leads the notices just stored are queued by this same run.
                let leads = receiver.sweep().await?;
                let report = ScheduledReport { leads, lead_ads };
                return Ok::<_, Error>(serde_json::to_value(report)?);
            }
            let request: LambdaRequest = serde_json::from_str(payload.get())?;
            let response = http.call(LambdaEvent::new(request, context)).await?;
            Ok(serde_json::to_value(response)?)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_event_is_told_apart_from_an_http_request() {
        let scheduled = r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","account":"1","time":"2026-11-28T10:00:00Z","region":"us-east-1","resources":[],"detail":{}}"#;
        assert!(is_scheduled(scheduled));
        let http = r#"{"version":"2.0","routeKey":"POST /leads","rawPath":"/leads","headers":{"content-type":"application/json"},"requestContext":{"http":{"method":"POST","path":"/leads"}},"body":"{\"source\":\"aws.events\"}","isBase64Encoded":false}"#;
        assert!(!is_scheduled(http));
        assert!(!is_scheduled("[]"));
    }
}
