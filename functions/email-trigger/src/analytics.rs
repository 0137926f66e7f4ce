//! email-trigger's analytics records (issue 12): one `effects` row per platform outcome of an
//! enrollment, unsubscription or recommendation (destination `email`, the platform as vendor), and one
//! per enrollment or unsubscription skipped on purpose. Buffered by `fluxo::analytics::emit` and sent
//! once per batch; never delays or fails the effect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fluxo::analytics::{Destination, EffectOutcome, EffectRecord};
use fluxo::email::Platform;
use fluxo::error::ErrorClass;

/// How one platform's part of a job ended, for its row.
pub enum PlatformOutcome {
    Done,
    /// Refused for good (recorded, not retried).
    Failed,
    /// Failed in a way worth retrying; SQS redelivers the message.
    Retrying,
}

/// One platform's part of a job. The reason recorded is a kind, never the vendor's text (it may quote
/// the person).
pub fn platform(
    lead_id: &str,
    target: Option<&str>,
    action: &str,
    platform: Platform,
    outcome: PlatformOutcome,
    latency: Duration,
    now: DateTime<Utc>,
) {
    let (outcome, failure) = match outcome {
        PlatformOutcome::Done => (EffectOutcome::Done, None),
        PlatformOutcome::Failed => (
            EffectOutcome::Failed,
            Some((ErrorClass::Permanent, "rejected")),
        ),
        PlatformOutcome::Retrying => (
            EffectOutcome::Retrying,
            Some((ErrorClass::Retryable, "retrying")),
        ),
    };
    let mut record = EffectRecord::new(now, lead_id, Destination::Email, target, action, outcome)
        .vendor(platform.as_str())
        .timing(1, latency);
    if let Some((class, kind)) = failure {
        record = record.failure(class, kind);
    }
    fluxo::analytics::effect(record);
}

/// An effect skipped on purpose: `no_consent`, `unknown_person`, `unmapped`...; only the reason's kind
/// (the part before any `:`) is recorded.
pub fn skipped(
    lead_id: &str,
    target: Option<&str>,
    action: &str,
    reason: &str,
    now: DateTime<Utc>,
) {
    let kind = kind_of(reason);
    let mut record = EffectRecord::new(
        now,
        lead_id,
        Destination::Email,
        target,
        action,
        EffectOutcome::Skipped,
    );
    record.reason = Some(kind.to_string());
    fluxo::analytics::effect(record);
}

/// The kind of a skip reason: the part before any `:`, trimmed.
pub fn kind_of(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason).trim()
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn a_skip_records_only_the_reasons_kind() {
        assert_eq!(
            kind_of("unmapped: sequence s9 has no [email_trigger.sequences] entry"),
            "unmapped"
        );
        assert_eq!(kind_of("no_consent"), "no_consent");
    }
}
