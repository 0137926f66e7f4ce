//! The facts of a date range, read from the lake's Parquet partitions: the same files Athena reads, so
//! the dashboard and Athena cannot disagree.
//!
//! Cost: per table, one ListObjectsV2 page per 1,000 files from the range's first day on, and one GET
//! per file in the range; both grow linearly with the days asked for (and with the batches per day).
//! Files already read by this warm instance are kept in memory and fetched again only when their ETag
//! changes (a redelivered batch overwrote them), so a reload costs the LIST calls and the new files.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use fluxo::adapters::s3::{Fetched, Listed, S3Error, S3Objects};
use fluxo::analytics::lake::{self, PARTITION_COLUMN};
use fluxo::analytics::{AdMetricRecord, BidChangeRecord, EffectRecord, LeadRecord, Table};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::query::Filter;

/// Files read at the same time.
const CONCURRENCY: usize = 16;

/// Reading the lake bucket.
pub trait LakeReader: Send + Sync {
    /// Every object under `prefix` whose key sorts after `start_after`.
    fn list(
        &self,
        prefix: &str,
        start_after: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, S3Error>> + Send;
    /// One object's bytes (`None`: gone since the listing).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, S3Error>> + Send;
}

/// The lake bucket through SigV4-signed S3 calls.
#[derive(Debug, Clone)]
pub struct S3Lake {
    objects: S3Objects,
    bucket: String,
}

impl S3Lake {
    /// The lake in `bucket`.
    pub fn new(objects: S3Objects, bucket: &str) -> Self {
        S3Lake {
            objects,
            bucket: bucket.to_string(),
        }
    }
}

impl LakeReader for S3Lake {
    async fn list(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, S3Error> {
        self.objects
            .list(&self.bucket, prefix, Some(start_after))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        match self.objects.get(&self.bucket, key, None).await? {
            Fetched::Object { body, .. } => Ok(Some(body)),
            Fetched::NotModified | Fetched::Missing => Ok(None),
        }
    }
}

/// Why the facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("{key}: {problem}")]
    File { key: String, problem: String },
}

/// Every row of the range, each fact once (a row redelivered in another batch is counted once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub leads: Vec<LeadRecord>,
    pub effects: Vec<EffectRecord>,
    pub ad_metrics: Vec<AdMetricRecord>,
    pub bid_changes: Vec<BidChangeRecord>,
    /// Files and bytes the range spans.
    pub files: usize,
    pub bytes: u64,
}

type Rows = Arc<Vec<Map<String, Value>>>;

/// Decoded files kept across warm invocations, by key, with their ETag.
#[derive(Debug, Default)]
pub struct FileCache {
    files: Mutex<HashMap<String, (String, Rows)>>,
}

impl FileCache {
    fn get(&self, key: &str, etag: &str) -> Option<Rows> {
        let files = self.files.lock().ok()?;
        files
            .get(key)
            .filter(|(e, _)| e == etag)
            .map(|(_, rows)| rows.clone())
    }

    fn put(&self, key: &str, etag: &str, rows: Rows) {
        if let Ok(mut files) = self.files.lock() {
            files.insert(key.to_string(), (etag.to_string(), rows));
        }
    }
}

/// The partition day of a key (`table/dt=YYYY-MM-DD/...`).
fn day_of(key: &str) -> Option<NaiveDate> {
    let marker = format!("/{PARTITION_COLUMN}=");
    let (_, rest) = key.split_once(&marker)?;
    NaiveDate::parse_from_str(rest.get(..10)?, "%Y-%m-%d").ok()
}

/// The rows of one table over the range.
async fn table_rows<L: LakeReader>(
    lake: &L,
    cache: &FileCache,
    table: Table,
    filter: &Filter,
) -> Result<(Vec<Rows>, u64), FactsError> {
    let prefix = format!("{}/{PARTITION_COLUMN}=", table.name());
    let start_after = format!("{prefix}{}", filter.from.format("%Y-%m-%d"));
    let listed: Vec<Listed> = lake
        .list(&prefix, &start_after)
        .await?
        .into_iter()
        .filter(|o| day_of(&o.key).is_some_and(|d| d >= filter.from && d <= filter.to))
        .collect();
    let bytes = listed.iter().map(|o| o.size).sum();
    let reads = listed.into_iter().map(|o| async move {
        if let Some(rows) = cache.get(&o.key, &o.etag) {
            return Ok(Some(rows));
        }
        let Some(body) = lake.get(&o.key).await? else {
            return Ok(None);
        };
        let rows = lake::read(body).map_err(|e| FactsError::File {
            key: o.key.clone(),
            problem: e.to_string(),
        })?;
        let rows = Arc::new(rows);
        cache.put(&o.key, &o.etag, rows.clone());
        Ok::<_, FactsError>(Some(rows))
    });
    let files: Vec<_> = futures_util::stream::iter(reads)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if let Some(rows) = f? {
            out.push(rows);
        }
    }
    Ok((out, bytes))
}

/// Typed records from rows, each id once (rows that do not decode are skipped and counted).
fn decode<T: DeserializeOwned>(files: &[Rows], id: &str) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut bad = 0usize;
    for row in files.iter().flat_map(|f| f.iter()) {
        let key = row.get(id).and_then(Value::as_str).unwrap_or_default();
        if !key.is_empty() && !seen.insert(key.to_string()) {
            continue;
        }
        match serde_json::from_value(Value::Object(row.clone())) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(rows = bad, id, "lake rows that do not decode were skipped");
    }
    out
}

impl Facts {
    /// Reads every table's partitions of the range.
    pub async fn load<L: LakeReader>(
        lake: &L,
        cache: &FileCache,
        filter: &Filter,
    ) -> Result<Facts, FactsError> {
        let (leads, effects, metrics, bids) = tokio::join!(
            table_rows(lake, cache, Table::Leads, filter),
            table_rows(lake, cache, Table::Effects, filter),
            table_rows(lake, cache, Table::AdMetrics, filter),
            table_rows(lake, cache, Table::BidChanges, filter),
        );
        let (leads, effects, metrics, bids) = (leads?, effects?, metrics?, bids?);
        let files = leads.0.len() + effects.0.len() + metrics.0.len() + bids.0.len();
        Ok(Facts {
            leads: decode(&leads.0, "lead_id"),
            effects: decode(&effects.0, "effect_id"),
            ad_metrics: decode(&metrics.0, "metric_id"),
            bid_changes: decode(&bids.0, "entry_id"),
            files,
            bytes: leads.1 + effects.1 + metrics.1 + bids.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_day_is_read_from_the_key() {
        assert_eq!(
            day_of("leads/dt=2026-11-28/part-x.zstd.parquet"),
            NaiveDate::from_ymd_opt(2026, 11, 28)
        );
        assert_eq!(day_of("leads/other"), None);
    }

    #[test]
    fn a_row_seen_twice_is_decoded_once() {
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"entry_id":"e1","at":"2026-11-28T10:00:00Z","run_id":"r","kind":"evaluation","campaign_id":"c","platform":"google","account":"1","entity_kind":"campaign","entity_id":"9","mode":"apply","config_version":"v","rule":null,"change":null,"bid_before":null,"bid_after":null,"cpa":null,"target_cpa":null,"currency":"USD","outcome":"unchanged","reason":"ok"}"#,
        )
        .unwrap();
        let files = vec![Arc::new(vec![row.clone()]), Arc::new(vec![row])];
        assert_eq!(decode::<BidChangeRecord>(&files, "entry_id").len(), 1);
    }
}
