//! The use case: one batch of audience messages becomes a few platform calls, once per person x
//! audience.
//!
//! 1. Parse every message (`audience.add`, `audience.remove`) and read the people's current profiles in
//!    batches (names, country, and the latest consent: a withdrawal that came after the add wins).
//! 2. Turn messages into intents, one per person x platform audience: add (consent granted), skip
//!    (`no_consent`), or remove (a removal covers every audience the ledger says Fluxo added the person
//!    to). Duplicates collapse; the latest message wins.
//! 3. Read the ledger records of those keys in batches and decide each intent against its record; claim
//!    the ones to perform (conditional writes on the version read, 100 per transaction).
//! 4. Group the claimed intents by platform audience and operation, and send each group in as few
//!    requests as the platform takes (Meta: 10,000 rows; Google: one job).
//! 5. Complete the ledger in batches; release the claims of retryable failures and report their
//!    messages, which SQS redelivers (a long platform throttle is such a failure: it waits on the queue).
//!
//! Google jobs created by earlier runs are checked first; a failed one is logged, counted and recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fluxo::analytics::{Destination as AnalyticsDestination, EffectOutcome, EffectRecord};
use fluxo::audience::ports::{
    ClaimWrite, JobRecord, Membership, MembershipLedger, ProfileSnapshots, RunRecord, State,
};
use fluxo::audience::{
    AudienceConnector, ConsentStatus, Destination, JobStatus, Mode, Op, Person, PlatformAudience,
};
use fluxo::config::audience::{AudienceSyncConfig, ConsentRule};
use fluxo::connector::Deadline;
use fluxo::error::{ErrorClass, Retryable};
use fluxo::ports::Clock;
use fluxo::routing::Profile;
use fluxo::routing::fanout::{AUDIENCE_ADD, AUDIENCE_REMOVE, AudienceAction};
use futures_util::StreamExt;

/// Function name in metrics.
const FUNCTION: &str = "audience-sync";
/// Why a person is not added.
pub const NO_CONSENT: &str = "no_consent";

/// One SQS record.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: Option<String>,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Ids of the messages SQS should redeliver.
    pub failed: Vec<String>,
    /// Memberships added (or, in dry-run, recorded as requests).
    pub added: usize,
    pub removed: usize,
    /// Recorded `skipped: no_consent`.
    pub skipped_no_consent: usize,
    /// Already in the wanted state, or superseded by a later message.
    pub unchanged: usize,
    /// Refused by the platform for good (recorded `failed`).
    pub refused: usize,
    /// Platform HTTP calls.
    pub calls: u32,
    /// Google jobs of earlier runs found failed.
    pub jobs_failed: usize,
}

/// What a person x audience should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Add,
    /// Not added: `no_consent`.
    Skip,
    Remove,
}

/// What to do about one intent, given its ledger record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim it and call the platform.
    Perform,
    /// Claim it by writing this final state, no call (a skip, a removal tombstone).
    Record(State),
    /// Nothing to do (why).
    Nothing(&'static str),
    /// Another delivery holds it: retry later.
    Busy,
}

/// Decides an intent against its record (pure).
pub fn decide(
    want: Want,
    event_at: DateTime<Utc>,
    mode: Mode,
    current: Option<&Membership>,
    now_ms: i64,
) -> Decision {
    let Some(m) = current else {
        return match want {
            Want::Add => Decision::Perform,
            Want::Skip => Decision::Record(State::Skipped),
            Want::Remove => Decision::Record(State::Removed),
        };
    };
    if m.state == State::Pending {
        if m.lease_until_ms > now_ms {
            return Decision::Busy;
        }
        // An abandoned claim: whether its call happened is unknown. Adds and removes are harmless to
        // repeat, so perform what is wanted now.
        return match want {
            Want::Skip => Decision::Record(State::Skipped),
            _ => Decision::Perform,
        };
    }
    match want {
        Want::Add => match m.state {
            State::Added if !m.dry_run || mode == Mode::DryRun => {
                Decision::Nothing("already added")
            }
            State::Removed | State::Failed if event_at <= m.event_at => {
                Decision::Nothing("superseded by a later removal or refusal")
            }
            _ => Decision::Perform,
        },
        Want::Skip => match m.state {
            State::Skipped => Decision::Nothing("already skipped"),
            State::Added | State::Removed | State::Failed => {
                Decision::Nothing("a skip does not change a settled membership")
            }
            State::Pending => Decision::Record(State::Skipped),
        },
        Want::Remove => match m.state {
            State::Added => Decision::Perform,
            State::Removed if event_at <= m.event_at => Decision::Nothing("already removed"),
            _ => Decision::Record(State::Removed),
        },
    }
}

/// The person's consent as the configured rule reads it: the profile's latest answer, else the
/// message's snapshot.
pub fn consent_of(
    rule: &ConsentRule,
    profile: Option<&Profile>,
    action: &AudienceAction,
) -> ConsentStatus {
    match (rule, profile) {
        (ConsentRule::Marketing, Some(p)) => match p.consent() {
            Some(c) if c.granted => ConsentStatus::Granted,
            Some(_) => ConsentStatus::Denied,
            None => ConsentStatus::Unspecified,
        },
        (ConsentRule::Marketing, None) => match action.header.consent.status.as_str() {
            "granted" => ConsentStatus::Granted,
            "refused" => ConsentStatus::Denied,
            _ => ConsentStatus::Unspecified,
        },
        (ConsentRule::Field(name), Some(p)) => match p.field(name) {
            Some(v) => {
                let v = v.trim().to_lowercase();
                if matches!(v.as_str(), "yes" | "true" | "sim" | "1" | "granted" | "on") {
                    ConsentStatus::Granted
                } else {
                    ConsentStatus::Denied
                }
            }
            None => ConsentStatus::Unspecified,
        },
        (ConsentRule::Field(_), None) => ConsentStatus::Unspecified,
    }
}

fn person_of(action: &AudienceAction, profile: Option<&Profile>, consent: ConsentStatus) -> Person {
    Person {
        profile_key: action.header.profile_key.clone(),
        email: action.header.email.as_str().to_string(),
        phone: profile
            .and_then(|p| p.field("phone"))
            .map(str::to_string)
            .or_else(|| action.phone.clone()),
        first_name: profile
            .and_then(Profile::display_first_name)
            .map(str::to_string),
        last_name: profile
            .and_then(|p| p.field("last_name"))
            .map(str::to_string),
        country: profile.and_then(|p| p.field("country")).map(str::to_string),
        consent,
    }
}

/// One person x platform audience to settle.
#[derive(Debug, Clone)]
struct Intent {
    destination: Destination,
    name: String,
    want: Want,
    person: Person,
    event_at: DateTime<Utc>,
    reason: Option<String>,
    /// The lead of the message that decided it, for the analytics `effects` row.
    lead_id: String,
    /// The messages waiting on it.
    owners: Vec<usize>,
}

impl Intent {
    /// Buffers this intent's `effects` row for the data lake (issue 12): destination `audience`, the
    /// platform as vendor, the audience name as target. Never blocks or fails the sync.
    fn emit(
        &self,
        now: DateTime<Utc>,
        op: Op,
        outcome: EffectOutcome,
        reason: Option<&str>,
        failure: Option<ErrorClass>,
        latency: Option<std::time::Duration>,
    ) {
        let action = match op {
            Op::Add => "add",
            Op::Remove => "remove",
        };
        let mut record = EffectRecord::new(
            now,
            &self.lead_id,
            AnalyticsDestination::Audience,
            Some(&self.name),
            action,
            outcome,
        )
        .vendor(self.destination.audience.platform());
        if let Some(latency) = latency {
            record = record.timing(1, latency);
        }
        record.reason = reason.map(str::to_string);
        record.error_class = failure.map(|c| c.as_str().to_string());
        fluxo::analytics::effect(record);
    }

    fn key(&self) -> (String, String) {
        (
            self.person.profile_key.clone(),
            self.destination.audience.key(),
        )
    }
}

/// The syncer and everything it talks to.
pub struct Syncer<L, C, K> {
    ledger: L,
    connector: C,
    clock: K,
    config: AudienceSyncConfig,
    consent: ConsentRule,
    version: String,
}

/// Runs futures with at most `limit` in flight, keeping their order.
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(futures)
        .buffered(limit.max(1))
        .collect()
        .await
}

impl<L, C, K> Syncer<L, C, K>
where
    L: MembershipLedger + ProfileSnapshots,
    C: AudienceConnector,
    K: Clock,
{
    /// A syncer over its ledger, connector and clock, for one config version.
    pub fn new(
        ledger: L,
        connector: C,
        clock: K,
        config: AudienceSyncConfig,
        version: impl Into<String>,
    ) -> Result<Self, String> {
        let consent = config.consent_rule()?;
        Ok(Syncer {
            ledger,
            connector,
            clock,
            config,
            consent,
            version: version.into(),
        })
    }

    /// The ledger (tests, tools).
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.config.lease_secs)
    }

    /// Runs one batch. The report lists the messages SQS should redeliver.
    pub async fn run(&self, messages: Vec<Message>, deadline: Deadline) -> Report {
        let mut report = Report::default();
        let mut failed: Vec<Option<String>> = vec![None; messages.len()];
        let fail = |failed: &mut Vec<Option<String>>, i: usize, why: String| {
            if failed[i].is_none() {
                failed[i] = Some(why);
            }
        };
        if deadline.passed() {
            report.failed = messages.into_iter().map(|m| m.id).collect();
            return report;
        }
        report.jobs_failed = self.check_jobs(deadline).await;

        // 1. Parse.
        let mut actions: Vec<(usize, AudienceAction)> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let parsed = m
                .body
                .as_deref()
                .ok_or_else(|| "message has no body".to_string())
                .and_then(|b| AudienceAction::from_json(b).map_err(|e| e.to_string()));
            match parsed {
                Ok(a) if a.header.kind == AUDIENCE_ADD || a.header.kind == AUDIENCE_REMOVE => {
                    actions.push((i, a))
                }
                Ok(a) => fail(&mut failed, i, format!("unknown kind {:?}", a.header.kind)),
                Err(e) => fail(&mut failed, i, e),
            }
        }
        let keys: Vec<String> = actions
            .iter()
            .map(|(_, a)| a.header.profile_key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let profiles = match self.ledger.profiles(&keys).await {
            Ok(p) => p,
            Err(e) => return self.all_failed(messages, report, &e.to_string()),
        };

        // 2. Intents.
        let mut removals_of: HashMap<String, Vec<Membership>> = HashMap::new();
        let removers: Vec<String> = actions
            .iter()
            .filter(|(_, a)| a.header.kind == AUDIENCE_REMOVE)
            .map(|(_, a)| a.header.profile_key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let lookups: Vec<_> = removers.iter().map(|k| self.ledger.of_person(k)).collect();
        for (key, found) in removers
            .iter()
            .zip(bounded(lookups, self.config.concurrency).await)
        {
            match found {
                Ok(list) => {
                    removals_of.insert(key.clone(), list);
                }
                Err(e) => {
                    for (i, a) in &actions {
                        if &a.header.profile_key == key {
                            fail(&mut failed, *i, e.to_string());
                        }
                    }
                }
            }
        }
        let mut intents: BTreeMap<(String, String), Intent> = BTreeMap::new();
        for (i, a) in &actions {
            if failed[*i].is_some() {
                continue;
            }
            let profile = profiles.get(&a.header.profile_key);
            let consent = consent_of(&self.consent, profile, a);
            let person = person_of(a, profile, consent);
            let mut wanted: Vec<(Destination, Want)> = Vec::new();
            if a.header.kind == AUDIENCE_ADD {
                let destinations = self.config.destinations(&a.audience);
                if destinations.is_empty() {
                    fail(
                        &mut failed,
                        *i,
                        format!(
                            "audience {:?} is not configured in [audience_sync.audiences]",
                            a.audience
                        ),
                    );
                    continue;
                }
                let want = if consent == ConsentStatus::Granted {
                    Want::Add
                } else {
                    Want::Skip
                };
                wanted.extend(destinations.into_iter().map(|d| (d, want)));
            } else {
                let mut seen = HashSet::new();
                for d in self.config.destinations(&a.audience) {
                    seen.insert(d.audience.key());
                    wanted.push((d, Want::Remove));
                }
                for m in removals_of.get(&a.header.profile_key).into_iter().flatten() {
                    if seen.insert(m.audience.key()) {
                        wanted.push((self.destination_of(&m.audience, m.dry_run), Want::Remove));
                    }
                }
            }
            for (destination, want) in wanted {
                let intent = Intent {
                    destination,
                    name: a.audience.clone(),
                    want,
                    person: person.clone(),
                    event_at: a.header.created_at,
                    reason: a.header.reason.clone(),
                    lead_id: a.header.lead_id.as_str().to_string(),
                    owners: vec![*i],
                };
                match intents.get_mut(&intent.key()) {
                    None => {
                        intents.insert(intent.key(), intent);
                    }
                    Some(existing) => {
                        let newer = intent.event_at > existing.event_at
                            || (intent.event_at == existing.event_at
                                && intent.want == Want::Remove);
                        let mut owners = std::mem::take(&mut existing.owners);
                        owners.push(*i);
                        if newer {
                            *existing = intent;
                        }
                        existing.owners = owners;
                    }
                }
            }
        }
        let intents: Vec<Intent> = intents.into_values().collect();

        // 3. Decide and claim.
        let keys: Vec<(String, String)> = intents.iter().map(Intent::key).collect();
        let current: HashMap<(String, String), Membership> = match self.ledger.load(&keys).await {
            Ok(list) => list
                .into_iter()
                .map(|m| ((m.profile_key.clone(), m.audience.key()), m))
                .collect(),
            Err(e) => return self.all_failed(messages, report, &e.to_string()),
        };
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let lease_until = now_ms + i64::try_from(self.lease().as_millis()).unwrap_or(300_000);
        let mut claims: Vec<ClaimWrite> = Vec::new();
        let mut claimed: Vec<(usize, Decision)> = Vec::new();
        for (n, intent) in intents.iter().enumerate() {
            let before = current.get(&intent.key());
            let decision = decide(
                intent.want,
                intent.event_at,
                intent.destination.mode,
                before,
                now_ms,
            );
            let base = Membership {
                profile_key: intent.person.profile_key.clone(),
                audience: intent.destination.audience.clone(),
                name: intent.name.clone(),
                state: State::Pending,
                op: None,
                version: before.map(|m| m.version + 1).unwrap_or(1),
                lease_until_ms: 0,
                event_at: intent.event_at,
                dry_run: before.is_some_and(|m| m.dry_run),
                reason: None,
                updated_at: now,
            };
            let next = match &decision {
                Decision::Busy => {
                    for o in &intent.owners {
                        fail(
                            &mut failed,
                            *o,
                            "another delivery holds this person x audience".into(),
                        );
                    }
                    continue;
                }
                Decision::Nothing(_) => {
                    report.unchanged += 1;
                    continue;
                }
                Decision::Perform => Membership {
                    op: Some(match intent.want {
                        Want::Remove => Op::Remove,
                        _ => Op::Add,
                    }),
                    lease_until_ms: lease_until,
                    ..base
                },
                Decision::Record(state) => Membership {
                    state: *state,
                    reason: Some(match intent.want {
                        Want::Skip => NO_CONSENT.to_string(),
                        _ => intent
                            .reason
                            .clone()
                            .unwrap_or_else(|| "never added".to_string()),
                    }),
                    ..base
                },
            };
            claims.push(ClaimWrite {
                next,
                expected: before.map(|m| m.version),
            });
            claimed.push((n, decision));
        }
        let won = match self.ledger.claim(&claims).await {
            Ok(w) => w,
            Err(e) => return self.all_failed(messages, report, &e.to_string()),
        };

        // 4. Perform, grouped by destination and operation.
        let mut groups: BTreeMap<(String, Op, bool), Vec<(usize, usize)>> = BTreeMap::new();
        for (c, ((n, decision), won)) in claimed.iter().zip(&won).enumerate() {
            let intent = &intents[*n];
            if !won {
                for o in &intent.owners {
                    fail(
                        &mut failed,
                        *o,
                        "the membership changed under a concurrent delivery".into(),
                    );
                }
                continue;
            }
            match decision {
                Decision::Record(State::Skipped) => {
                    report.skipped_no_consent += 1;
                    let op = if intent.want == Want::Remove {
                        Op::Remove
                    } else {
                        Op::Add
                    };
                    intent.emit(
                        now,
                        op,
                        EffectOutcome::Skipped,
                        Some(NO_CONSENT),
                        None,
                        None,
                    );
                }
                Decision::Record(_) => {
                    report.removed += 1;
                    // A removal of someone never added: nothing to call.
                    intent.emit(
                        now,
                        Op::Remove,
                        EffectOutcome::Skipped,
                        Some("never_added"),
                        None,
                        None,
                    );
                }
                Decision::Perform => {
                    let op = claims[c].next.op.unwrap_or(Op::Add);
                    let dry = intent.destination.mode == Mode::DryRun;
                    groups
                        .entry((intent.destination.audience.key(), op, dry))
                        .or_default()
                        .push((*n, c));
                }
                Decision::Nothing(_) | Decision::Busy => {}
            }
        }
        let calls: Vec<_> = groups
            .iter()
            .map(|((_, op, _), members)| {
                let destination = intents[members[0].0].destination.clone();
                let people: Vec<Person> = members
                    .iter()
                    .map(|(n, _)| intents[*n].person.clone())
                    .collect();
                let op = *op;
                async move {
                    let started = std::time::Instant::now();
                    let result = self
                        .connector
                        .sync(&destination, op, &people, deadline)
                        .await;
                    (destination, op, result, started.elapsed())
                }
            })
            .collect();
        let results = bounded(calls, self.config.concurrency).await;

        // 5. Complete or release.
        let mut finals: Vec<Membership> = Vec::new();
        let mut releases: Vec<(String, String, Option<Membership>)> = Vec::new();
        for (((_, _, _), members), (destination, op, result, latency)) in groups.iter().zip(results)
        {
            match result {
                Ok(upload) => {
                    report.calls += upload.calls;
                    let refused: HashMap<usize, String> = upload
                        .failed
                        .iter()
                        .cloned()
                        .chain(
                            upload
                                .unmatchable
                                .iter()
                                .map(|i| (*i, "no identifier the platform can match".to_string())),
                        )
                        .collect();
                    let unfinished: HashSet<usize> = upload.unfinished.iter().copied().collect();
                    for (k, (n, c)) in members.iter().enumerate() {
                        let intent = &intents[*n];
                        let claim = &claims[*c].next;
                        if unfinished.contains(&k) {
                            let (pk, ak) = intent.key();
                            releases.push((
                                pk.clone(),
                                ak.clone(),
                                current.get(&(pk, ak)).cloned(),
                            ));
                            let why = upload
                                .unfinished_reason
                                .clone()
                                .unwrap_or_else(|| "not sent".to_string());
                            for o in &intent.owners {
                                fail(&mut failed, *o, why.clone());
                            }
                            let retry = Some(ErrorClass::Retryable);
                            intent.emit(
                                now,
                                op,
                                EffectOutcome::Retrying,
                                Some("unfinished"),
                                retry,
                                Some(latency),
                            );
                            continue;
                        }
                        let (state, reason) = match refused.get(&k) {
                            Some(r) => {
                                report.refused += 1;
                                let class = Some(ErrorClass::Permanent);
                                intent.emit(
                                    now,
                                    op,
                                    EffectOutcome::Failed,
                                    Some("refused"),
                                    class,
                                    Some(latency),
                                );
                                (State::Failed, Some(r.clone()))
                            }
                            None if op == Op::Add => {
                                report.added += 1;
                                intent.emit(
                                    now,
                                    op,
                                    EffectOutcome::Done,
                                    None,
                                    None,
                                    Some(latency),
                                );
                                (State::Added, None)
                            }
                            None => {
                                report.removed += 1;
                                intent.emit(
                                    now,
                                    op,
                                    EffectOutcome::Done,
                                    None,
                                    None,
                                    Some(latency),
                                );
                                (State::Removed, intent.reason.clone())
                            }
                        };
                        finals.push(Membership {
                            state,
                            op: None,
                            version: claim.version + 1,
                            lease_until_ms: 0,
                            dry_run: destination.mode == Mode::DryRun,
                            reason,
                            updated_at: now,
                            ..claim.clone()
                        });
                    }
                    let run = RunRecord {
                        audience: destination.audience.clone(),
                        op,
                        at: now,
                        people: members.len() as u64,
                        dry_run: destination.mode == Mode::DryRun,
                        calls: upload.calls,
                        job: upload.job.clone(),
                        num_received: upload.received,
                        num_invalid_entries: upload.invalid,
                        failed: refused.len() as u64,
                        requests: upload.requests,
                        requests_truncated: false,
                    };
                    tracing::info!(
                        audience = %destination.audience.key(),
                        op = op.as_str(),
                        people = members.len(),
                        calls = upload.calls,
                        dry_run = run.dry_run,
                        num_received = upload.received,
                        num_invalid_entries = upload.invalid,
                        refused = refused.len(),
                        job = upload.job.as_deref().unwrap_or(""),
                        "audience synced"
                    );
                    if let Err(e) = self.ledger.record_run(&run).await {
                        tracing::warn!(error = %e, "the sync record could not be written");
                    }
                    if let Some(job) = upload.job {
                        let record = JobRecord {
                            audience: destination.audience.clone(),
                            job,
                            op,
                            people: members.len() as u64,
                            created_at: now,
                            state: "running".into(),
                            reason: None,
                        };
                        if let Err(e) = self.ledger.record_job(&record).await {
                            tracing::warn!(error = %e, "the Google job could not be recorded for its later check");
                        }
                    }
                }
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(audience = %destination.audience.key(), op = op.as_str(), people = members.len(), error = %e, "the platform refused the change; recorded, not retried");
                    report.refused += members.len();
                    for (n, c) in members {
                        let class = Some(ErrorClass::Permanent);
                        intents[*n].emit(
                            now,
                            op,
                            EffectOutcome::Failed,
                            Some("rejected"),
                            class,
                            Some(latency),
                        );
                        let claim = &claims[*c].next;
                        finals.push(Membership {
                            state: State::Failed,
                            op: None,
                            version: claim.version + 1,
                            lease_until_ms: 0,
                            reason: Some(e.reason().chars().take(500).collect()),
                            updated_at: now,
                            ..claim.clone()
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(audience = %destination.audience.key(), op = op.as_str(), people = members.len(), error = %e, wait_secs = e.wait().map(|w| w.as_secs()), "retryable platform failure; SQS redelivers the messages");
                    for (n, _) in members {
                        let intent = &intents[*n];
                        let class = Some(ErrorClass::Retryable);
                        intent.emit(
                            now,
                            op,
                            EffectOutcome::Retrying,
                            Some("exhausted"),
                            class,
                            Some(latency),
                        );
                        let (pk, ak) = intent.key();
                        releases.push((pk.clone(), ak.clone(), current.get(&(pk, ak)).cloned()));
                        for o in &intent.owners {
                            fail(&mut failed, *o, e.to_string());
                        }
                    }
                }
            }
        }
        if let Err(e) = self.ledger.complete(&finals).await {
            // The platform has the change; the claims expire and a redelivery repeats it (harmless).
            tracing::warn!(error = %e, "the ledger could not record the outcomes; SQS redelivers the batch");
            return self.all_failed(messages, report, &e.to_string());
        }
        if let Err(e) = self.ledger.release(&releases).await {
            tracing::warn!(error = %e, "claims could not be released; they expire after the lease");
        }

        report.failed = messages
            .into_iter()
            .zip(failed)
            .filter_map(|(m, f)| f.map(|_| m.id))
            .collect();
        // The effects rows: after the work, bounded by the flush timeout, never failing the batch.
        fluxo::analytics::flush().await;
        tracing::info!(
            messages = actions.len(),
            failed = report.failed.len(),
            added = report.added,
            removed = report.removed,
            skipped_no_consent = report.skipped_no_consent,
            unchanged = report.unchanged,
            refused = report.refused,
            calls = report.calls,
            config_version = %self.version,
            "batch handled"
        );
        fluxo::observability::count("Fluxo", FUNCTION, "AudienceAdded", report.added as u64);
        fluxo::observability::count("Fluxo", FUNCTION, "AudienceRemoved", report.removed as u64);
        fluxo::observability::count(
            "Fluxo",
            FUNCTION,
            "AudienceSkippedNoConsent",
            report.skipped_no_consent as u64,
        );
        if !report.failed.is_empty() {
            fluxo::observability::count(
                "Fluxo",
                FUNCTION,
                "BatchItemFailures",
                report.failed.len() as u64,
            );
        }
        report
    }

    fn all_failed(&self, messages: Vec<Message>, mut report: Report, why: &str) -> Report {
        tracing::warn!(error = %why, messages = messages.len(), "the batch failed; SQS redelivers it");
        report.failed = messages.into_iter().map(|m| m.id).collect();
        report
    }

    /// The destination of a recorded membership: as configured when it still is, else applied (or a
    /// dry run when the add was one).
    fn destination_of(&self, audience: &PlatformAudience, dry_run: bool) -> Destination {
        self.config
            .audiences
            .keys()
            .flat_map(|name| self.config.destinations(name))
            .find(|d| &d.audience == audience)
            .unwrap_or(Destination {
                audience: audience.clone(),
                mode: if dry_run { Mode::DryRun } else { Mode::Apply },
            })
    }

    /// Checks the Google jobs earlier runs left running; returns how many failed.
    async fn check_jobs(&self, deadline: Deadline) -> usize {
        let mut seen = HashSet::new();
        let google: Vec<Destination> = self
            .config
            .audiences
            .keys()
            .flat_map(|n| self.config.destinations(n))
            .filter(|d| {
                d.mode == Mode::Apply
                    && matches!(d.audience, PlatformAudience::Google { .. })
                    && seen.insert(d.audience.key())
            })
            .collect();
        let mut failed = 0;
        for d in google {
            let jobs = match self.ledger.running_jobs(&d.audience).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "running Google jobs could not be read");
                    continue;
                }
            };
            for mut job in jobs {
                match self
                    .connector
                    .job_status(&d.audience, &job.job, deadline)
                    .await
                {
                    Ok(JobStatus::Running) => continue,
                    Ok(JobStatus::Succeeded) => job.state = "succeeded".into(),
                    Ok(JobStatus::Failed(reason)) => {
                        tracing::error!(audience = %d.audience.key(), job = %job.job, reason = %reason, people = job.people, "a Google Customer Match job failed");
                        fluxo::observability::count("Fluxo", FUNCTION, "AudienceJobsFailed", 1);
                        failed += 1;
                        job.state = "failed".into();
                        job.reason = Some(reason);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, job = %job.job, "a Google job's status could not be read");
                        continue;
                    }
                }
                if let Err(e) = self.ledger.record_job(&job).await {
                    tracing::warn!(error = %e, "a Google job's status could not be recorded");
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + s, 0).unwrap()
    }

    fn member(state: State, event: i64, dry_run: bool) -> Membership {
        Membership {
            profile_key: "k".into(),
            audience: PlatformAudience::Meta {
                audience_id: "1".into(),
            },
            name: "a".into(),
            state,
            op: None,
            version: 3,
            lease_until_ms: 0,
            event_at: at(event),
            dry_run,
            reason: None,
            updated_at: at(event),
        }
    }

    #[test]
    fn an_add_is_performed_once_and_a_dry_run_add_is_applied_later() {
        let now = at(100).timestamp_millis();
        assert_eq!(
            decide(Want::Add, at(1), Mode::Apply, None, now),
            Decision::Perform
        );
        let added = member(State::Added, 1, false);
        assert_eq!(
            decide(Want::Add, at(2), Mode::Apply, Some(&added), now),
            Decision::Nothing("already added")
        );
        let dry = member(State::Added, 1, true);
        assert_eq!(
            decide(Want::Add, at(1), Mode::Apply, Some(&dry), now),
            Decision::Perform
        );
        assert_eq!(
            decide(Want::Add, at(1), Mode::DryRun, Some(&dry), now),
            Decision::Nothing("already added")
        );
    }

    #[test]
    fn an_older_add_does_not_undo_a_removal_but_a_later_grant_does() {
        let now = at(100).timestamp_millis();
        let removed = member(State::Removed, 10, false);
        assert!(matches!(
            decide(Want::Add, at(5), Mode::Apply, Some(&removed), now),
            Decision::Nothing(_)
        ));
        assert_eq!(
            decide(Want::Add, at(20), Mode::Apply, Some(&removed), now),
            Decision::Perform
        );
    }

    #[test]
    fn no_consent_is_recorded_and_a_later_grant_adds() {
        let now = at(100).timestamp_millis();
        assert_eq!(
            decide(Want::Skip, at(1), Mode::Apply, None, now),
            Decision::Record(State::Skipped)
        );
        let skipped = member(State::Skipped, 1, false);
        assert_eq!(
            decide(Want::Add, at(2), Mode::Apply, Some(&skipped), now),
            Decision::Perform
        );
    }

    #[test]
    fn a_removal_calls_the_platform_only_for_people_it_added() {
        let now = at(100).timestamp_millis();
        let added = member(State::Added, 1, false);
        assert_eq!(
            decide(Want::Remove, at(2), Mode::Apply, Some(&added), now),
            Decision::Perform
        );
        assert_eq!(
            decide(Want::Remove, at(2), Mode::Apply, None, now),
            Decision::Record(State::Removed)
        );
        let skipped = member(State::Skipped, 1, false);
        assert_eq!(
            decide(Want::Remove, at(2), Mode::Apply, Some(&skipped), now),
            Decision::Record(State::Removed)
        );
    }

    #[test]
    fn a_live_claim_is_busy_and_an_expired_one_is_taken_over() {
        let now = at(100).timestamp_millis();
        let mut pending = member(State::Pending, 1, false);
        pending.lease_until_ms = now + 1000;
        assert_eq!(
            decide(Want::Add, at(2), Mode::Apply, Some(&pending), now),
            Decision::Busy
        );
        pending.lease_until_ms = now - 1;
        assert_eq!(
            decide(Want::Add, at(2), Mode::Apply, Some(&pending), now),
            Decision::Perform
        );
    }
}
