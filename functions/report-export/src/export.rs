//! The use case: a batch of analytics messages becomes one Parquet file per table partition, under a
//! name derived from the batch (its message ids), so a redelivered batch overwrites its own files.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::NaiveDate;
use fluxo::adapters::s3::S3Error;
use fluxo::analytics::lake::{self, LakeError};
use fluxo::analytics::{Record, Table};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// Where the files go (the lake bucket).
pub trait LakeFiles: Send + Sync {
    /// Writes (or overwrites) one object.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), S3Error>> + Send;
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFile {
    pub table: Table,
    pub dt: NaiveDate,
    pub key: String,
    pub rows: usize,
    pub body: Vec<u8>,
}

/// Why a batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{table} partition {dt}: {source}")]
    Encode {
        table: &'static str,
        dt: NaiveDate,
        source: LakeError,
    },
    #[error("writing {key}: {source}")]
    Write { key: String, source: S3Error },
}

/// The id of a batch: a hash of its sorted message ids. The same messages always give the same id.
pub fn batch_id<'a>(message_ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = message_ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..12])
}

/// Groups records by table partition and encodes each group as one Parquet file (pure, no I/O).
pub fn files_of(records: &[Record], batch: &str) -> Result<Vec<PartitionFile>, ExportError> {
    let mut groups: BTreeMap<(Table, NaiveDate), Vec<serde_json::Map<String, serde_json::Value>>> =
        BTreeMap::new();
    for r in records {
        groups.entry((r.table(), r.dt())).or_default().push(r.row());
    }
    groups
        .into_iter()
        .map(|((table, dt), rows)| {
            let body = lake::write(table, &rows).map_err(|source| ExportError::Encode {
                table: table.name(),
                dt,
                source,
            })?;
            Ok(PartitionFile {
                table,
                dt,
                key: lake::object_key(table, dt, batch),
                rows: rows.len(),
                body,
            })
        })
        .collect()
}

/// The exporter, built once per cold start.
pub struct Exporter<L> {
    pub lake: L,
    /// Files written at the same time.
    pub concurrency: usize,
}

impl<L: LakeFiles> Exporter<L> {
    /// Encodes and writes the files of one batch; answers them (without their bodies' ownership).
    pub async fn export(
        &self,
        records: &[Record],
        batch: &str,
    ) -> Result<Vec<(String, usize, usize)>, ExportError> {
        let files = files_of(records, batch)?;
        let writes = files.into_iter().map(|f| async move {
            let size = f.body.len();
            self.lake
                .put(&f.key, f.body)
                .await
                .map(|()| (f.key.clone(), f.rows, size))
                .map_err(|source| ExportError::Write { key: f.key, source })
        });
        let results: Vec<_> = futures_util::stream::iter(writes)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxo::analytics::{Destination, EffectOutcome, EffectRecord};

    #[test]
    fn the_batch_id_depends_on_the_message_ids_only_not_their_order() {
        assert_eq!(batch_id(["a", "b"]), batch_id(["b", "a"]));
        assert_ne!(batch_id(["a", "b"]), batch_id(["a", "c"]));
        assert_eq!(batch_id(["a"]).len(), 24);
    }

    #[test]
    fn records_of_two_days_make_two_partition_files() {
        let at = |d: &str| format!("{d}T12:00:00Z").parse().unwrap();
        let records = vec![
            Record::Effects(EffectRecord::new(
                at("2026-11-27"),
                "a",
                Destination::Crm,
                None,
                "upsert",
                EffectOutcome::Done,
            )),
            Record::Effects(EffectRecord::new(
                at("2026-11-28"),
                "b",
                Destination::Crm,
                None,
                "upsert",
                EffectOutcome::Done,
            )),
            Record::Effects(EffectRecord::new(
                at("2026-11-28"),
                "c",
                Destination::Email,
                Some("welcome"),
                "enroll",
                EffectOutcome::Done,
            )),
        ];
        let files = files_of(&records, "batch1").unwrap();
        let keys: Vec<_> = files.iter().map(|f| (f.key.as_str(), f.rows)).collect();
        assert_eq!(
            keys,
            [
                ("effects/dt=2026-11-27/part-batch1.zstd.parquet", 1),
                ("effects/dt=2026-11-28/part-batch1.zstd.parquet", 2)
            ]
        );
    }
}
