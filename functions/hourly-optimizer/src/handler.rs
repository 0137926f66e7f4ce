//! The invocation: an EventBridge scheduled event runs the optimizer for that hour; a revert payload undoes
//! an entity's last change. Returns the run's report, listing every outcome.
//!
//! Payloads:
//! - EventBridge `Scheduled Event` (`"detail-type": "Scheduled Event"`, `"time": "2026-11-27T20:00:00Z"`):
//!   the run id is `time` truncated to the hour, so a repeated event for the same hour changes nothing twice.
//! - `{"action": "run", "time": "2026-11-27T20:00:00Z"}`: the same, by hand (`time` defaults to now).
//! - `{"action": "revert", "campaign": "<name in the config>", "entity": "<optional entity id>",
//!   "force": false}`: `force` reverts even when the platform no longer shows what the last change set.
//! - `{"action": "daily_extract", "date": "2026-11-27"}`: the daily ad-platform extract of that day
//!   (`date` defaults to yesterday, UTC); the template's second schedule sends it every day
//!   (see `extract`).

use std::time::Duration;

use crate::engine::{Engine, NotificationStatus, RevertError, RunReport};
use crate::extract::{self, DailyReports};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, NaiveDate, Utc};
use fluxo::error::{ErrorClass, Retryable};
use fluxo::optimizer::ports::{AdPlatforms, Notifier, OptimizerStore};
use fluxo::ports::Clock;
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

/// The function's name in metrics.
pub const FUNCTION: &str = "hourly-optimizer";
/// The CloudWatch namespace of the function's EMF metrics.
pub const NAMESPACE: &str = "Fluxo";

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run every campaign for the hour of `time`.
    Run { time: DateTime<Utc> },
    /// Undo the last applied change of a campaign's entity.
    Revert {
        campaign: String,
        entity: Option<String>,
        /// Revert even if the platform's bid is no longer the one the last change set.
        force: bool,
    },
    /// Read every account's campaigns of `day` for the data lake.
    DailyExtract { day: NaiveDate },
}

/// An invocation that failed as a whole (a campaign's failure is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("unrecognised payload: {0}")]
    BadPayload(String),
    #[error(transparent)]
    Revert(#[from] RevertError),
    #[error("report could not be serialized: {0}")]
    Report(String),
    /// Some accounts' daily reports failed (the others' rows were emitted); a re-run of the day is safe.
    #[error("daily extract of {day}: {failed} account report(s) failed: {reasons}")]
    Extract {
        day: NaiveDate,
        failed: usize,
        reasons: String,
        class: ErrorClass,
    },
}

impl Retryable for HandlerError {
    fn class(&self) -> ErrorClass {
        match self {
            HandlerError::Revert(e) => e.class(),
            HandlerError::Extract { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.class().as_str().to_string(),
            error_message: e.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Manual {
    Run {
        #[serde(default)]
        time: Option<DateTime<Utc>>,
    },
    Revert {
        campaign: String,
        #[serde(default)]
        entity: Option<String>,
        #[serde(default)]
        force: bool,
    },
    DailyExtract {
        #[serde(default)]
        date: Option<NaiveDate>,
    },
}

/// Reads the payload: a manual action, or an EventBridge scheduled event.
pub fn parse(payload: Value, now: DateTime<Utc>) -> Result<Invocation, HandlerError> {
    if payload.get("action").is_some() {
        let manual: Manual =
            serde_json::from_value(payload).map_err(|e| HandlerError::BadPayload(e.to_string()))?;
        return Ok(match manual {
            Manual::Run { time } => Invocation::Run {
                time: time.unwrap_or(now),
            },
            Manual::Revert {
                campaign,
                entity,
                force,
            } => Invocation::Revert {
                campaign,
                entity,
                force,
            },
            Manual::DailyExtract { date } => {
                let today = now.date_naive();
                let day = date.unwrap_or(today - chrono::Days::new(1));
                if day > today {
                    return Err(HandlerError::BadPayload(
                        "daily_extract: date is in the future".into(),
                    ));
                }
                Invocation::DailyExtract { day }
            }
        });
    }
    let event: EventBridgeEvent<Value> = serde_json::from_value(payload).map_err(|e| {
        HandlerError::BadPayload(format!("neither an action nor an EventBridge event: {e}"))
    })?;
    if event.detail_type != "Scheduled Event" {
        return Err(HandlerError::BadPayload(format!(
            "EventBridge detail-type {:?} is not a Scheduled Event",
            event.detail_type
        )));
    }
    Ok(Invocation::Run {
        time: event.time.unwrap_or(now),
    })
}

/// Emits the run's EMF metrics: failures drive the template's alarm.
fn emit_metrics(report: &RunReport) {
    let c = report.counts;
    fluxo::observability::count(NAMESPACE, FUNCTION, "CampaignsFailed", c.failed as u64);
    fluxo::observability::count(NAMESPACE, FUNCTION, "BidChangesApplied", c.applied as u64);
    let notification_failed = matches!(report.notification, NotificationStatus::Failed { .. });
    fluxo::observability::count(
        NAMESPACE,
        FUNCTION,
        "NotificationsFailed",
        u64::from(notification_failed),
    );
    fluxo::observability::count(
        NAMESPACE,
        FUNCTION,
        "JournalWritesFailed",
        report.journal_errors.len() as u64,
    );
}

/// Stop starting platform calls this long before the invocation's deadline (or a quarter of the time left,
/// if less), so that in-flight calls, the journal and the notification finish in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// How long a run may keep starting platform calls, given the time left in the invocation.
pub fn stop_after(left: Duration) -> Duration {
    left.saturating_sub(DEADLINE_MARGIN.min(left / 4))
}

/// Handles one invocation and returns the report as JSON.
pub async fn handle<P, S, N>(
    engine: &Engine<P, S, N>,
    payload: Value,
    clock: &dyn Clock,
) -> Result<Value, HandlerError>
where
    P: AdPlatforms + DailyReports,
    S: OptimizerStore,
    N: Notifier,
{
    handle_until(engine, payload, clock, None).await
}

/// [`handle`] within the invocation's time: `deadline_ms` is the Lambda context's deadline (Unix ms).
pub async fn handle_until<P, S, N>(
    engine: &Engine<P, S, N>,
    payload: Value,
    clock: &dyn Clock,
    deadline_ms: Option<u64>,
) -> Result<Value, HandlerError>
where
    P: AdPlatforms + DailyReports,
    S: OptimizerStore,
    N: Notifier,
{
    let now = clock.now();
    let left_ms = deadline_ms.map(|ms| {
        i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(now.timestamp_millis())
    });
    tracing::info!(deadline_ms, left_ms, "optimizer invocation");
    // A deadline less than a second away at the start is not a real limit: `cargo lambda watch` sends
    // its timeout (e.g. 600000) instead of a Unix time. Lambda's shortest timeout is one second.
    let deadline = left_ms
        .filter(|left| *left >= 1_000)
        .map(|left| Instant::now() + stop_after(Duration::from_millis(left.unsigned_abs())));
    let report = match parse(payload, now)? {
        Invocation::Run { time } => engine.run_until(time, deadline).await,
        Invocation::Revert {
            campaign,
            entity,
            force,
        } => engine.revert(&campaign, entity.as_deref(), force).await?,
        Invocation::DailyExtract { day } => return daily_extract(engine, day, now).await,
    };
    emit_metrics(&report);
    // Analytics (issue 12): each campaign's metrics and each journal entry, for the data lake.
    let lookback = |id: &str| {
        engine
            .campaigns()
            .iter()
            .find(|c| c.id == id)
            .map_or(1, |c| c.lookback_days)
    };
    fluxo::analytics::emit(fluxo::analytics::records::of_run(
        &report.outcomes,
        lookback,
    ));
    fluxo::analytics::flush().await;
    serde_json::to_value(&report).map_err(|e| HandlerError::Report(e.to_string()))
}

/// The daily extract: every account's report of `day`, emitted as `ad_metrics` records and flushed. Fails
/// (after emitting the rows that were read) when an account's report failed, so that the function's
/// Errors alarm shows it; running the same day again is safe.
async fn daily_extract<P, S, N>(
    engine: &Engine<P, S, N>,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Value, HandlerError>
where
    P: AdPlatforms + DailyReports,
    S: OptimizerStore,
    N: Notifier,
{
    let (report, records) = extract::run(engine.platforms(), engine.campaigns(), day, now).await;
    fluxo::analytics::emit(records);
    fluxo::analytics::flush().await;
    let failures: Vec<_> = report.failures().collect();
    fluxo::observability::count(NAMESPACE, FUNCTION, "DailyExtractRows", report.rows as u64);
    fluxo::observability::count(
        NAMESPACE,
        FUNCTION,
        "DailyExtractAccountsFailed",
        failures.len() as u64,
    );
    if !failures.is_empty() {
        let class = if failures
            .iter()
            .all(|f| f.error_class == Some(ErrorClass::Retryable.as_str()))
        {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        };
        let reasons = failures
            .iter()
            .map(|f| {
                format!(
                    "{} {}: {}",
                    f.platform,
                    f.account,
                    f.reason.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HandlerError::Extract {
            day,
            failed: failures.len(),
            reasons,
            class,
        });
    }
    serde_json::to_value(&report).map_err(|e| HandlerError::Report(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 20, 17, 3).unwrap()
    }

    #[test]
    fn a_scheduled_event_runs_for_its_time() {
        let event = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-27T20:00:12Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/fluxo-hourly"], "detail": {}
        });
        assert_eq!(
            parse(event, now()).unwrap(),
            Invocation::Run {
                time: Utc.with_ymd_and_hms(2026, 11, 27, 20, 0, 12).unwrap()
            }
        );
    }

    #[test]
    fn other_eventbridge_events_are_refused() {
        let event = json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}});
        assert!(matches!(
            parse(event, now()),
            Err(HandlerError::BadPayload(_))
        ));
    }

    #[test]
    fn a_revert_payload_names_the_campaign_and_optionally_the_entity() {
        let p = json!({"action": "revert", "campaign": "brand-search", "entity": "555"});
        assert_eq!(
            parse(p, now()).unwrap(),
            Invocation::Revert {
                campaign: "brand-search".into(),
                entity: Some("555".into()),
                force: false
            }
        );
        let p = json!({"action": "revert", "campaign": "brand-search"});
        assert_eq!(
            parse(p, now()).unwrap(),
            Invocation::Revert {
                campaign: "brand-search".into(),
                entity: None,
                force: false
            }
        );
    }

    #[test]
    fn a_revert_payload_may_force_past_a_hand_changed_bid() {
        let p = json!({"action": "revert", "campaign": "brand-search", "force": true});
        assert_eq!(
            parse(p, now()).unwrap(),
            Invocation::Revert {
                campaign: "brand-search".into(),
                entity: None,
                force: true
            }
        );
        let p = json!({"action": "revert", "campaign": "brand-search", "force": "yes"});
        assert!(parse(p, now()).is_err());
    }

    #[test]
    fn a_manual_run_defaults_to_now() {
        assert_eq!(
            parse(json!({"action": "run"}), now()).unwrap(),
            Invocation::Run { time: now() }
        );
    }

    #[test]
    fn unknown_actions_and_fields_are_refused() {
        assert!(parse(json!({"action": "explode"}), now()).is_err());
        assert!(parse(json!({"action": "revert"}), now()).is_err());
        assert!(
            parse(
                json!({"action": "revert", "campaign": "x", "extra": 1}),
                now()
            )
            .is_err()
        );
        assert!(parse(json!([1, 2]), now()).is_err());
    }

    #[test]
    fn a_daily_extract_defaults_to_yesterday_and_refuses_the_future() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(
            parse(json!({"action": "daily_extract"}), now()).unwrap(),
            Invocation::DailyExtract { day: day(26) }
        );
        assert_eq!(
            parse(
                json!({"action": "daily_extract", "date": "2026-11-20"}),
                now()
            )
            .unwrap(),
            Invocation::DailyExtract { day: day(20) }
        );
        assert!(
            parse(
                json!({"action": "daily_extract", "date": "2026-11-28"}),
                now()
            )
            .is_err()
        );
        assert!(
            parse(
                json!({"action": "daily_extract", "date": "yesterday"}),
                now()
            )
            .is_err()
        );
        assert!(parse(json!({"action": "daily_extract", "days": 2}), now()).is_err());
    }

    #[test]
    fn the_run_stops_starting_calls_before_the_deadline() {
        assert_eq!(
            stop_after(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(stop_after(Duration::from_secs(20)), Duration::from_secs(15));
        assert_eq!(stop_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn errors_are_classified_for_the_lambda_diagnostic() {
        let d: Diagnostic = HandlerError::BadPayload("x".into()).into();
        assert_eq!(d.error_type, "NonRetryable");
    }
}
