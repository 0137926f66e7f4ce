//! An in-memory optimizer store, for the demo, the benchmark and unit tests. Same claim semantics as DynamoDB.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ports::{ChangeRecord, ChangeStatus, Claim, JournalEntry, OptimizerStore, Snapshot};
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

    async fn latest_change(&self, entity_key: &str) -> Result<Option<ChangeRecord>, StoreError> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| poisoned())?
            .latest
            .get(entity_key)
            .cloned())
    }

    async fn claim_change(&self, record: &ChangeRecord) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let key = (record.entity_key.clone(), record.claim_id.clone());
        match inner.changes.get(&key) {
            Some((_, status)) if *status != ChangeStatus::Failed => Ok(Claim::Taken(*status)),
            _ => {
                inner
                    .changes
                    .insert(key, (record.clone(), ChangeStatus::Pending));
                Ok(Claim::Claimed)
            }
        }
    }

    async fn finish_change(
        &self,
        record: &ChangeRecord,
        status: ChangeStatus,
        _reason: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        inner.changes.insert(
            (record.entity_key.clone(), record.claim_id.clone()),
            (record.clone(), status),
        );
        if status == ChangeStatus::Applied {
            inner
                .latest
                .insert(record.entity_key.clone(), record.clone());
        }
        Ok(())
    }
}
