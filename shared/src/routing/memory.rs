//! In-memory ports for unit tests, benches and demos: profiles, the effect ledger and queues.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ports::{Claim, EffectLedger, EffectOutcome, ProfileStore, Saved, Versioned};
use super::profile::{CrmRecord, Profile};
use crate::ports::{MessageQueue, OutboundMessage, QueueError, Redelivery, StoreError};

fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".to_string())
}

/// A stored profile: the profile, its version and every CRM record written for it.
pub type StoredProfile = (Profile, u64, Vec<CrmRecord>);

/// Profiles in a map, with the same version semantics as the DynamoDB adapter.
#[derive(Debug, Default)]
pub struct MemoryProfiles {
    items: Mutex<HashMap<String, StoredProfile>>,
}

impl MemoryProfiles {
    /// How many profiles are stored.
    pub fn len(&self) -> usize {
        self.items.lock().map_or(0, |items| items.len())
    }

    /// Whether no profile is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored profile and every CRM record written for it.
    pub fn get(&self, key: &str) -> Option<StoredProfile> {
        self.items.lock().ok()?.get(key).cloned()
    }
}

impl ProfileStore for MemoryProfiles {
    async fn load(&self, key: &str) -> Result<Option<Versioned<Profile>>, StoreError> {
        let items = self.items.lock().map_err(|_| poisoned())?;
        Ok(items.get(key).map(|(p, v, _)| Versioned {
            value: p.clone(),
            version: *v,
        }))
    }

    async fn save(&self, profile: &Profile, expected: Option<u64>) -> Result<Saved, StoreError> {
        let mut items = self.items.lock().map_err(|_| poisoned())?;
        let key = profile.key();
        let current = items.get(&key).map(|(_, v, _)| *v);
        if current != expected {
            return Ok(Saved::Conflict);
        }
        let records = items.remove(&key).map(|(_, _, r)| r).unwrap_or_default();
        items.insert(key, (profile.clone(), expected.unwrap_or(0) + 1, records));
        Ok(Saved::Saved)
    }

    async fn record_crm(&self, key: &str, record: &CrmRecord) -> Result<(), StoreError> {
        let mut items = self.items.lock().map_err(|_| poisoned())?;
        match items.get_mut(key) {
            Some((_, _, records)) => {
                records.push(record.clone());
                Ok(())
            }
            None => Err(StoreError::Rejected(
                "no profile to record the CRM outcome on".to_string(),
            )),
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Leased(DateTime<Utc>),
    Final(EffectOutcome),
}

/// The effect ledger in a map.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryLedger {
    /// The final outcome of an effect, if any.
    pub fn outcome(&self, key: &str) -> Option<EffectOutcome> {
        match self.entries.lock().ok()?.get(key)? {
            Entry::Final(o) => Some(o.clone()),
            Entry::Leased(_) => None,
        }
    }
}

impl EffectLedger for MemoryLedger {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        match entries.get(key) {
            Some(Entry::Final(EffectOutcome::Done)) => Ok(Claim::Done),
            Some(Entry::Final(EffectOutcome::Failed(r))) => Ok(Claim::Failed(r.clone())),
            Some(Entry::Leased(until)) if *until > now => Ok(Claim::Busy),
            _ => {
                entries.insert(key.to_string(), Entry::Leased(lease_until));
                Ok(Claim::Acquired)
            }
        }
    }

    async fn complete(
        &self,
        key: &str,
        outcome: &EffectOutcome,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        entries.insert(key.to_string(), Entry::Final(outcome.clone()));
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        if matches!(entries.get(key), Some(Entry::Leased(_))) {
            entries.remove(key);
        }
        Ok(())
    }
}

/// A queue that keeps what it was sent (messages whose body contains a string given to
/// [`MemoryQueue::fail_when_body_contains`] are reported as failed), and records the received messages
/// it was asked to hold back.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<OutboundMessage>>,
    fail_bodies_containing: Mutex<Vec<String>>,
    delayed: Mutex<Vec<(String, Duration)>>,
    refuse_delays: Mutex<bool>,
}

impl MemoryQueue {
    /// Every message accepted so far.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every `(receipt handle, delay)` this queue was asked to hold back, in order.
    pub fn delayed(&self) -> Vec<(String, Duration)> {
        self.delayed.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Makes later requests to hold back a message fail (as SQS does for an expired receipt handle).
    pub fn refuse_delays(&self) {
        if let Ok(mut r) = self.refuse_delays.lock() {
            *r = true;
        }
    }

    /// Makes later sends fail for messages whose body contains `needle`.
    pub fn fail_when_body_contains(&self, needle: &str) {
        if let Ok(mut f) = self.fail_bodies_containing.lock() {
            f.push(needle.to_string());
        }
    }
}

impl MessageQueue for MemoryQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<Vec<String>, QueueError> {
        let fail = self
            .fail_bodies_containing
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let mut sent = self
            .sent
            .lock()
            .map_err(|_| QueueError::Unavailable("lock poisoned".into()))?;
        let mut failed = Vec::new();
        for m in messages {
            if fail.iter().any(|n| m.body.contains(n.as_str())) {
                failed.push(m.id.clone());
            } else {
                sent.push(m.clone());
            }
        }
        Ok(failed)
    }
}

impl Redelivery for MemoryQueue {
    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        if self.refuse_delays.lock().map(|r| *r).unwrap_or(false) {
            return Err(QueueError::Rejected(
                "ReceiptHandleIsInvalid: the receipt handle has expired".into(),
            ));
        }
        self.delayed
            .lock()
            .map_err(|_| QueueError::Unavailable("lock poisoned".into()))?
            .push((receipt_handle.to_string(), after));
        Ok(())
    }
}
