//! The engine's unit tests, over an in-memory store and a fake platform.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::TimeZone;

use fluxo::error::ErrorClass;
use fluxo::optimizer::memory::MemoryStore;
use fluxo::optimizer::ports::{
    Change, ChangeRecord, ChangeStatus, Claim, Delivery, EntryKind, NotifyError, Observation,
    OutcomeKind, PlatformError, RunSummary, Window,
};
use fluxo::optimizer::{
    Campaign, EntityKind, GenericEndpoints, Guardrails, Metrics, Mode, Platform,
};
use fluxo::testing::{Counter, FixedClock};

use super::*;

/// What the fake platform's next apply does instead of answering plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// Makes the change, then times out.
    TimeoutAfterApplying,
    /// Times out without making the change.
    TimeoutWithoutApplying,
}

/// A platform with a bid per entity; metrics per campaign; some campaigns fail.
#[derive(Default)]
struct FakePlatforms {
    metrics: HashMap<String, Metrics>,
    bids: Mutex<HashMap<String, i64>>,
    down: Vec<String>,
    applied: Mutex<Vec<(String, Change, bool)>>,
    /// A bid the strategy does not let the optimizer move, and why.
    fixed: Option<String>,
    trouble: Mutex<Option<Trouble>>,
    /// Yield once inside apply, so that concurrent operations interleave there.
    yield_in_apply: bool,
}

impl AdPlatforms for FakePlatforms {
    async fn fetch(&self, c: &Campaign, _w: Window) -> Result<Observation, PlatformError> {
        if self.down.contains(&c.id) {
            return Err(PlatformError {
                platform: "generic",
                class: ErrorClass::Retryable,
                reason: "HTTP 503".into(),
            });
        }
        Ok(Observation {
            bid_fixed: self.fixed.clone(),
            ..Observation::plain(
                self.metrics.get(&c.id).copied().unwrap_or_default(),
                self.bids.lock().unwrap().get(&c.entity_id).copied(),
                false,
            )
        })
    }
    async fn apply(
        &self,
        c: &Campaign,
        change: Change,
        validate_only: bool,
        _k: &str,
        _strategy: Option<&str>,
    ) -> Result<(), PlatformError> {
        if self.yield_in_apply {
            tokio::task::yield_now().await;
        }
        self.applied
            .lock()
            .unwrap()
            .push((c.id.clone(), change, validate_only));
        let trouble = self.trouble.lock().unwrap().take();
        if let (Change::SetBid { to_micros, .. }, false) = (change, validate_only)
            && trouble != Some(Trouble::TimeoutWithoutApplying)
        {
            self.bids
                .lock()
                .unwrap()
                .insert(c.entity_id.clone(), to_micros);
        }
        match trouble {
            Some(_) => Err(PlatformError {
                platform: "generic",
                class: ErrorClass::Retryable,
                reason: "timed out".into(),
            }),
            None => Ok(()),
        }
    }
    fn supports_validate_only(&self, _c: &Campaign) -> bool {
        true
    }
}

struct Preview;
impl Notifier for Preview {
    async fn notify(&self, _s: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
        Ok(Delivery::Sent(1))
    }
}

struct FailingNotifier;
impl Notifier for FailingNotifier {
    async fn notify(&self, _s: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
        Err(NotifyError {
            class: ErrorClass::Retryable,
            reason: "slack down".into(),
        })
    }
}

fn campaign(id: &str, mode: Mode) -> Campaign {
    Campaign {
        id: id.into(),
        platform: Platform::Generic,
        account: "acc".into(),
        entity_kind: EntityKind::Campaign,
        entity_id: format!("e-{id}"),
        currency: "USD".into(),
        target_cpa_micros: Some(4_000_000),
        mode,
        guardrails: Guardrails::article_defaults("USD"),
        lookback_days: 7,
        initial_bid_micros: None,
        conversion_action_types: vec![],
        generic: Some(GenericEndpoints {
            metrics_url: "http://x/m".into(),
            bid_url: "http://x/b".into(),
        }),
    }
}

fn article() -> Metrics {
    Metrics {
        spend_micros: 50_000_000,
        conversions_milli: 10_000,
        clicks: 100,
        cpc_micros: Some(500_000),
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
}

fn engine<N: Notifier>(
    platforms: FakePlatforms,
    campaigns: Vec<Campaign>,
    settings: EngineSettings,
    notifier: N,
    now: DateTime<Utc>,
) -> Engine<FakePlatforms, MemoryStore, N> {
    Engine::new(
        platforms,
        MemoryStore::default(),
        notifier,
        Arc::new(FixedClock::at(now)),
        Arc::new(Counter::new()),
        campaigns,
        settings,
        "cfg123".into(),
    )
}

fn platforms(ids: &[&str]) -> FakePlatforms {
    let p = FakePlatforms::default();
    let mut p = FakePlatforms {
        metrics: ids.iter().map(|i| (i.to_string(), article())).collect(),
        ..p
    };
    p.bids = Mutex::new(ids.iter().map(|i| (format!("e-{i}"), 1_000_000)).collect());
    p
}

#[tokio::test]
async fn an_applied_change_is_journaled_with_the_rule_and_the_bids() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.run_id, "2026-11-27T20:00:00Z");
    assert_eq!(report.counts.applied, 1);
    let entry = &report.outcomes[0];
    assert_eq!(entry.rule.as_deref(), Some("cpa_above_target"));
    assert_eq!(
        (entry.bid_before_micros, entry.bid_after_micros),
        (Some(1_000_000), Some(900_000))
    );
    assert_eq!(entry.config_version, "cfg123");
    assert_eq!(e.store().journal().len(), 1);
    assert_eq!(e.store().snapshots().len(), 1);
    assert_eq!(
        report.notification,
        NotificationStatus::Sent { messages: 1 }
    );
}

#[tokio::test]
async fn a_second_invocation_for_the_same_hour_changes_nothing_twice() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 5),
    );
    e.run(at(20, 0)).await;
    let again = e.run(at(20, 0)).await;
    assert_eq!(again.counts.applied, 0);
    assert_eq!(again.outcomes[0].outcome, OutcomeKind::Skipped);
    assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
}

#[tokio::test]
async fn the_per_entity_claim_stops_a_double_change_even_without_a_cooldown() {
    let mut c = campaign("a", Mode::Apply);
    c.guardrails.cooldown_hours = 0;
    let e = engine(
        platforms(&["a"]),
        vec![c],
        EngineSettings::default(),
        Preview,
        at(20, 5),
    );
    e.run(at(20, 0)).await;
    let again = e.run(at(20, 30)).await;
    assert_eq!(again.outcomes[0].outcome, OutcomeKind::Skipped);
    assert!(
        again.outcomes[0].reason.contains("already applied"),
        "{}",
        again.outcomes[0].reason
    );
    assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_next_hour_may_change_again() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(21, 0),
    );
    e.run(at(20, 0)).await;
    let next = e.run(at(21, 0)).await;
    assert_eq!(next.counts.applied, 1);
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 810_000);
}

#[tokio::test]
async fn one_failing_campaign_never_stops_the_others() {
    let mut p = platforms(&["a", "b", "c"]);
    p.down = vec!["b".into()];
    let campaigns = vec![
        campaign("a", Mode::Apply),
        campaign("b", Mode::Apply),
        campaign("c", Mode::Apply),
    ];
    let e = engine(p, campaigns, EngineSettings::default(), Preview, at(20, 0));
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.counts.applied, 2);
    assert_eq!(report.counts.failed, 1);
    assert!(report.outcomes[1].reason.contains("HTTP 503"));
    assert_eq!(report.outcomes.len(), 3);
}

#[tokio::test]
async fn dry_runs_validate_with_the_platform_and_change_nothing() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::DryRun)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.counts.dry_run, 1);
    assert!(e.platforms.applied.lock().unwrap()[0].2);
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
}

#[tokio::test]
async fn notify_only_never_calls_the_platform() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::NotifyOnly)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.counts.notify_only, 1);
    assert!(e.platforms.applied.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_per_run_cap_skips_the_least_urgent_changes() {
    let mut p = platforms(&["a", "b"]);
    p.metrics.insert(
        "b".into(),
        Metrics {
            spend_micros: 90_000_000,
            ..article()
        },
    );
    let settings = EngineSettings {
        max_changes_per_run: Some(1),
        ..EngineSettings::default()
    };
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply), campaign("b", Mode::Apply)],
        settings,
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.outcomes[1].outcome, OutcomeKind::Applied);
    assert_eq!(report.outcomes[0].outcome, OutcomeKind::Skipped);
    assert!(report.outcomes[0].reason.contains("per-run change cap (1)"));
}

#[tokio::test]
async fn nothing_is_sent_when_nothing_happened_unless_configured() {
    let mut p = platforms(&["a"]);
    p.metrics.insert(
        "a".into(),
        Metrics {
            spend_micros: 40_000_000,
            ..article()
        },
    );
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.counts.unchanged, 1);
    assert_eq!(report.notification, NotificationStatus::NotNeeded);

    let mut p = platforms(&["a"]);
    p.metrics.insert(
        "a".into(),
        Metrics {
            spend_micros: 40_000_000,
            ..article()
        },
    );
    let settings = EngineSettings {
        notify_when_idle: true,
        ..EngineSettings::default()
    };
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply)],
        settings,
        Preview,
        at(20, 0),
    );
    assert_eq!(
        e.run(at(20, 0)).await.notification,
        NotificationStatus::Sent { messages: 1 }
    );
}

#[tokio::test]
async fn a_failed_notification_is_reported_not_fatal() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        FailingNotifier,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.counts.applied, 1);
    assert!(matches!(
        report.notification,
        NotificationStatus::Failed { .. }
    ));
}

#[tokio::test]
async fn revert_restores_the_previous_bid_and_is_journaled() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 10),
    );
    e.run(at(20, 0)).await;
    let report = e.revert("a", None, false).await.unwrap();
    assert_eq!(report.kind, EntryKind::Revert);
    assert_eq!(report.outcomes[0].outcome, OutcomeKind::Applied);
    assert_eq!(report.outcomes[0].rule.as_deref(), Some("revert"));
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    assert_eq!(e.store().journal().len(), 2);
    // Reverting the revert redoes the change.
    let redo = e.revert("a", None, false).await.unwrap();
    assert_eq!(redo.outcomes[0].outcome, OutcomeKind::Applied);
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
    assert_eq!(
        (
            redo.outcomes[0].bid_before_micros,
            redo.outcomes[0].bid_after_micros
        ),
        (Some(1_000_000), Some(900_000))
    );
}

#[tokio::test]
async fn the_same_revert_twice_is_refused() {
    let mut p = platforms(&["a"]);
    p.yield_in_apply = true;
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 10),
    );
    e.run(at(20, 0)).await;
    // Two reverts of the same change at once (two operators, or a retried invocation).
    let (first, second) = tokio::join!(e.revert("a", None, false), e.revert("a", None, false));
    let (ok, refused) = match (first, second) {
        (Ok(ok), Err(refused)) | (Err(refused), Ok(ok)) => (ok, refused),
        other => panic!("exactly one revert must go ahead: {other:?}"),
    };
    assert_eq!(ok.outcomes[0].outcome, OutcomeKind::Applied);
    assert!(
        matches!(
            refused,
            RevertError::AlreadyReverted(_, "pending") | RevertError::Conflict(..)
        ),
        "{refused}"
    );
    let reverts = e
        .platforms
        .applied
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c, _)| {
            matches!(
                c,
                Change::SetBid {
                    to_micros: 1_000_000,
                    ..
                }
            )
        })
        .count();
    assert_eq!(reverts, 1, "the platform saw one revert");
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
}

#[tokio::test]
async fn revert_refuses_a_bid_changed_by_hand_unless_forced() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 10),
    );
    e.run(at(20, 0)).await;
    // Someone sets 1.50 by hand after the optimizer set 0.90.
    e.platforms
        .bids
        .lock()
        .unwrap()
        .insert("e-a".into(), 1_500_000);
    let refused = e.revert("a", None, false).await.unwrap_err();
    assert!(
        matches!(&refused, RevertError::ChangedOnPlatform { reason, .. }
            if reason.contains("1.50 USD") && reason.contains("0.90 USD")),
        "{refused}"
    );
    assert!(refused.to_string().contains("--force"), "{refused}");
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_500_000);

    let forced = e.revert("a", None, true).await.unwrap();
    let entry = &forced.outcomes[0];
    assert_eq!(entry.outcome, OutcomeKind::Applied);
    assert!(entry.reason.contains("forced"), "{}", entry.reason);
    assert_eq!(
        entry.change,
        Some(Change::SetBid {
            from_micros: 1_500_000,
            to_micros: 1_000_000
        })
    );
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
}

#[tokio::test]
async fn revert_holds_the_restored_bid_within_min_and_max_bid() {
    let mut c = campaign("a", Mode::Apply);
    let e = engine(
        platforms(&["a"]),
        vec![c.clone()],
        EngineSettings::default(),
        Preview,
        at(20, 10),
    );
    e.run(at(20, 0)).await;
    // The config now caps bids at 0.95: the revert restores 0.95, not 1.00.
    c.guardrails.max_bid_micros = Some(950_000);
    let e = Engine {
        campaigns: vec![c],
        ..e
    };
    let report = e.revert("a", None, false).await.unwrap();
    assert_eq!(report.outcomes[0].bid_after_micros, Some(950_000));
    assert!(
        report.outcomes[0].reason.contains("above max_bid"),
        "{}",
        report.outcomes[0].reason
    );
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 950_000);
}

#[tokio::test]
async fn revert_takes_the_entitys_lock_and_waits_for_a_change_in_flight() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(21, 5),
    );
    e.run(at(20, 0)).await;
    // The 21:00 run claims its change and is still making it.
    let record = ChangeRecord {
        entity_key: campaign("a", Mode::Apply).entity_key(),
        claim_id: "2026-11-27T21:00:00Z".into(),
        campaign_id: "a".into(),
        run_hour: at(21, 0),
        change: Change::SetBid {
            from_micros: 900_000,
            to_micros: 810_000,
        },
        bid_before_micros: 900_000,
        bid_after_micros: 810_000,
        at: at(21, 0),
    };
    let claim = e
        .store()
        .claim_change(&record, Some("2026-11-27T20:00:00Z"), at(21, 15))
        .await
        .unwrap();
    assert_eq!(claim, Claim::Claimed);
    let refused = e.revert("a", None, false).await.unwrap_err();
    assert!(
        matches!(&refused, RevertError::Conflict(_, why) if why.contains("2026-11-27T21:00:00Z")),
        "{refused}"
    );
    assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn revert_refuses_unknown_campaigns_and_entities_and_empty_history() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    assert!(matches!(
        e.revert("zzz", None, false).await,
        Err(RevertError::UnknownCampaign(_))
    ));
    assert!(matches!(
        e.revert("a", Some("other"), false).await,
        Err(RevertError::EntityMismatch { .. })
    ));
    assert!(matches!(
        e.revert("a", None, false).await,
        Err(RevertError::NothingToRevert(_))
    ));
}

#[tokio::test]
async fn campaigns_past_the_deadline_are_skipped_and_journaled() {
    let e = engine(
        platforms(&["a", "b"]),
        vec![campaign("a", Mode::Apply), campaign("b", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run_until(at(20, 0), Some(Instant::now())).await;
    assert_eq!(report.counts.skipped, 2);
    assert_eq!(report.outcomes[0].reason, OUT_OF_TIME);
    assert_eq!(e.store().journal().len(), 2);
    assert!(e.platforms.applied.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_applied_change_is_recorded_with_its_journal_entry_and_latest_together() {
    let e = engine(
        platforms(&["a"]),
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    e.store().fail_next_records(1);
    let report = e.run(at(20, 0)).await;
    // The record failed: the entry says so and the change stays claimed (no half-written LATEST).
    let entry = &report.outcomes[0];
    assert_eq!(entry.outcome, OutcomeKind::Applied);
    assert!(
        entry.reason.contains("recording the outcome failed"),
        "{}",
        entry.reason
    );
    let state = e
        .store()
        .entity_state(&campaign("a", Mode::Apply).entity_key())
        .await
        .unwrap();
    assert_eq!(state.latest, None);
    assert_eq!(
        state.pending.map(|p| p.record.claim_id).as_deref(),
        Some("2026-11-27T20:00:00Z")
    );
}

#[tokio::test]
async fn a_change_left_unrecorded_is_read_back_and_keeps_its_cooldown_and_its_revert() {
    let mut c = campaign("a", Mode::Apply);
    c.guardrails.cooldown_hours = 2;
    let e = engine(
        platforms(&["a"]),
        vec![c],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    // The 20:00 run applies 1.00 -> 0.90 but its record is lost (a crash, a failed write).
    e.store().fail_next_records(1);
    e.run(at(20, 0)).await;
    let e = Engine {
        clock: Arc::new(FixedClock::at(at(21, 0))),
        ..e
    };
    // 21:00, the lease over: the platform shows 0.90, so the change is recorded as applied, and the
    // two-hour cooldown holds (the old code skipped it and reduced again).
    let next = e.run(at(21, 0)).await;
    assert_eq!(
        next.outcomes[0].rule.as_deref(),
        Some("cooldown"),
        "{:?}",
        next.outcomes[0]
    );
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
    let resolved = e
        .store()
        .journal()
        .into_iter()
        .find(|j| j.rule.as_deref() == Some(RESOLVED))
        .expect("the resolution is journaled");
    assert_eq!(resolved.outcome, OutcomeKind::Applied);
    assert_eq!(resolved.run_id, "2026-11-27T20:00:00Z");
    // And the revert restores the bid before that change, 1.00.
    e.revert("a", None, false).await.unwrap();
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
}

#[tokio::test]
async fn a_timeout_that_in_fact_applied_is_recorded_as_applied() {
    let p = platforms(&["a"]);
    *p.trouble.lock().unwrap() = Some(Trouble::TimeoutAfterApplying);
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 10),
    );
    let report = e.run(at(20, 0)).await;
    let entry = &report.outcomes[0];
    assert_eq!(entry.outcome, OutcomeKind::Applied, "{}", entry.reason);
    assert!(
        entry.reason.contains("reading the entity back shows"),
        "{}",
        entry.reason
    );
    let state = e
        .store()
        .entity_state(&campaign("a", Mode::Apply).entity_key())
        .await
        .unwrap();
    assert_eq!(state.latest.map(|l| l.bid_after_micros), Some(900_000));
    assert_eq!(state.pending, None);
    e.revert("a", None, false).await.unwrap();
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
}

#[tokio::test]
async fn a_timeout_that_did_not_apply_stays_claimed_until_the_next_run_reads_it_back() {
    let p = platforms(&["a"]);
    *p.trouble.lock().unwrap() = Some(Trouble::TimeoutWithoutApplying);
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply)],
        EngineSettings::default(),
        Preview,
        at(20, 5),
    );
    let report = e.run(at(20, 0)).await;
    assert_eq!(report.outcomes[0].outcome, OutcomeKind::Failed);
    assert!(report.outcomes[0].reason.contains("stays claimed"));
    // A retry within the lease leaves the entity alone.
    let retry = e.run(at(20, 0)).await;
    assert_eq!(retry.outcomes[0].outcome, OutcomeKind::Skipped);
    assert!(
        retry.outcomes[0].reason.contains("another invocation"),
        "{}",
        retry.outcomes[0].reason
    );
    // The next hour: the platform still shows 1.00, so 20:00 is recorded as not applied, and the
    // 21:00 run changes the bid from what the platform really has.
    let e = Engine {
        clock: Arc::new(FixedClock::at(at(21, 0))),
        ..e
    };
    let next = e.run(at(21, 0)).await;
    assert_eq!(
        next.outcomes[0].outcome,
        OutcomeKind::Applied,
        "{}",
        next.outcomes[0].reason
    );
    assert_eq!(next.outcomes[0].bid_before_micros, Some(1_000_000));
    assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
    assert_eq!(
        e.store().change_status(
            &campaign("a", Mode::Apply).entity_key(),
            "2026-11-27T20:00:00Z"
        ),
        Some(ChangeStatus::Failed)
    );
}

#[tokio::test]
async fn a_bid_change_the_strategy_ignores_is_skipped_and_never_sent() {
    let mut p = platforms(&["a", "b"]);
    p.fixed = Some("the campaign bids with TARGET_ROAS".into());
    let e = engine(
        p,
        vec![campaign("a", Mode::Apply), campaign("b", Mode::DryRun)],
        EngineSettings::default(),
        Preview,
        at(20, 0),
    );
    let report = e.run(at(20, 0)).await;
    for entry in &report.outcomes {
        assert_eq!(entry.outcome, OutcomeKind::Skipped);
        assert!(
            entry
                .reason
                .contains("not sent: the campaign bids with TARGET_ROAS"),
            "{}",
            entry.reason
        );
    }
    assert!(e.platforms.applied.lock().unwrap().is_empty());
}

#[test]
fn the_run_id_is_the_scheduled_time_truncated_to_the_hour() {
    let t = Utc.with_ymd_and_hms(2026, 11, 27, 20, 59, 59).unwrap();
    assert_eq!(run_id_of(run_hour_of(t)), "2026-11-27T20:00:00Z");
}
