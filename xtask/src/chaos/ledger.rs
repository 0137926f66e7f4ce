//! The ledger check: for every lead accepted with a 2xx, where is it now? In each destination exactly
//! once, or in a DLQ with its reason. Counts come from the fakes (wiremock's request log) and from
//! DynamoDB and SQS on moto, never from the functions' logs.
//!
//! Destinations are a list ([`destinations`]): adding one (email-trigger's, audience-sync's) is one
//! entry. Until their consumers land, the email and audience queues are counted as "queued, not yet
//! consumed".

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use wiremock::MockServer;

use crate::stack::StackInfo;

use super::vendor;

/// How a destination is counted.
#[derive(Debug, Clone)]
pub enum Counted {
    /// A vendor fake's request log, keyed by the `Idempotency-Key` each call carried (the lead id), and
    /// the effect records `effect_key(lead, ledger_destination, action)` in the leads table.
    Vendor {
        ledger_destination: &'static str,
        action: &'static str,
    },
    /// The messages waiting on a queue whose consumer the harness leaves off.
    Queued { queue: &'static str },
}

/// One place a lead must reach.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: &'static str,
    pub counted: Counted,
    /// The DLQ of the queue that feeds this destination.
    pub dlq: &'static str,
}

/// Every destination the check iterates.
pub fn destinations() -> Vec<Destination> {
    vec![
        Destination {
            name: "crm",
            counted: Counted::Vendor {
                ledger_destination: "crm:rest",
                action: "upsert",
            },
            dlq: "LeadsDeadLetterQueue",
        },
        // The harness leaves email-trigger's mapping off: the queue is the count. Next: count
        // email-trigger's ledger and an email platform fake behind the fault proxy.
        Destination {
            name: "email (on its queue; consumer off)",
            counted: Counted::Queued {
                queue: "EmailQueue",
            },
            dlq: "EmailDeadLetterQueue",
        },
        // The same for audience-sync.
        Destination {
            name: "audience (on its queue; consumer off)",
            counted: Counted::Queued {
                queue: "AudienceQueue",
            },
            dlq: "AudienceDeadLetterQueue",
        },
    ]
}

/// One destination's figures.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub accepted: usize,
    pub delivered: usize,
    /// In a DLQ, by reason.
    pub in_dlq: BTreeMap<String, usize>,
    /// Refused by the vendor for good (recorded on the profile), by reason.
    pub rejected: BTreeMap<String, usize>,
    pub lost: usize,
    pub duplicated: usize,
    /// Calls or messages repeated under the same idempotency key (a vendor honouring the key keeps one).
    pub resent: usize,
    /// Examples of lost leads, for the report.
    pub lost_examples: Vec<String>,
}

impl Tally {
    pub fn dlq_total(&self) -> usize {
        self.in_dlq.values().sum()
    }
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
    pub fn line(&self, name: &str) -> String {
        let mut s = format!(
            "{name}: accepted {}, delivered {}, in DLQ {}, lost {}, duplicated {}",
            self.accepted,
            self.delivered,
            self.dlq_total(),
            self.lost,
            self.duplicated
        );
        if !self.rejected.is_empty() {
            s.push_str(&format!(
                ", rejected by the vendor {} {:?}",
                self.rejected.values().sum::<usize>(),
                self.rejected
            ));
        }
        if !self.in_dlq.is_empty() {
            s.push_str(&format!(" (DLQ reasons: {:?})", self.in_dlq));
        }
        if self.resent > 0 {
            s.push_str(&format!(
                " [{} repeated under the same idempotency key]",
                self.resent
            ));
        }
        s
    }
}

/// What the leads table and the queues hold at the end of a run.
#[derive(Debug, Default)]
pub struct Store {
    /// Intake records by idempotency-key-derived pk: (lead id, status, email).
    pub intake: BTreeMap<String, (String, String, String)>,
    /// Effect records by effect key: (state, reason).
    pub effects: BTreeMap<String, (String, String)>,
    /// The latest CRM record reason on each lead's profile, by lead id.
    pub crm_reasons: BTreeMap<String, String>,
}

impl Store {
    /// Intake records by lead id.
    pub fn by_lead(&self) -> BTreeMap<&str, (&str, &str)> {
        self.intake
            .values()
            .map(|(id, status, email)| (id.as_str(), (status.as_str(), email.as_str())))
            .collect()
    }
}

fn s(item: &std::collections::HashMap<String, AttributeValue>, k: &str) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Reads the whole leads table.
pub async fn read_store(sdk: &SdkConfig, stack: &StackInfo) -> Result<Store> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let table = stack.table("LeadsTable")?;
    let mut store = Store::default();
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        for item in out.items() {
            let pk = s(item, "pk");
            if let Some(key) = pk.strip_prefix("INTAKE#") {
                let email = serde_json::from_str::<serde_json::Value>(&s(item, "envelope"))
                    .ok()
                    .and_then(|v| v.pointer("/lead/email")?.as_str().map(str::to_string))
                    .unwrap_or_default();
                store.intake.insert(
                    key.to_string(),
                    (s(item, "lead_id"), s(item, "status"), email),
                );
            } else if let Some(key) = pk.strip_prefix("EFFECT#") {
                store
                    .effects
                    .insert(key.to_string(), (s(item, "state"), s(item, "reason")));
            } else if pk.starts_with("PROFILE#")
                && let Ok(crm) = serde_json::from_str::<serde_json::Value>(&s(item, "crm"))
            {
                let lead = crm["lead_id"].as_str().unwrap_or_default().to_string();
                let reason = crm["reason"]
                    .as_str()
                    .or(crm["state"].as_str())
                    .unwrap_or_default()
                    .to_string();
                store.crm_reasons.insert(lead, reason);
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(store)
}

/// Every message body on a queue. They stay in flight for `hold_secs`, so nothing reads them twice.
pub async fn queue_bodies(sdk: &SdkConfig, url: &str, hold_secs: i32) -> Result<Vec<String>> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(hold_secs)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        if r.messages().is_empty() {
            empty += 1;
        }
        out.extend(
            r.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
    }
    Ok(out)
}

/// The lead id a queue message is about: an envelope's or a fan-out action's `lead_id`.
fn lead_of(body: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let lead = v.get("lead_id")?.as_str()?.to_string();
    let effect = v
        .get("effect_key")
        .and_then(|e| e.as_str())
        .unwrap_or(&lead)
        .to_string();
    Some((lead, effect))
}

/// The check over a set of accepted leads (lead id -> email).
pub async fn check(
    sdk: &SdkConfig,
    stack: &StackInfo,
    crm: &MockServer,
    accepted: &BTreeMap<String, String>,
) -> Result<Vec<(Destination, Tally)>> {
    let store = read_store(sdk, stack).await?;
    let calls = vendor::crm_calls(crm).await?;
    let mut dlqs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for d in destinations() {
        if !dlqs.contains_key(d.dlq) {
            let url = &stack.queue(d.dlq)?.url;
            let leads = queue_bodies(sdk, url, 900)
                .await?
                .iter()
                .filter_map(|b| lead_of(b).map(|(l, _)| l))
                .collect();
            dlqs.insert(d.dlq, leads);
        }
        let in_dlq = &dlqs[d.dlq];
        // A lead stuck in the leads DLQ never reached the fan-out either.
        let leads_dlq = dlqs
            .get("LeadsDeadLetterQueue")
            .cloned()
            .unwrap_or_default();
        let mut t = Tally {
            accepted: accepted.len(),
            ..Tally::default()
        };
        match &d.counted {
            Counted::Vendor {
                ledger_destination,
                action,
            } => {
                // Emails that reached the vendor under more than one idempotency key: done twice.
                let mut keys_per_email: BTreeMap<&str, usize> = BTreeMap::new();
                for (key, (_, email)) in &calls {
                    if accepted.contains_key(key) {
                        *keys_per_email.entry(email.as_str()).or_default() += 1;
                    }
                }
                t.duplicated = keys_per_email.values().filter(|n| **n > 1).count();
                for (lead, email) in accepted {
                    let effect = fluxo::idempotency::effect_key(lead, ledger_destination, action);
                    let calls_for = calls.get(lead).map_or(0, |(n, _)| *n);
                    if calls_for > 0 {
                        t.delivered += 1;
                        t.resent += calls_for as usize - 1;
                    } else if in_dlq.contains(lead) {
                        let reason = store
                            .crm_reasons
                            .get(lead)
                            .cloned()
                            .unwrap_or_else(|| "no reason recorded".into());
                        *t.in_dlq.entry(short(&reason)).or_default() += 1;
                    } else if let Some((state, reason)) =
                        store.effects.get(&effect).filter(|(s, _)| s == "failed")
                    {
                        let _ = state;
                        *t.rejected.entry(short(reason)).or_default() += 1;
                    } else {
                        t.lost += 1;
                        if t.lost_examples.len() < 5 {
                            t.lost_examples.push(format!("{lead} ({email})"));
                        }
                    }
                }
            }
            Counted::Queued { queue } => {
                let url = &stack.queue(queue)?.url;
                let mut per_lead: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
                for body in queue_bodies(sdk, url, 900).await? {
                    if let Some((lead, effect)) = lead_of(&body) {
                        *per_lead.entry(lead).or_default().entry(effect).or_default() += 1;
                    }
                }
                for (lead, email) in accepted {
                    match per_lead.get(lead) {
                        Some(effects) => {
                            t.delivered += 1;
                            t.resent += effects.values().map(|n| n - 1).sum::<usize>();
                        }
                        None if in_dlq.contains(lead) || leads_dlq.contains(lead) => {
                            *t.in_dlq.entry("lead in a DLQ upstream".into()).or_default() += 1;
                        }
                        None => {
                            t.lost += 1;
                            if t.lost_examples.len() < 5 {
                                t.lost_examples.push(format!("{lead} ({email})"));
                            }
                        }
                    }
                }
            }
        }
        out.push((d, t));
    }
    Ok(out)
}

fn short(reason: &str) -> String {
    let mut r: String = reason.chars().take(80).collect();
    if reason.chars().count() > 80 {
        r.push('…');
    }
    r
}

/// Prints each destination's line; returns whether every one holds (nothing lost, nothing twice).
pub fn print(tallies: &[(Destination, Tally)]) -> bool {
    let mut ok = true;
    for (d, t) in tallies {
        println!("  {} {}", if t.ok() { "✓" } else { "✗" }, t.line(d.name));
        for l in &t.lost_examples {
            println!("      lost: {l}");
        }
        ok &= t.ok();
    }
    ok
}
