//! Analytics: the facts Fluxo already sees (accepted leads, effect outcomes, ad metrics, bid changes),
//! emitted as records to the analytics queue, from which `report-export` writes the Parquet data lake.
//!
//! Emitting never blocks or fails the caller's main effect. A function installs the sink once at cold
//! start ([`install`], or [`install_queue`] with the SQS queue of `ANALYTICS_QUEUE_URL`); its code then
//! [`emit`]s records into an in-process buffer, a cheap synchronous call, and [`flush`]es once per
//! invocation after its main work, in as few batched sends as fit. A send that fails is logged (without
//! personal data), counted in the `AnalyticsSendFailed` metric and kept for the next flush, up to
//! [`BUFFER_LIMIT`] records; beyond that the oldest are dropped and counted in `AnalyticsDropped`.
//! Without an installed sink (unit tests, a deployment without the analytics queue) every call is a no-op.
//!
//! Emitting an effect is one line, e.g. in an email consumer after the vendor answered:
//! `fluxo::analytics::effect(EffectRecord::new(now, lead_id, Destination::Email, Some(seq), "enroll", EffectOutcome::Done));`

pub mod ports;
pub mod records;
pub mod sink;

#[cfg(feature = "lake")]
pub mod lake;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub use ports::{AnalyticsError, AnalyticsSink};
pub use records::{
    AdMetricRecord, BidChangeRecord, Destination, EffectOutcome, EffectRecord, LeadRecord, Record,
    Table,
};
pub use sink::{Batch, QueueSink};

/// Records kept in memory while the sink is unavailable; older ones are dropped beyond this.
pub const BUFFER_LIMIT: usize = 5_000;
/// Longest a flush may take: analytics never holds an invocation up for long.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The metrics namespace.
const NAMESPACE: &str = "Fluxo";

struct Installed {
    function: &'static str,
    sink: Box<dyn AnalyticsSink>,
}

static SINK: OnceLock<Installed> = OnceLock::new();
static BUFFER: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// Installs the process's analytics sink (once; a second call is ignored). `function` names the metrics.
pub fn install(function: &'static str, sink: impl AnalyticsSink + 'static) {
    if SINK
        .set(Installed {
            function,
            sink: Box::new(sink),
        })
        .is_err()
    {
        tracing::warn!("an analytics sink is already installed; the new one is ignored");
    }
}

/// Installs the SQS analytics queue named by `ANALYTICS_QUEUE_URL`, if set; without it analytics is off.
#[cfg(feature = "sqs")]
pub fn install_queue(function: &'static str, sdk_config: &aws_config::SdkConfig) {
    match std::env::var("ANALYTICS_QUEUE_URL") {
        Ok(url) if !url.is_empty() => {
            let queue = crate::adapters::sqs::SqsQueue::from_sdk_config(sdk_config, url);
            install(function, QueueSink::new(queue));
        }
        _ => tracing::info!("ANALYTICS_QUEUE_URL is not set: analytics records are not emitted"),
    }
}

/// Whether a sink is installed.
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// Buffers records for the next [`flush`]. Never blocks on I/O and never fails.
pub fn emit(records: impl IntoIterator<Item = Record>) {
    if !enabled() {
        return;
    }
    let mut buffer = match BUFFER.lock() {
        Ok(b) => b,
        Err(poisoned) => poisoned.into_inner(),
    };
    buffer.extend(records);
    let over = buffer.len().saturating_sub(BUFFER_LIMIT);
    if over > 0 {
        buffer.drain(..over);
        drop(buffer);
        dropped(over);
    }
}

/// Buffers one effect outcome: the one-line call for every effect a function performs.
pub fn effect(record: EffectRecord) {
    emit([Record::Effects(record)]);
}

fn dropped(n: usize) {
    if let Some(installed) = SINK.get() {
        tracing::warn!(
            records = n,
            "analytics buffer full; the oldest records were dropped"
        );
        crate::observability::count(NAMESPACE, installed.function, "AnalyticsDropped", n as u64);
    }
}

/// Sends every buffered record, in batched messages, within [`FLUSH_TIMEOUT`]. Never fails: on a failure
/// the records stay buffered for the next flush, and the failure is logged and counted.
pub async fn flush() {
    let Some(installed) = SINK.get() else { return };
    let records = {
        let mut buffer = match BUFFER.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::take(&mut *buffer)
    };
    if records.is_empty() {
        return;
    }
    let batch = Batch::pack(&records);
    let sent = tokio::time::timeout(FLUSH_TIMEOUT, installed.sink.send(&batch)).await;
    let unsent: Vec<usize> = match sent {
        Ok(Ok(failed)) => failed,
        Ok(Err(error)) => {
            tracing::warn!(error = %error, class = crate::Retryable::class(&error).as_str(), records = records.len(), "analytics send failed; kept for the next flush");
            (0..batch.messages.len()).collect()
        }
        Err(_) => {
            tracing::warn!(
                records = records.len(),
                "analytics send timed out; kept for the next flush"
            );
            (0..batch.messages.len()).collect()
        }
    };
    if unsent.is_empty() {
        return;
    }
    crate::observability::count(
        NAMESPACE,
        installed.function,
        "AnalyticsSendFailed",
        unsent.len() as u64,
    );
    let keep = batch.records_of(&records, &unsent);
    emit(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_sink_emitting_is_a_no_op() {
        assert!(!enabled());
        effect(EffectRecord::new(
            chrono::Utc::now(),
            "01L",
            Destination::Crm,
            None,
            "upsert",
            EffectOutcome::Done,
        ));
        assert!(BUFFER.lock().unwrap().is_empty());
    }
}
