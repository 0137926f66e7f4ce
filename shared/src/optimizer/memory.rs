//! An in-memory optimizer store, for the demo, the benchmark and unit tests. Same claim semantics as DynamoDB.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::ports::{
    ChangeRecord, ChangeStatus, Claim, EntityState, JournalEntry, OptimizerStore, PendingChange,
    Snapshot,
};
use crate::ports::StoreError;

/// Everything in memory, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    snapshots: Vec<Snapshot>,
    journal: Vec<JournalEntry>,
    changes: HashMap<(String, String), (ChangeRecord, ChangeStatus)>,
    latest: HashMap<String, ChangeRecord>,
    pending: HashMap<String, PendingChange>,
    failing_records: usize,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}

impl MemoryStore {
    /// Journal entries so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.inner
            .lock()
            .map(|i| i.journal.clone())
            .unwrap_or_default()
    }

    /// Snapshots so far.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.inner
            .lock()
            .map(|i| i.snapshots.clone())
            .unwrap_or_default()
    }

    /// Makes the next `count` outcome records fail without writing anything, as a lost write or a
    /// crash between the platform call and the record would (unit tests).
    pub fn fail_next_records(&self, count: usize) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.failing_records = count;
        }
    }

    /// Status of a change record.
    pub fn change_status(&self, entity_key: &str, claim_id: &str) -> Option<ChangeStatus> {
        let inner = self.inner.lock().ok()?;
        inner
            .changes
            .get(&(entity_key.to_string(), claim_id.to_string()))
            .map(|(_, s)| *s)
    }
}

impl OptimizerStore for MemoryStore {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        inner
            .snapshots
            .retain(|s| !(s.campaign_id == snapshot.campaign_id && s.run_id == snapshot.run_id));
        inner.snapshots.push(snapshot.clone());
        Ok(())
    }

    async fn put_journal(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.inner
            .lock()
            .map_err(|_| poisoned())?
            .journal
            .push(entry.clone());
        Ok(())
    }

    async fn entity_state(&self, entity_key: &str) -> Result<EntityState, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(EntityState {
            latest: inner.latest.get(entity_key).cloned(),
            pending: inner.pending.get(entity_key).cloned(),
        })
    }

    async fn claim_change(
        &self,
        record: &ChangeRecord,
        seen_latest: Option<&str>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let key = (record.entity_key.clone(), record.claim_id.clone());
        if let Some((_, status)) = inner.changes.get(&key)
            && *status != ChangeStatus::Failed
        {
            return Ok(Claim::Taken(*status));
        }
        if let Some(p) = inner.pending.get(&record.entity_key) {
            return Ok(Claim::Conflict(format!(
                "the entity is locked by the change claimed for {}",
                p.record.claim_id
            )));
        }
        let latest = inner
            .latest
            .get(&record.entity_key)
            .map(|l| l.claim_id.as_str());
        if latest != seen_latest {
            return Ok(Claim::Conflict(format!(
                "the entity's last change is now {}, not {}",
                latest.unwrap_or("none"),
                seen_latest.unwrap_or("none")
            )));
        }
        inner
            .changes
            .insert(key, (record.clone(), ChangeStatus::Pending));
        inner.pending.insert(
            record.entity_key.clone(),
            PendingChange {
                record: record.clone(),
                lease_until,
            },
        );
        Ok(Claim::Claimed)
    }

    async fn record_change(
        &self,
        record: &ChangeRecord,
        status: ChangeStatus,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if inner.failing_records > 0 {
            inner.failing_records -= 1;
            return Err(StoreError::Unavailable("injected record failure".into()));
        }
        let held = inner
            .pending
            .get(&record.entity_key)
            .is_some_and(|p| p.record.claim_id == record.claim_id);
        if !held {
            return Err(StoreError::Rejected(format!(
                "the claim {} no longer holds the entity",
                record.claim_id
            )));
        }
        inner.pending.remove(&record.entity_key);
        inner.changes.insert(
            (record.entity_key.clone(), record.claim_id.clone()),
            (record.clone(), status),
        );
        if status == ChangeStatus::Applied {
            inner
                .latest
                .insert(record.entity_key.clone(), record.clone());
        }
        inner.journal.push(entry.clone());
        Ok(())
    }
}
