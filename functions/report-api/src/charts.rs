//! The dashboard's numbers: each chart's data as a small table (the same table is drawn as SVG and
//! served as JSON and CSV), computed from the facts of the range. Pure, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use fluxo::analytics::{Destination, EffectOutcome, EffectRecord, LeadRecord};
use serde_json::{Map, Value};

use crate::facts::Facts;
use crate::query::Filter;

/// Rows in the "last bid changes" and "failures" tables.
pub const LAST_ROWS: usize = 20;

/// One value of a data table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Num(f64),
    Empty,
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Num(f) => serde_json::Number::from_f64((f * 100.0).round() / 100.0)
                .map_or(Value::Null, Value::Number),
            Cell::Empty => Value::Null,
        }
    }

    /// The cell as CSV: quoted when needed, and a text that a spreadsheet would run as a formula
    /// (`=`, `+`, `-`, `@` first) is prefixed with `'`.
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => {
                let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                    format!("'{s}")
                } else {
                    s.clone()
                };
                if s.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s
                }
            }
            Cell::Int(i) => i.to_string(),
            Cell::Num(f) => format!("{f:.2}"),
            Cell::Empty => String::new(),
        }
    }

    /// The cell as display text.
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Num(f) => format!("{f:.2}"),
            Cell::Empty => String::new(),
        }
    }

    /// The cell as a number, if it is one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Num(f) => Some(*f),
            _ => None,
        }
    }
}

/// One chart's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTable {
    /// The chart's name in `/reports/{name}.json`.
    pub name: &'static str,
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl DataTable {
    fn new(name: &'static str, title: &'static str, columns: Vec<&'static str>) -> Self {
        DataTable {
            name,
            title,
            columns,
            rows: Vec::new(),
        }
    }

    /// The rows as a JSON array of objects.
    pub fn to_json(&self, filter: &Filter) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let obj: Map<String, Value> = self
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| ((*c).to_string(), v.json()))
                    .collect();
                Value::Object(obj)
            })
            .collect();
        serde_json::json!({
            "chart": self.name,
            "title": self.title,
            "from": filter.from.to_string(),
            "to": filter.to.to_string(),
            "source": filter.source,
            "rows": rows,
        })
    }

    /// The rows as CSV (RFC 4180, CRLF line ends, a header line).
    pub fn to_csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push_str("\r\n");
        for r in &self.rows {
            out.push_str(&r.iter().map(Cell::csv).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// The names of the charts, in page order.
pub const NAMES: [&str; 6] = [
    "leads-by-source",
    "funnel",
    "cpa",
    "platforms",
    "bid-changes",
    "failures",
];

/// A lead's source as the dashboard groups it: UTM source, else source name, else intake endpoint.
pub fn source_of(lead: &LeadRecord) -> &str {
    lead.utm_source
        .as_deref()
        .or(lead.source_name.as_deref())
        .unwrap_or(&lead.source_kind)
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn opt_num(v: Option<f64>) -> Cell {
    v.map_or(Cell::Empty, Cell::Num)
}

fn at_text(at: DateTime<Utc>) -> Cell {
    text(at.format("%Y-%m-%d %H:%M").to_string())
}

/// Every chart of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub filter: Filter,
    pub tables: Vec<DataTable>,
    /// Sources seen in the range (for the filter's choices).
    pub sources: Vec<String>,
}

impl Dashboard {
    /// Computes every chart from the facts.
    pub fn of(facts: &Facts, filter: &Filter) -> Dashboard {
        let in_range = |d: NaiveDate| d >= filter.from && d <= filter.to;
        let mut sources: Vec<String> = facts
            .leads
            .iter()
            .filter(|l| in_range(l.received_at.date_naive()))
            .map(|l| source_of(l).to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        sources.sort();
        let leads: Vec<&LeadRecord> = facts
            .leads
            .iter()
            .filter(|l| in_range(l.received_at.date_naive()))
            .filter(|l| filter.source.as_deref().is_none_or(|s| source_of(l) == s))
            .collect();
        let lead_ids: HashSet<&str> = leads.iter().map(|l| l.lead_id.as_str()).collect();
        let effects: Vec<&EffectRecord> = facts
            .effects
            .iter()
            .filter(|e| filter.source.is_none() || lead_ids.contains(e.lead_id.as_str()))
            .collect();
        Dashboard {
            filter: filter.clone(),
            tables: vec![
                leads_by_source(&leads),
                funnel(&leads, &effects),
                cpa(facts, filter),
                platforms(facts),
                bid_changes(facts),
                failures(&effects),
            ],
            sources,
        }
    }

    /// One chart's data by name.
    pub fn table(&self, name: &str) -> Option<&DataTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

fn leads_by_source(leads: &[&LeadRecord]) -> DataTable {
    let mut t = DataTable::new(
        "leads-by-source",
        "Leads per day by source",
        vec!["day", "source", "leads"],
    );
    let mut counts: BTreeMap<(NaiveDate, &str), i64> = BTreeMap::new();
    for l in leads {
        *counts
            .entry((l.received_at.date_naive(), source_of(l)))
            .or_default() += 1;
    }
    t.rows = counts
        .into_iter()
        .map(|((day, source), n)| vec![text(day.to_string()), text(source), Cell::Int(n)])
        .collect();
    t
}

/// The latest outcome of each (lead, destination, target) effect.
fn latest<'a>(effects: &[&'a EffectRecord], destination: Destination) -> Vec<&'a EffectRecord> {
    let mut by_key: HashMap<(&str, Option<&str>), &EffectRecord> = HashMap::new();
    for e in effects.iter().filter(|e| e.destination == destination) {
        let key = (e.lead_id.as_str(), e.target.as_deref());
        let newer = by_key.get(&key).is_none_or(|old| {
            e.at > old.at || (e.at == old.at && e.outcome == EffectOutcome::Done)
        });
        if newer {
            by_key.insert(key, e);
        }
    }
    by_key.into_values().collect()
}

fn funnel(leads: &[&LeadRecord], effects: &[&EffectRecord]) -> DataTable {
    let mut t = DataTable::new(
        "funnel",
        "Funnel: received, stored, CRM, email, audience",
        vec!["stage", "leads", "lost", "lost_because"],
    );
    let received: HashSet<&str> = leads.iter().map(|l| l.lead_id.as_str()).collect();
    let leads_with = |d: Destination, done: bool| -> HashSet<&str> {
        latest(effects, d)
            .into_iter()
            .filter(|e| received.contains(e.lead_id.as_str()))
            .filter(|e| !done || e.outcome == EffectOutcome::Done)
            .map(|e| e.lead_id.as_str())
            .collect()
    };
    let routed = leads_with(Destination::Routing, true);
    let crm = leads_with(Destination::Crm, true);
    let email = leads_with(Destination::Email, true);
    let audience = leads_with(Destination::Audience, true);
    // Why leads stop at a destination: the latest outcome of each of its effects that is not done.
    let reasons = |d: Destination, reached: &HashSet<&str>| -> String {
        let mut why: BTreeMap<String, i64> = BTreeMap::new();
        for e in latest(effects, d) {
            if received.contains(e.lead_id.as_str())
                && !reached.contains(e.lead_id.as_str())
                && e.outcome != EffectOutcome::Done
            {
                let label = match (&e.outcome, e.reason.as_deref()) {
                    (o, Some(r)) => format!("{} ({r})", o.as_str()),
                    (o, None) => o.as_str().to_string(),
                };
                *why.entry(label).or_default() += 1;
            }
        }
        why.into_iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let stage = |name: &str, n: usize, prev: usize, because: String| {
        let lost = prev.saturating_sub(n) as i64;
        let because = if lost > 0 && because.is_empty() {
            "no outcome recorded yet (pending, not configured, or in a DLQ)".to_string()
        } else {
            because
        };
        vec![
            text(name),
            Cell::Int(n as i64),
            Cell::Int(lost),
            text(because),
        ]
    };
    t.rows = vec![
        stage("received", received.len(), received.len(), String::new()),
        stage(
            "stored and routed",
            routed.len(),
            received.len(),
            String::new(),
        ),
        stage(
            "CRM upserted",
            crm.len(),
            routed.len(),
            reasons(Destination::Crm, &crm),
        ),
        stage(
            "enrolled in email",
            email.len(),
            crm.len(),
            reasons(Destination::Email, &email),
        ),
        stage(
            "added to an audience",
            audience.len(),
            email.len(),
            reasons(Destination::Audience, &audience),
        ),
    ];
    t
}

/// A bid before and after a change.
type Bids = (Option<f64>, Option<f64>);

fn cpa(facts: &Facts, filter: &Filter) -> DataTable {
    let mut t = DataTable::new(
        "cpa",
        "CPA per campaign against target, bid changes marked",
        vec![
            "campaign_id",
            "at",
            "cpa",
            "target_cpa",
            "currency",
            "bid_before",
            "bid_after",
        ],
    );
    let in_range =
        |at: DateTime<Utc>| at.date_naive() >= filter.from && at.date_naive() <= filter.to;
    let changes: HashMap<(&str, DateTime<Utc>), Bids> = facts
        .bid_changes
        .iter()
        .filter(|b| b.bid_before != b.bid_after && b.bid_after.is_some())
        .filter(|b| matches!(b.outcome.as_str(), "applied" | "dry_run" | "notify_only"))
        .map(|b| ((b.campaign_id.as_str(), b.at), (b.bid_before, b.bid_after)))
        .collect();
    let mut metrics: Vec<_> = facts
        .ad_metrics
        .iter()
        .filter(|m| m.origin == "optimizer" && in_range(m.at))
        .collect();
    metrics.sort_by(|a, b| (&a.campaign_id, a.at).cmp(&(&b.campaign_id, b.at)));
    t.rows = metrics
        .into_iter()
        .map(|m| {
            let (before, after) = changes
                .get(&(m.campaign_id.as_str(), m.at))
                .copied()
                .unwrap_or((None, None));
            vec![
                text(m.campaign_id.clone()),
                at_text(m.at),
                opt_num(m.cpa),
                opt_num(m.target_cpa),
                text(m.currency.clone()),
                opt_num(before),
                opt_num(after),
            ]
        })
        .collect();
    t
}

fn platforms(facts: &Facts) -> DataTable {
    let mut t = DataTable::new(
        "platforms",
        "Spend and conversions per platform (each campaign's latest window in the range)",
        vec![
            "platform",
            "currency",
            "campaigns",
            "spend",
            "conversions",
            "clicks",
        ],
    );
    let mut latest: HashMap<(&str, &str), &fluxo::analytics::AdMetricRecord> = HashMap::new();
    // The optimizer's windows only: the daily extract's one-day rows (origin `daily_extract`) are keyed by
    // the platform's campaign id and would add a second, overlapping figure for the same campaign.
    for m in facts.ad_metrics.iter().filter(|m| m.origin == "optimizer") {
        let key = (m.platform.as_str(), m.campaign_id.as_str());
        if latest.get(&key).is_none_or(|old| m.at > old.at) {
            latest.insert(key, m);
        }
    }
    let mut sums: BTreeMap<(&str, &str), (i64, f64, f64, i64)> = BTreeMap::new();
    for m in latest.values() {
        let s = sums
            .entry((m.platform.as_str(), m.currency.as_str()))
            .or_default();
        s.0 += 1;
        s.1 += m.spend;
        s.2 += m.conversions;
        s.3 += m.clicks;
    }
    t.rows = sums
        .into_iter()
        .map(|((p, c), (n, spend, conv, clicks))| {
            vec![
                text(p),
                text(c),
                Cell::Int(n),
                Cell::Num(spend),
                Cell::Num(conv),
                Cell::Int(clicks),
            ]
        })
        .collect();
    t
}

fn bid_changes(facts: &Facts) -> DataTable {
    let mut t = DataTable::new(
        "bid-changes",
        "Last bid changes",
        vec![
            "at",
            "campaign_id",
            "platform",
            "rule",
            "bid_before",
            "bid_after",
            "currency",
            "mode",
            "outcome",
            "reason",
        ],
    );
    let mut changes: Vec<_> = facts
        .bid_changes
        .iter()
        .filter(|b| b.change.is_some())
        .collect();
    changes.sort_by(|a, b| b.at.cmp(&a.at).then(a.campaign_id.cmp(&b.campaign_id)));
    t.rows = changes
        .into_iter()
        .take(LAST_ROWS)
        .map(|b| {
            vec![
                at_text(b.at),
                text(b.campaign_id.clone()),
                text(b.platform.clone()),
                text(b.rule.clone().unwrap_or_default()),
                opt_num(b.bid_before),
                opt_num(b.bid_after),
                text(b.currency.clone()),
                text(b.mode.clone()),
                text(b.outcome.clone()),
                text(b.reason.clone()),
            ]
        })
        .collect();
    t
}

fn failures(effects: &[&EffectRecord]) -> DataTable {
    let mut t = DataTable::new(
        "failures",
        "Failures: failed for good, or still failing (dead-lettered after the queue's receive limit)",
        vec![
            "at",
            "destination",
            "vendor",
            "target",
            "outcome",
            "error_class",
            "reason",
            "attempts",
            "lead_id",
        ],
    );
    let mut failed: Vec<&EffectRecord> =
        [Destination::Crm, Destination::Email, Destination::Audience]
            .into_iter()
            .flat_map(|d| latest(effects, d))
            .filter(|e| matches!(e.outcome, EffectOutcome::Failed | EffectOutcome::Retrying))
            .collect();
    failed.sort_by_key(|e| std::cmp::Reverse(e.at));
    t.rows = failed
        .into_iter()
        .take(LAST_ROWS)
        .map(|e| {
            vec![
                at_text(e.at),
                text(e.destination.as_str()),
                text(e.vendor.clone().unwrap_or_default()),
                text(e.target.clone().unwrap_or_default()),
                text(e.outcome.as_str()),
                text(e.error_class.clone().unwrap_or_default()),
                text(e.reason.clone().unwrap_or_default()),
                e.attempts.map_or(Cell::Empty, Cell::Int),
                text(e.lead_id.clone()),
            ]
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut t = DataTable::new("x", "x", vec!["a", "b"]);
        t.rows.push(vec![text("=HYPERLINK(\"x\")"), text("a,b")]);
        assert_eq!(t.to_csv(), "a,b\r\n\"'=HYPERLINK(\"\"x\"\")\",\"a,b\"\r\n");
    }
}
