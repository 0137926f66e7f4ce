//! Sends a platform operation's calls in order through the connector contract: credentials added by the
//! vendor, each call retried with backoff and jitter, no attempt past the deadline.

use std::time::Duration;

use super::Call;
use crate::connector::{
    ConnectorError, Deadline, Outcome, Reply, RetryPolicy, send, send_with_retry_until,
};

/// The HTTP side of one vendor: its label, the shared client and the retry policy.
#[derive(Debug, Clone)]
pub struct Sender {
    pub vendor: &'static str,
    pub http: reqwest::Client,
    pub policy: RetryPolicy,
}

impl Sender {
    /// Sends `calls` one after the other (a later call needs the earlier one: tags need the member). A
    /// call's permanent failure stops the rest. Returns the notes of the calls that gave one.
    ///
    /// `prepare` adds the credentials; `classify` sorts each reply (the vendor's own rules).
    pub async fn run<P, C>(
        &self,
        calls: &[Call],
        deadline: Deadline,
        prepare: P,
        classify: C,
    ) -> Result<Vec<String>, ConnectorError>
    where
        P: Fn(reqwest::RequestBuilder, &Call) -> reqwest::RequestBuilder + Sync,
        C: Fn(&Call, &Reply) -> Outcome<Option<String>> + Sync,
    {
        let mut notes = Vec::new();
        for call in calls {
            let note = send_with_retry_until(self.vendor, &self.policy, deadline, |_| {
                let builder = prepare(self.builder(call), call);
                let classify = &classify;
                async move {
                    match send(builder).await {
                        Ok(reply) => match classify(call, &reply) {
                            Outcome::Success(note) => Outcome::Success(note),
                            Outcome::Retryable {
                                reason,
                                retry_after,
                            } => Outcome::Retryable {
                                reason: format!("{}: {reason}", call.purpose),
                                retry_after,
                            },
                            Outcome::Permanent { reason } => Outcome::Permanent {
                                reason: format!("{}: {reason}", call.purpose),
                            },
                        },
                        Err(reason) => Outcome::Retryable {
                            reason: format!("{}: {reason}", call.purpose),
                            retry_after: None,
                        },
                    }
                }
            })
            .await?;
            notes.extend(note);
        }
        Ok(notes)
    }

    fn builder(&self, call: &Call) -> reqwest::RequestBuilder {
        let method =
            reqwest::Method::from_bytes(call.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut b = self.http.request(method, &call.url);
        for (k, v) in &call.headers {
            b = b.header(k, v);
        }
        match &call.body {
            Some(body) => b.json(body),
            None => b,
        }
    }
}

/// A whole number of seconds from a header, as a retry hint (`x-sib-ratelimit-reset`).
pub fn seconds_header(reply: &Reply, name: &str) -> Option<Duration> {
    reply
        .header(name)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}
