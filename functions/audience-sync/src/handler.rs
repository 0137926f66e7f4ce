//! The Lambda entry per invocation: decodes the SQS event, runs the sync, answers the partial batch
//! response (only the ids SQS should redeliver).

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use fluxo::audience::AudienceConnector;
use fluxo::audience::ports::{MembershipLedger, ProfileSnapshots};
use fluxo::connector::Deadline;
use fluxo::ports::Clock;

use crate::sync::{Message, Syncer};

/// The function's timeout in the template; the deadline falls back to it when the runtime's is odd.
pub const FUNCTION_TIMEOUT_SECS: u64 = 120;
/// New work stops this long before Lambda's deadline, to record outcomes and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Handles one SQS batch.
pub async fn handle<L, C, K>(
    syncer: &Syncer<L, C, K>,
    event: SqsEvent,
    deadline: Deadline,
) -> SqsBatchResponse
where
    L: MembershipLedger + ProfileSnapshots,
    C: AudienceConnector,
    K: Clock,
{
    let messages = event
        .records
        .into_iter()
        .map(|r| Message {
            id: r.message_id.unwrap_or_default(),
            body: r.body,
        })
        .collect();
    let report = syncer.run(messages, deadline).await;
    let mut response = SqsBatchResponse::default();
    for id in report.failed {
        if id.is_empty() {
            tracing::error!(
                "a failed message has no id and cannot be reported; SQS will not redeliver it"
            );
        } else {
            response.add_failure(id);
        }
    }
    response
}

/// When this invocation must stop starting new work: Lambda's deadline (ms since the epoch) less
/// [`DEADLINE_MARGIN`]; the function's own timeout when the deadline is not plausible.
pub fn invocation_deadline(deadline_ms: u64, now: SystemTime) -> Deadline {
    let lambda = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let plausible = lambda
        .duration_since(now)
        .is_ok_and(|left| left > Duration::ZERO && left <= Duration::from_secs(15 * 60));
    if plausible {
        Deadline::from_epoch_millis(deadline_ms, DEADLINE_MARGIN, now)
    } else {
        Deadline::after(Duration::from_secs(FUNCTION_TIMEOUT_SECS).saturating_sub(DEADLINE_MARGIN))
    }
}
