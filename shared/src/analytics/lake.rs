//! The data lake's files: each table's columns (the one schema that the Parquet files, the Glue tables
//! and the dashboard share), Parquet writing (zstd) and reading, and the Hive-style object keys.
//!
//! Rows travel as JSON objects (a record's `serde` form), so one writer and one reader serve every table.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::basic::{
    Compression, LogicalType, Repetition, TimeUnit, TimestampType, Type as Physical, ZstdLevel,
};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;
use serde_json::{Map, Value};

use super::records::Table;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 string (Glue `string`).
    Str,
    /// 64-bit integer (Glue `bigint`).
    Int,
    /// 64-bit float (Glue `double`).
    Float,
    /// Glue `boolean`.
    Bool,
    /// Microseconds since the epoch, UTC (Glue `timestamp`).
    Timestamp,
    /// Days since the epoch (Glue `date`).
    Date,
}

impl Kind {
    /// The Glue / Athena (Hive DDL) type name.
    pub fn glue_type(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "bigint",
            Kind::Float => "double",
            Kind::Bool => "boolean",
            Kind::Timestamp => "timestamp",
            Kind::Date => "date",
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Never null.
    pub required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: false,
    }
}

use Kind::{Bool, Date, Float, Int, Str, Timestamp};

const LEADS: &[Column] = &[
    req("lead_id", Str),
    req("received_at", Timestamp),
    req("source_kind", Str),
    opt("source_name", Str),
    opt("form", Str),
    opt("utm_source", Str),
    opt("utm_medium", Str),
    opt("utm_campaign", Str),
    opt("utm_term", Str),
    opt("utm_content", Str),
    req("has_gclid", Bool),
    req("has_fbclid", Bool),
    opt("campaign_id", Str),
    opt("adset_id", Str),
    opt("ad_id", Str),
    opt("interest", Str),
    req("consent", Bool),
    req("email_fingerprint", Str),
];

const EFFECTS: &[Column] = &[
    req("effect_id", Str),
    req("at", Timestamp),
    req("lead_id", Str),
    req("destination", Str),
    opt("vendor", Str),
    opt("target", Str),
    req("action", Str),
    req("outcome", Str),
    opt("attempts", Int),
    opt("latency_ms", Int),
    opt("error_class", Str),
    opt("reason", Str),
    opt("segment", Str),
    opt("score", Int),
];

const AD_METRICS: &[Column] = &[
    req("metric_id", Str),
    req("at", Timestamp),
    req("origin", Str),
    req("platform", Str),
    req("account", Str),
    req("campaign_id", Str),
    req("entity_kind", Str),
    req("entity_id", Str),
    req("window_start", Date),
    req("window_end", Date),
    req("spend", Float),
    req("clicks", Int),
    req("conversions", Float),
    opt("cpa", Float),
    opt("target_cpa", Float),
    req("currency", Str),
];

const BID_CHANGES: &[Column] = &[
    req("entry_id", Str),
    req("at", Timestamp),
    req("run_id", Str),
    req("kind", Str),
    req("campaign_id", Str),
    req("platform", Str),
    req("account", Str),
    req("entity_kind", Str),
    req("entity_id", Str),
    req("mode", Str),
    req("config_version", Str),
    opt("rule", Str),
    opt("change", Str),
    opt("bid_before", Float),
    opt("bid_after", Float),
    opt("cpa", Float),
    opt("target_cpa", Float),
    req("currency", Str),
    req("outcome", Str),
    req("reason", Str),
];

/// The partition column every table has (not stored in the files: it is the `dt=` folder).
pub const PARTITION_COLUMN: &str = "dt";

/// The columns of a table, in file order.
pub fn columns(table: Table) -> &'static [Column] {
    match table {
        Table::Leads => LEADS,
        Table::Effects => EFFECTS,
        Table::AdMetrics => AD_METRICS,
        Table::BidChanges => BID_CHANGES,
    }
}

/// The folder of a table partition: `leads/dt=2026-11-28/`.
pub fn partition_prefix(table: Table, dt: NaiveDate) -> String {
    format!(
        "{}/{PARTITION_COLUMN}={}/",
        table.name(),
        dt.format("%Y-%m-%d")
    )
}

/// The object key of one batch's file in a partition. `batch_id` is derived from the batch, so a
/// redelivered batch writes the same key again and overwrites.
pub fn object_key(table: Table, dt: NaiveDate, batch_id: &str) -> String {
    format!(
        "{}part-{batch_id}.zstd.parquet",
        partition_prefix(table, dt)
    )
}

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("row {row}, column {column}: {problem}")]
    Value {
        row: usize,
        column: &'static str,
        problem: String,
    },
}

fn schema(table: Table) -> Result<Type, LakeError> {
    let mut fields = Vec::new();
    for c in columns(table) {
        let repetition = if c.required {
            Repetition::REQUIRED
        } else {
            Repetition::OPTIONAL
        };
        let (physical, logical) = match c.kind {
            Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            Int => (Physical::INT64, None),
            Float => (Physical::DOUBLE, None),
            Bool => (Physical::BOOLEAN, None),
            Timestamp => (
                Physical::INT64,
                Some(LogicalType::Timestamp(TimestampType {
                    is_adjusted_to_u_t_c: true,
                    unit: TimeUnit::MICROS,
                })),
            ),
            Date => (Physical::INT32, Some(LogicalType::Date)),
        };
        let field = Type::primitive_type_builder(c.name, physical)
            .with_repetition(repetition)
            .with_logical_type(logical)
            .build()?;
        fields.push(Arc::new(field));
    }
    Ok(Type::group_type_builder("schema")
        .with_fields(fields)
        .build()?)
}

/// The values of one column, with definition levels for the optional ones.
struct ColumnValues<T> {
    values: Vec<T>,
    levels: Vec<i16>,
}

impl<T> ColumnValues<T> {
    fn new(n: usize) -> Self {
        ColumnValues {
            values: Vec::with_capacity(n),
            levels: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, v: Option<T>) {
        match v {
            Some(v) => {
                self.values.push(v);
                self.levels.push(1);
            }
            None => self.levels.push(0),
        }
    }
}

fn cell<'a>(
    row: &'a Map<String, Value>,
    c: &Column,
    i: usize,
) -> Result<Option<&'a Value>, LakeError> {
    match row.get(c.name) {
        None | Some(Value::Null) if c.required => Err(LakeError::Value {
            row: i,
            column: c.name,
            problem: "required value missing".into(),
        }),
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(v)),
    }
}

fn bad(i: usize, c: &Column, v: &Value) -> LakeError {
    let shown = match v {
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "another JSON value",
    };
    LakeError::Value {
        row: i,
        column: c.name,
        problem: format!("expected {}, found {shown}", c.kind.glue_type()),
    }
}

/// Writes rows (JSON objects keyed by column name) as one Parquet file, zstd-compressed, one row group.
pub fn write(table: Table, rows: &[Map<String, Value>]) -> Result<Vec<u8>, LakeError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by(concat!("fluxo report-export ", env!("CARGO_PKG_VERSION")).to_string())
        .build();
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, Arc::new(schema(table)?), Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let cols = columns(table);
    let mut index = 0;
    while let Some(mut col) = group.next_column()? {
        let c = cols.get(index).ok_or_else(|| LakeError::Value {
            row: 0,
            column: "?",
            problem: "more file columns than table columns".into(),
        })?;
        index += 1;
        let def = if c.required { None } else { Some(()) };
        match c.kind {
            Str => {
                let mut v = ColumnValues::<ByteArray>::new(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    v.push(match cell(row, c, i)? {
                        None => None,
                        Some(Value::String(s)) => Some(ByteArray::from(s.as_str())),
                        Some(other) => return Err(bad(i, c, other)),
                    });
                }
                let levels = def.map(|_| v.levels.as_slice());
                col.typed::<ByteArrayType>()
                    .write_batch(&v.values, levels, None)?;
            }
            Int | Timestamp => {
                let mut v = ColumnValues::<i64>::new(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    v.push(match cell(row, c, i)? {
                        None => None,
                        Some(Value::Number(n)) if c.kind == Int => Some(
                            n.as_i64()
                                .ok_or_else(|| bad(i, c, &Value::Number(n.clone())))?,
                        ),
                        Some(Value::String(s)) if c.kind == Timestamp => Some(
                            DateTime::parse_from_rfc3339(s)
                                .map_err(|_| bad(i, c, &Value::String(String::new())))?
                                .with_timezone(&Utc)
                                .timestamp_micros(),
                        ),
                        Some(other) => return Err(bad(i, c, other)),
                    });
                }
                let levels = def.map(|_| v.levels.as_slice());
                col.typed::<Int64Type>()
                    .write_batch(&v.values, levels, None)?;
            }
            Date => {
                let mut v = ColumnValues::<i32>::new(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    v.push(match cell(row, c, i)? {
                        None => None,
                        Some(Value::String(s)) => {
                            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                                .map_err(|_| bad(i, c, &Value::Bool(false)))?;
                            Some((d - NaiveDate::default()).num_days() as i32)
                        }
                        Some(other) => return Err(bad(i, c, other)),
                    });
                }
                let levels = def.map(|_| v.levels.as_slice());
                col.typed::<Int32Type>()
                    .write_batch(&v.values, levels, None)?;
            }
            Float => {
                let mut v = ColumnValues::<f64>::new(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    v.push(match cell(row, c, i)? {
                        None => None,
                        Some(Value::Number(n)) => n.as_f64(),
                        Some(other) => return Err(bad(i, c, other)),
                    });
                }
                let levels = def.map(|_| v.levels.as_slice());
                col.typed::<DoubleType>()
                    .write_batch(&v.values, levels, None)?;
            }
            Bool => {
                let mut v = ColumnValues::<bool>::new(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    v.push(match cell(row, c, i)? {
                        None => None,
                        Some(Value::Bool(b)) => Some(*b),
                        Some(other) => return Err(bad(i, c, other)),
                    });
                }
                let levels = def.map(|_| v.levels.as_slice());
                col.typed::<BoolType>()
                    .write_batch(&v.values, levels, None)?;
            }
        }
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

/// Reads a Parquet file back into rows (JSON objects in the records' `serde` form: timestamps as RFC
/// 3339 strings, dates as `YYYY-MM-DD`).
pub fn read(file: Vec<u8>) -> Result<Vec<Map<String, Value>>, LakeError> {
    let reader = SerializedFileReader::new(Bytes::from(file))?;
    let mut rows = Vec::with_capacity(
        usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0),
    );
    for row in reader.get_row_iter(None)? {
        let row = row?;
        let mut map = Map::new();
        for (name, field) in row.get_column_iter() {
            map.insert(name.clone(), field_value(field));
        }
        rows.push(map);
    }
    Ok(rows)
}

fn field_value(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Int(i) => Value::from(*i),
        Field::Long(i) => Value::from(*i),
        Field::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::TimestampMicros(us) => DateTime::<Utc>::from_timestamp_micros(*us)
            .map_or(Value::Null, |t| {
                Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }),
        Field::Date(days) => NaiveDate::default()
            .checked_add_signed(chrono::Duration::days(i64::from(*days)))
            .map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::records::*;

    fn lead(i: usize) -> Record {
        Record::Leads(LeadRecord {
            lead_id: format!("01LEAD{i}"),
            received_at: "2026-11-28T10:00:00.123456Z".parse().unwrap(),
            source_kind: "form".into(),
            source_name: (i.is_multiple_of(2)).then(|| "site".into()),
            form: None,
            utm_source: Some("google".into()),
            utm_medium: None,
            utm_campaign: Some("brand".into()),
            utm_term: None,
            utm_content: None,
            has_gclid: true,
            has_fbclid: false,
            campaign_id: None,
            adset_id: None,
            ad_id: None,
            interest: Some("demo".into()),
            consent: i.is_multiple_of(3),
            email_fingerprint: "ab12".into(),
        })
    }

    #[test]
    fn every_record_field_is_a_column_and_every_column_a_record_field() {
        let samples = [
            lead(0),
            Record::Effects(EffectRecord::new(
                Utc::now(),
                "l",
                Destination::Crm,
                None,
                "upsert",
                EffectOutcome::Done,
            )),
        ];
        for s in samples {
            let mut names: Vec<_> = s.row().keys().cloned().collect();
            names.sort();
            let mut cols: Vec<_> = columns(s.table())
                .iter()
                .map(|c| c.name.to_string())
                .collect();
            cols.sort();
            assert_eq!(names, cols, "{}", s.table().name());
        }
    }

    #[test]
    fn a_written_file_reads_back_row_for_row() {
        let records: Vec<Record> = (0..50).map(lead).collect();
        let rows: Vec<_> = records.iter().map(Record::row).collect();
        let file = write(Table::Leads, &rows).unwrap();
        assert_eq!(&file[..4], b"PAR1");
        let back = read(file).unwrap();
        assert_eq!(back.len(), 50);
        for (record, row) in records.iter().zip(back) {
            let again: LeadRecord = serde_json::from_value(Value::Object(row)).unwrap();
            assert_eq!(&Record::Leads(again), record);
        }
    }

    #[test]
    fn a_missing_required_value_names_the_row_and_column() {
        let mut row = lead(1).row();
        row.remove("lead_id");
        let err = write(Table::Leads, &[row]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "row 0, column lead_id: required value missing"
        );
    }

    #[test]
    fn keys_are_hive_partitions() {
        let dt = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(
            object_key(Table::AdMetrics, dt, "abc"),
            "ad_metrics/dt=2026-11-28/part-abc.zstd.parquet"
        );
    }
}
