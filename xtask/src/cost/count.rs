//! What `cargo xtask cost` counts: every AWS request the functions make, seen by a counting plan of the
//! fault proxy in front of moto (it always forwards), classified by service; and the billing rules that
//! turn a request into billed units: DynamoDB request units from the items' sizes as AWS computes them,
//! SQS requests in 64 KiB chunks, S3 request classes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use base64::Engine;
use serde_json::{Map, Value};

use super::caller::Callers;
use crate::chaos::proxy::{Action, Plan, Request};

/// Which part of the workload a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Before the workload (cold starts, warm-up): not counted.
    Setup = 0,
    /// The leads: intake through email, audience and export.
    Leads = 1,
    /// One hourly-optimizer run and what it emitted.
    Optimizer = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Leads,
            2 => Phase::Optimizer,
            _ => Phase::Setup,
        }
    }
}

/// One AWS request a function made, and moto's answer.
#[derive(Debug, Clone)]
pub struct Call {
    pub phase: Phase,
    /// The calling function's binary, or `unattributed`.
    pub caller: String,
    pub service: &'static str,
    pub operation: String,
    pub request: Vec<u8>,
    pub status: u16,
    pub answer: Vec<u8>,
}

/// The counting plan: forwards everything and keeps every call with its answer.
pub struct Counter {
    phase: AtomicU8,
    calls: Mutex<Vec<Call>>,
    callers: Callers,
}

impl Counter {
    pub fn new(callers: Callers) -> Counter {
        Counter {
            phase: AtomicU8::new(Phase::Setup as u8),
            calls: Mutex::new(Vec::new()),
            callers,
        }
    }

    /// Calls from now on belong to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Plan for Counter {
    fn decide(&self, _request: &Request) -> Action {
        Action::Forward
    }

    fn answered(&self, request: &Request, status: u16, body: &[u8]) {
        let (service, operation) = classify(
            &request.method,
            &request.path,
            request.header("x-amz-target"),
        );
        let caller = request
            .peer
            .and_then(|p| self.callers.resolve(p))
            .unwrap_or_else(|| UNATTRIBUTED.to_string());
        let call = Call {
            phase: Phase::from_u8(self.phase.load(Ordering::SeqCst)),
            caller,
            service,
            operation,
            request: request.body.clone(),
            status,
            answer: body.to_vec(),
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

/// The caller of a request whose process could not be found.
pub const UNATTRIBUTED: &str = "unattributed";

/// The service and operation of a request: the JSON protocol's `X-Amz-Target` (DynamoDB, SQS, SSM,
/// Secrets Manager), else S3 by method and path (path-style, as the SDK addresses an IP endpoint).
pub fn classify(method: &str, path: &str, target: Option<&str>) -> (&'static str, String) {
    if let Some(target) = target {
        let (prefix, op) = target.split_once('.').unwrap_or((target, ""));
        let service = if prefix.starts_with("DynamoDB_") {
            "DynamoDB"
        } else if prefix == "AmazonSQS" {
            "SQS"
        } else if prefix == "AmazonSSM" {
            "SSM"
        } else if prefix.eq_ignore_ascii_case("secretsmanager") {
            "Secrets Manager"
        } else {
            return ("other", target.to_string());
        };
        return (service, op.to_string());
    }
    if path.starts_with("/moto-api") {
        return ("other", format!("{method} {path}"));
    }
    ("S3", s3_operation(method, path).to_string())
}

/// S3's request classes: `PUT` (PUT, COPY, POST and LIST, billed at the higher rate), `GET` (GET,
/// HEAD and the rest) and `DELETE` (free).
pub fn s3_operation(method: &str, path: &str) -> &'static str {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments = path.trim_matches('/').split('/').filter(|s| !s.is_empty());
    let is_bucket = segments.count() <= 1;
    match method {
        "PUT" | "POST" => "PUT",
        "DELETE" => "DELETE",
        "GET" if is_bucket || query.contains("list-type") || query.contains("versions") => "PUT",
        _ => "GET",
    }
}

/// Billed SQS requests for a payload: one per started 64 KiB chunk, at least one.
pub fn sqs_billed_requests(payload_bytes: usize) -> u64 {
    (payload_bytes.div_ceil(64 * 1024)).max(1) as u64
}

/// The payload of an SQS request (JSON protocol): message bodies and attributes sent, or received.
pub fn sqs_payload(operation: &str, request: &Value, answer: &Value) -> usize {
    let message = |m: &Value, body_key: &str| -> usize {
        let body = m[body_key].as_str().map_or(0, str::len);
        let attributes = m["MessageAttributes"]
            .as_object()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        k.len()
                            + v["DataType"].as_str().map_or(0, str::len)
                            + v["StringValue"].as_str().map_or(0, str::len)
                            + v["BinaryValue"].as_str().map_or(0, |b| b.len() * 3 / 4)
                    })
                    .sum()
            })
            .unwrap_or(0);
        body + attributes
    };
    match operation {
        "SendMessage" => message(request, "MessageBody"),
        "SendMessageBatch" => request["Entries"]
            .as_array()
            .map(|e| e.iter().map(|m| message(m, "MessageBody")).sum())
            .unwrap_or(0),
        "ReceiveMessage" => answer["Messages"]
            .as_array()
            .map(|e| e.iter().map(|m| message(m, "Body")).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Size of a DynamoDB number: 1 byte per two significant digits (leading and trailing zeros
/// trimmed), plus 1 byte.
pub fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

fn binary_size(b64: &str) -> u64 {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|b| b.len() as u64)
        .unwrap_or((b64.len() as u64) * 3 / 4)
}

/// Size of one typed attribute value (`{"S": ..}`, `{"N": ..}`, `{"M": ..}`, ...), without its name,
/// by AWS's rules: strings their UTF-8 length, numbers as [`number_size`], binaries their raw length,
/// booleans and null 1 byte, lists and maps 3 bytes plus 1 byte and the size of each element (a map
/// element's size includes its name).
pub fn value_size(v: &Value) -> u64 {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = |f: &dyn Fn(&str) -> u64| -> u64 {
        inner
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(f).sum())
            .unwrap_or(0)
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, |s| s.len() as u64),
        "N" => inner.as_str().map_or(0, number_size),
        "B" => inner.as_str().map_or(0, binary_size),
        "BOOL" | "NULL" => 1,
        "SS" => strings(&|s| s.len() as u64),
        "NS" => strings(&number_size),
        "BS" => strings(&binary_size),
        "L" => {
            3 + inner
                .as_array()
                .map(|a| a.iter().map(|e| 1 + value_size(e)).sum())
                .unwrap_or(0)
        }
        "M" => {
            3 + inner
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                        .sum()
                })
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Size of an item (typed JSON): the sum of its attribute names' and values' sizes.
pub fn item_size(item: &Map<String, Value>) -> u64 {
    item.iter()
        .map(|(k, v)| k.len() as u64 + value_size(v))
        .sum()
}

/// Write request units of a write of an item of `size` bytes: 1 per started 1 KB, at least 1.
pub fn write_units(size: u64) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read request units of a read of `size` bytes: 1 per started 4 KB (at least 1), halved when
/// eventually consistent.
pub fn read_units(size: u64, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// A table's keys: its primary key attributes and each global secondary index's key attributes.
#[derive(Debug, Clone, Default)]
pub struct TableKeys {
    pub key: Vec<String>,
    pub indexes: Vec<(String, Vec<String>)>,
}

/// What is known about the tables: their keys, and their items' sizes at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Physical table name -> keys.
    pub keys: BTreeMap<String, TableKeys>,
    /// `(table, key)` -> the item's size after the run (from a scan).
    pub final_sizes: HashMap<(String, String), u64>,
    /// `(table, key)` -> the last item the run wrote or read whole (for items gone by the end).
    pub seen: HashMap<(String, String), Map<String, Value>>,
}

impl Tables {
    /// The key of an item or a `Key` map, as text: its key attributes' values, in schema order.
    pub fn key_of(&self, table: &str, item: &Map<String, Value>) -> Option<String> {
        let keys = self.keys.get(table)?;
        let parts: Option<Vec<String>> = keys
            .key
            .iter()
            .map(|k| item.get(k).map(Value::to_string))
            .collect();
        Some(parts?.join("|"))
    }

    fn final_size(&self, table: &str, key: &Map<String, Value>) -> Option<u64> {
        let k = self.key_of(table, key)?;
        self.final_sizes.get(&(table.to_string(), k)).copied()
    }

    fn seen_item(&self, table: &str, key: &Map<String, Value>) -> Option<&Map<String, Value>> {
        let k = self.key_of(table, key)?;
        self.seen.get(&(table.to_string(), k))
    }

    /// Records the items a call wrote (puts) or returned whole (reads, `ReturnValues`).
    pub fn add_seen_from(&mut self, operation: &str, request: &Value, answer: &Value) {
        let table = request["TableName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut items: Vec<(String, Map<String, Value>)> = Vec::new();
        match operation {
            "PutItem" => items.push((table, obj(&request["Item"]))),
            "GetItem" => items.push((table, obj(&answer["Item"]))),
            "UpdateItem" if request["ReturnValues"].as_str() == Some("ALL_NEW") => {
                items.push((table, obj(&answer["Attributes"])))
            }
            "Query" | "Scan" if !request["IndexName"].is_string() => {
                for i in answer["Items"].as_array().cloned().unwrap_or_default() {
                    items.push((table.clone(), obj(&i)));
                }
            }
            "TransactWriteItems" => {
                for e in request["TransactItems"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    if let Some(put) = e.get("Put") {
                        let t = put["TableName"].as_str().unwrap_or_default().to_string();
                        items.push((t, obj(&put["Item"])));
                    }
                }
            }
            "BatchWriteItem" => {
                for (t, writes) in request["RequestItems"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                {
                    for w in writes.as_array().cloned().unwrap_or_default() {
                        if let Some(put) = w.get("PutRequest") {
                            items.push((t.clone(), obj(&put["Item"])));
                        }
                    }
                }
            }
            _ => {}
        }
        for (table, item) in items {
            if let Some(k) = self.key_of(&table, &item) {
                self.seen.insert((table, k), item);
            }
        }
    }

    /// Records an item seen in a scan at the end of the run.
    pub fn add_final(&mut self, table: &str, item: &Map<String, Value>) {
        if let Some(k) = self.key_of(table, item) {
            self.final_sizes
                .insert((table.to_string(), k), item_size(item));
        }
    }

    /// Indexes whose key attributes are all in `item` (the item is in that sparse index).
    fn indexes_holding(&self, table: &str, item: &Map<String, Value>) -> u64 {
        self.keys.get(table).map_or(0, |t| {
            t.indexes
                .iter()
                .filter(|(_, attrs)| attrs.iter().all(|a| item.contains_key(a)))
                .count() as u64
        })
    }

    /// Indexes one of whose key attributes an update expression sets or removes.
    fn indexes_updated(&self, table: &str, expression: &str, names: &Value) -> u64 {
        let touched = expression_attributes(expression, names);
        self.keys.get(table).map_or(0, |t| {
            t.indexes
                .iter()
                .filter(|(_, attrs)| attrs.iter().any(|a| touched.iter().any(|x| x == a)))
                .count() as u64
        })
    }
}

/// The attribute names an update expression mentions (`#n` resolved through the expression's names).
pub fn expression_attributes(expression: &str, names: &Value) -> Vec<String> {
    expression
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '#' || c == ':'))
        .filter(|t| !t.is_empty() && !t.starts_with(':'))
        .filter(|t| {
            !matches!(
                t.to_ascii_uppercase().as_str(),
                "SET" | "REMOVE" | "ADD" | "DELETE" | "IF_NOT_EXISTS" | "LIST_APPEND"
            )
        })
        .map(|t| {
            if t.starts_with('#') {
                names[t].as_str().unwrap_or(t).to_string()
            } else {
                t.to_string()
            }
        })
        .collect()
}

/// DynamoDB request units of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DdbUnits {
    /// Write request units for the items (transactions count twice).
    pub write: f64,
    /// Extra write units for the global secondary indexes the writes touched.
    pub index_write: f64,
    /// Read request units.
    pub read: f64,
    /// Writes whose item size was not known (billed as 1 unit).
    pub unknown_size: u64,
}

impl std::ops::AddAssign for DdbUnits {
    fn add_assign(&mut self, o: DdbUnits) {
        self.write += o.write;
        self.index_write += o.index_write;
        self.read += o.read;
        self.unknown_size += o.unknown_size;
    }
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Units of one write (`Put`, `Update`, `Delete`, `ConditionCheck`): `op` is its request (or the
/// transaction element), `attributes` what the answer returned for it. `succeeded` false: the condition
/// failed, the write is billed but no index changes.
fn one_write(
    tables: &Tables,
    kind: &str,
    op: &Value,
    attributes: Option<&Map<String, Value>>,
    succeeded: bool,
    factor: f64,
) -> DdbUnits {
    let table = op["TableName"].as_str().unwrap_or_default();
    let mut u = DdbUnits::default();
    let (size, indexes) = match kind {
        "Put" => {
            let item = obj(&op["Item"]);
            (Some(item_size(&item)), tables.indexes_holding(table, &item))
        }
        "Update" => {
            let key = obj(&op["Key"]);
            // The answer's item when ReturnValues gave it all, else the item as the run left it.
            let returned = attributes
                .filter(|_| {
                    matches!(
                        op["ReturnValues"].as_str(),
                        Some("ALL_NEW") | Some("ALL_OLD")
                    )
                })
                .map(item_size);
            let after = tables
                .final_size(table, &key)
                .or_else(|| tables.seen_item(table, &key).map(item_size));
            let size = match (returned, after) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let expression = op["UpdateExpression"].as_str().unwrap_or_default();
            (
                size,
                tables.indexes_updated(table, expression, &op["ExpressionAttributeNames"]),
            )
        }
        "Delete" => match attributes
            .filter(|a| !a.is_empty())
            .or_else(|| tables.seen_item(table, &obj(&op["Key"])))
        {
            Some(old) => (Some(item_size(old)), tables.indexes_holding(table, old)),
            None => (None, 0),
        },
        // ConditionCheck
        _ => (tables.final_size(table, &obj(&op["Key"])), 0),
    };
    if size.is_none() {
        u.unknown_size += 1;
    }
    u.write = write_units(size.unwrap_or(1)) * factor;
    if succeeded {
        u.index_write = indexes as f64;
    }
    u
}

fn consistent(v: &Value) -> bool {
    v["ConsistentRead"].as_bool().unwrap_or(false)
}

/// Read units of a Query or Scan answer: the returned items' sizes summed (the full item's size when
/// the scan at the end knows it, as a projection does not lower the bill), rounded up per request, and
/// scaled by scanned/returned when a filter dropped items.
fn query_units(tables: &Tables, request: &Value, answer: &Value) -> f64 {
    let table = request["TableName"].as_str().unwrap_or_default();
    let on_index = request["IndexName"].is_string();
    let items = answer["Items"].as_array().cloned().unwrap_or_default();
    let mut size: u64 = items
        .iter()
        .map(|i| {
            let i = obj(i);
            let seen = item_size(&i);
            if on_index {
                seen
            } else {
                tables.final_size(table, &i).unwrap_or(0).max(seen)
            }
        })
        .sum();
    let count = answer["Count"].as_u64().unwrap_or(items.len() as u64);
    let scanned = answer["ScannedCount"].as_u64().unwrap_or(count);
    if count > 0 && scanned > count {
        size = size * scanned / count;
    }
    read_units(size, consistent(request) && !on_index)
}

/// DynamoDB request units of one call, from its request and moto's answer.
pub fn dynamodb_units(
    tables: &Tables,
    operation: &str,
    request: &Value,
    status: u16,
    answer: &Value,
) -> DdbUnits {
    let failed_condition = status == 400
        && answer["__type"].as_str().is_some_and(|t| {
            t.contains("ConditionalCheckFailed") || t.contains("TransactionCanceled")
        });
    if status != 200 && !failed_condition {
        return DdbUnits::default();
    }
    let ok = status == 200;
    let returned = answer["Attributes"].as_object();
    let mut u = DdbUnits::default();
    match operation {
        "PutItem" => u += one_write(tables, "Put", request, None, ok, 1.0),
        "UpdateItem" => u += one_write(tables, "Update", request, returned, ok, 1.0),
        "DeleteItem" => {
            // A failed condition returns the item only with ReturnValuesOnConditionCheckFailure.
            let old = returned.or_else(|| answer["Item"].as_object());
            u += one_write(tables, "Delete", request, old, ok, 1.0)
        }
        "BatchWriteItem" => {
            if let Some(tables_requests) = request["RequestItems"].as_object() {
                for (table, writes) in tables_requests {
                    for w in writes.as_array().cloned().unwrap_or_default() {
                        if let Some(put) = w.get("PutRequest") {
                            let mut op = put.clone();
                            op["TableName"] = Value::String(table.clone());
                            u += one_write(tables, "Put", &op, None, true, 1.0);
                        } else if let Some(del) = w.get("DeleteRequest") {
                            let mut op = del.clone();
                            op["TableName"] = Value::String(table.clone());
                            u += one_write(tables, "Delete", &op, None, true, 1.0);
                        }
                    }
                }
            }
            // Unprocessed writes are not billed; the caller sends them again.
            if let Some(unprocessed) = answer["UnprocessedItems"].as_object() {
                let n: usize = unprocessed
                    .values()
                    .map(|w| w.as_array().map_or(0, Vec::len))
                    .sum();
                u.write = (u.write - n as f64).max(0.0);
            }
        }
        "TransactWriteItems" => {
            for element in request["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if let Some((kind, op)) = element.as_object().and_then(|o| o.iter().next()) {
                    u += one_write(tables, kind, op, None, ok, 2.0);
                }
            }
        }
        "GetItem" => {
            let table = request["TableName"].as_str().unwrap_or_default();
            let size = answer["Item"].as_object().map_or(0, |item| {
                tables
                    .final_size(table, item)
                    .unwrap_or(0)
                    .max(item_size(item))
            });
            u.read = read_units(size, consistent(request));
        }
        "BatchGetItem" => {
            for (table, asked) in request["RequestItems"]
                .as_object()
                .cloned()
                .unwrap_or_default()
            {
                let strong = consistent(&asked);
                let keys = asked["Keys"].as_array().map_or(0, Vec::len);
                let found = answer["Responses"][&table]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let unprocessed = answer["UnprocessedKeys"][&table]["Keys"]
                    .as_array()
                    .map_or(0, Vec::len);
                for item in &found {
                    u.read += read_units(item_size(&obj(item)), strong);
                }
                // A key not found still costs the minimum read.
                let missing = keys.saturating_sub(found.len() + unprocessed);
                u.read += missing as f64 * read_units(0, strong);
            }
        }
        "TransactGetItems" => {
            for r in answer["Responses"].as_array().cloned().unwrap_or_default() {
                u.read += 2.0 * read_units(item_size(&obj(&r["Item"])), true);
            }
        }
        "Query" | "Scan" => u.read = query_units(tables, request, answer),
        _ => {}
    }
    u
}

/// Parses a JSON body, or `null`.
pub fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_string_attribute_weighs_its_name_and_its_utf8_bytes() {
        // "nome" (4) + "João" (5 bytes in UTF-8).
        assert_eq!(item_size(&map(json!({"nome": {"S": "João"}}))), 9);
    }

    #[test]
    fn a_number_weighs_one_byte_per_two_significant_digits_plus_one() {
        assert_eq!(number_size("12345"), 4); // 5 digits -> 3 + 1
        assert_eq!(number_size("100"), 2); // trailing zeros trimmed: "1"
        assert_eq!(number_size("-0.0012"), 2); // "12"
        assert_eq!(number_size("1.5E+3"), 2); // "15"
        assert_eq!(number_size("1764374401"), 6); // 10 digits -> 5 + 1
        assert_eq!(number_size("1764374400"), 5); // "17643744": 8 digits -> 4 + 1
        assert_eq!(item_size(&map(json!({"n": {"N": "42"}}))), 1 + 2);
    }

    #[test]
    fn binary_booleans_and_null_weigh_as_documented() {
        // "b" + 3 raw bytes (base64 "AQID"), "t" + 1, "z" + 1.
        let item = map(json!({"b": {"B": "AQID"}, "t": {"BOOL": true}, "z": {"NULL": true}}));
        assert_eq!(item_size(&item), 4 + 2 + 2);
    }

    #[test]
    fn lists_and_maps_add_three_bytes_and_one_byte_per_element() {
        // "l": 3 + (1 + 1 ["a"]) + (1 + 2 [N "7"]) = 8, plus the name: 9.
        assert_eq!(
            item_size(&map(json!({"l": {"L": [{"S": "a"}, {"N": "7"}]}}))),
            9
        );
        // "m": 3 + (1 + "k"(1) + "v"(1)) = 6, plus the name: 7. An empty map: 3 + name.
        assert_eq!(item_size(&map(json!({"m": {"M": {"k": {"S": "v"}}}}))), 7);
        assert_eq!(item_size(&map(json!({"e": {"M": {}}}))), 4);
    }

    #[test]
    fn sets_weigh_the_sum_of_their_members() {
        let item = map(json!({"s": {"SS": ["ab", "c"]}, "n": {"NS": ["1", "22"]}}));
        assert_eq!(item_size(&item), (1 + 3) + (1 + 2 + 2));
    }

    #[test]
    fn writes_round_up_per_started_kilobyte() {
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(write_units(3000), 3.0);
    }

    #[test]
    fn reads_round_up_per_started_4_kb_and_halve_when_eventually_consistent() {
        assert_eq!(read_units(1, true), 1.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
        assert_eq!(read_units(100, false), 0.5);
    }

    #[test]
    fn sqs_bills_one_request_per_started_64_kib() {
        assert_eq!(sqs_billed_requests(0), 1);
        assert_eq!(sqs_billed_requests(65_536), 1);
        assert_eq!(sqs_billed_requests(65_537), 2);
        assert_eq!(sqs_billed_requests(256 * 1024), 4);
    }

    #[test]
    fn a_message_batch_is_billed_on_its_total_payload() {
        let body = "x".repeat(40_000);
        let request = json!({"Entries": [{"MessageBody": body}, {"MessageBody": body}]});
        let payload = sqs_payload("SendMessageBatch", &request, &Value::Null);
        assert_eq!(payload, 80_000);
        assert_eq!(sqs_billed_requests(payload), 2);
        let attr = json!({"MessageBody": "ab", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "vv"}}});
        assert_eq!(
            sqs_payload("SendMessage", &attr, &Value::Null),
            2 + 1 + 6 + 2
        );
    }

    #[test]
    fn requests_are_classified_by_target_then_as_s3() {
        assert_eq!(
            classify("POST", "/", Some("DynamoDB_20120810.PutItem")),
            ("DynamoDB", "PutItem".to_string())
        );
        assert_eq!(
            classify("POST", "/", Some("AmazonSQS.SendMessage")),
            ("SQS", "SendMessage".to_string())
        );
        assert_eq!(
            classify("POST", "/", Some("AmazonSSM.GetParameter")).0,
            "SSM"
        );
        assert_eq!(
            classify("PUT", "/lake/events/part.parquet", None),
            ("S3", "PUT".to_string())
        );
        assert_eq!(
            classify("GET", "/config/fluxo.toml", None),
            ("S3", "GET".to_string())
        );
        assert_eq!(
            classify("GET", "/lake?list-type=2&prefix=x", None),
            ("S3", "PUT".to_string())
        );
        assert_eq!(classify("DELETE", "/b/k", None).1, "DELETE");
    }

    fn leads_tables() -> Tables {
        let mut t = Tables::default();
        t.keys.insert(
            "Leads".into(),
            TableKeys {
                key: vec!["pk".into(), "sk".into()],
                indexes: vec![
                    (
                        "Unqueued".into(),
                        vec!["unqueued".into(), "unqueued_since".into()],
                    ),
                    ("EmailFingerprint".into(), vec!["email_fp".into()]),
                ],
            },
        );
        t
    }

    #[test]
    fn a_put_pays_its_size_and_one_write_per_index_it_lands_in() {
        let t = leads_tables();
        let big = "x".repeat(1500);
        let request = json!({"TableName": "Leads", "Item": {
            "pk": {"S": "LEAD#1"}, "sk": {"S": "LEAD"}, "email_fp": {"S": "fp"},
            "unqueued": {"S": "1"}, "unqueued_since": {"N": "1"}, "envelope": {"S": big}}});
        let u = dynamodb_units(&t, "PutItem", &request, 200, &json!({}));
        assert_eq!(u.write, 2.0);
        assert_eq!(u.index_write, 2.0);
        // The same put whose condition failed: billed, but no index changes.
        let failed =
            json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"});
        let u = dynamodb_units(&t, "PutItem", &request, 400, &failed);
        assert_eq!((u.write, u.index_write), (2.0, 0.0));
        // Any other error is not billed.
        let u = dynamodb_units(
            &t,
            "PutItem",
            &request,
            400,
            &json!({"__type": "ValidationException"}),
        );
        assert_eq!(u, DdbUnits::default());
    }

    #[test]
    fn an_update_pays_the_final_items_size_and_the_indexes_its_expression_touches() {
        let mut t = leads_tables();
        let item = map(
            json!({"pk": {"S": "LEAD#1"}, "sk": {"S": "LEAD"}, "blob": {"S": "y".repeat(2100)}}),
        );
        t.add_final("Leads", &item);
        let request = json!({"TableName": "Leads",
            "Key": {"pk": {"S": "LEAD#1"}, "sk": {"S": "LEAD"}},
            "UpdateExpression": "SET #s = :s REMOVE unqueued, unqueued_since",
            "ExpressionAttributeNames": {"#s": "status"}});
        let u = dynamodb_units(&t, "UpdateItem", &request, 200, &json!({}));
        assert_eq!((u.write, u.index_write, u.unknown_size), (3.0, 1.0, 0));
        // An item no longer there (deleted later) and no ReturnValues: 1 unit, flagged unknown.
        let gone = json!({"TableName": "Leads", "Key": {"pk": {"S": "X"}, "sk": {"S": "Y"}},
            "UpdateExpression": "SET a = :a"});
        let u = dynamodb_units(&t, "UpdateItem", &gone, 200, &json!({}));
        assert_eq!((u.write, u.index_write, u.unknown_size), (1.0, 0.0, 1));
        // ReturnValues ALL_NEW: the returned item.
        let returned = json!({"TableName": "Leads", "Key": {"pk": {"S": "X"}, "sk": {"S": "Y"}},
            "UpdateExpression": "SET a = :a", "ReturnValues": "ALL_NEW"});
        let answer = json!({"Attributes": {"a": {"S": "z".repeat(1100)}}});
        let u = dynamodb_units(&t, "UpdateItem", &returned, 200, &answer);
        assert_eq!((u.write, u.unknown_size), (2.0, 0));
    }

    #[test]
    fn a_transaction_counts_each_item_twice() {
        let t = leads_tables();
        let request = json!({"TransactItems": [
            {"Put": {"TableName": "Leads", "Item": {"pk": {"S": "A"}, "sk": {"S": "B"}, "email_fp": {"S": "f"}}}},
            {"Put": {"TableName": "Leads", "Item": {"pk": {"S": "C"}, "sk": {"S": "D"}}}}]});
        let u = dynamodb_units(&t, "TransactWriteItems", &request, 200, &json!({}));
        assert_eq!((u.write, u.index_write), (4.0, 1.0));
    }

    #[test]
    fn a_batch_write_counts_each_item() {
        let t = leads_tables();
        let request = json!({"RequestItems": {"Leads": [
            {"PutRequest": {"Item": {"pk": {"S": "A"}, "sk": {"S": "B"}}}},
            {"PutRequest": {"Item": {"pk": {"S": "C"}, "sk": {"S": "D"}, "big": {"S": "q".repeat(1030)}}}}]}});
        let u = dynamodb_units(
            &t,
            "BatchWriteItem",
            &request,
            200,
            &json!({"UnprocessedItems": {}}),
        );
        assert_eq!(u.write, 3.0);
    }

    #[test]
    fn reads_are_billed_on_the_answer_and_its_consistency() {
        let t = leads_tables();
        let strong = json!({"TableName": "Leads", "Key": {}, "ConsistentRead": true});
        let answer =
            json!({"Item": {"pk": {"S": "A"}, "sk": {"S": "B"}, "x": {"S": "z".repeat(5000)}}});
        assert_eq!(
            dynamodb_units(&t, "GetItem", &strong, 200, &answer).read,
            2.0
        );
        let eventual = json!({"TableName": "Leads", "Key": {}});
        assert_eq!(
            dynamodb_units(&t, "GetItem", &eventual, 200, &answer).read,
            1.0
        );
        // Nothing found still costs the minimum.
        assert_eq!(
            dynamodb_units(&t, "GetItem", &strong, 200, &json!({})).read,
            1.0
        );
        // A query sums its items, then rounds up once.
        let items: Vec<Value> = (0..3)
            .map(|i| json!({"pk": {"S": format!("P{i}")}, "sk": {"S": "S"}, "x": {"S": "z".repeat(1500)}}))
            .collect();
        let q = json!({"TableName": "Leads", "ConsistentRead": true});
        let answer = json!({"Items": items, "Count": 3, "ScannedCount": 3});
        assert_eq!(dynamodb_units(&t, "Query", &q, 200, &answer).read, 2.0);
    }

    #[test]
    fn an_update_expression_names_the_attributes_it_changes() {
        let names = json!({"#u": "unqueued"});
        let attrs = expression_attributes("SET #u = :u, unqueued_since = :t REMOVE lease", &names);
        assert_eq!(attrs, ["unqueued", "unqueued_since", "lease"]);
    }
}
