//! Server-rendered SVG charts, hand-written: no JavaScript, no external resources. Every text that
//! comes from data is escaped. Charts scale to the page width (`viewBox`), so they read on a phone.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::charts::{Cell, DataTable};

const PALETTE: [&str; 10] = [
    "#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d",
];
const W: f64 = 640.0;
const H: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for XML and HTML (content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(title: &str, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"{}\" class=\"chart\"><title>{}</title>",
        esc(title),
        esc(title)
    )
}

fn empty(title: &str) -> String {
    let mut s = open(title, 80.0);
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"44\" text-anchor=\"middle\" class=\"muted\">No data in this range</text></svg>",
        W / 2.0
    );
    s
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn y_axis(s: &mut String, max: f64, height: f64) {
    let plot = height - TOP - BOTTOM;
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = TOP + plot - plot * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            short(v)
        );
    }
}

fn short(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 1_000.0 {
        format!("{:.1}k", v / 1_000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn legend(s: &mut String, names: &[String], y: f64) {
    let mut x = LEFT;
    for (i, n) in names.iter().enumerate() {
        let label: String = n.chars().take(18).collect();
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{}</text>",
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 14.0,
            y,
            esc(&label)
        );
        x += 24.0 + 6.5 * label.chars().count() as f64;
        if x > W - 80.0 {
            break;
        }
    }
}

/// Leads per day, stacked by source (`day, source, leads`).
pub fn stacked_days(t: &DataTable) -> String {
    if t.rows.is_empty() {
        return empty(t.title);
    }
    let mut days: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for r in &t.rows {
        let (day, source, n) = (r[0].text(), r[1].text(), r[2].number().unwrap_or(0.0));
        *days
            .entry(day)
            .or_default()
            .entry(source.clone())
            .or_default() += n;
        *totals.entry(source).or_default() += n;
    }
    let mut sources: Vec<String> = totals.keys().cloned().collect();
    sources.sort_by(|a, b| totals[b].total_cmp(&totals[a]));
    let max = nice_max(
        days.values()
            .map(|m| m.values().sum::<f64>())
            .fold(0.0, f64::max),
    );
    let height = H + 18.0;
    let mut s = open(t.title, height);
    y_axis(&mut s, max, H);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / days.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    for (i, (day, by_source)) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = TOP + plot_h;
        for (k, source) in sources.iter().enumerate() {
            let n = by_source.get(source).copied().unwrap_or(0.0);
            if n <= 0.0 {
                continue;
            }
            let h = plot_h * n / max;
            y -= h;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {n}</title></rect>",
                PALETTE[k % PALETTE.len()],
                esc(day),
                esc(source)
            );
        }
        let every = (days.len() / 8).max(1);
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{}</text>",
                x + bar / 2.0,
                TOP + plot_h + 14.0,
                esc(day.get(5..).unwrap_or(day))
            );
        }
    }
    legend(&mut s, &sources, height - 8.0);
    s.push_str("</svg>");
    s
}

/// The funnel as horizontal bars, each with its count and what was lost before it.
pub fn funnel(t: &DataTable) -> String {
    let max = t
        .rows
        .iter()
        .filter_map(|r| r[1].number())
        .fold(0.0, f64::max);
    if t.rows.is_empty() || max <= 0.0 {
        return empty(t.title);
    }
    let row_h = 46.0;
    let height = TOP + row_h * t.rows.len() as f64;
    let mut s = open(t.title, height);
    let label_w = 150.0;
    let plot_w = W - label_w - RIGHT - 60.0;
    for (i, r) in t.rows.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        let n = r[1].number().unwrap_or(0.0);
        let w = (plot_w * n / max).max(1.0);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" class=\"label\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"20\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{}</text>",
            y + 15.0,
            esc(&r[0].text()),
            PALETTE[i % PALETTE.len()],
            label_w + w + 6.0,
            y + 15.0,
            short(n)
        );
        let lost = r[2].number().unwrap_or(0.0);
        if lost > 0.0 {
            let because: String = r[3].text().chars().take(90).collect();
            let _ = write!(
                s,
                "<text x=\"{label_w}\" y=\"{:.1}\" class=\"loss\">-{} lost: {}</text>",
                y + 34.0,
                short(lost),
                esc(&because)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One small CPA chart per campaign: CPA line, dashed target, a triangle at each bid change (up when
/// the bid rose, down when it fell).
pub fn cpa_multiples(t: &DataTable) -> String {
    if t.rows.is_empty() {
        return empty(t.title);
    }
    let mut campaigns: BTreeMap<String, Vec<&Vec<Cell>>> = BTreeMap::new();
    for r in &t.rows {
        campaigns.entry(r[0].text()).or_default().push(r);
    }
    let mut out = String::from("<div class=\"multiples\">");
    for (campaign, rows) in &campaigns {
        let cw = 300.0;
        let ch = 150.0;
        let (l, r_, tp, b) = (40.0, 8.0, 22.0, 18.0);
        let max = nice_max(
            rows.iter()
                .flat_map(|r| [r[2].number(), r[3].number()])
                .flatten()
                .fold(0.0, f64::max),
        );
        let currency = rows.first().map(|r| r[4].text()).unwrap_or_default();
        let title = format!("{campaign} ({currency})");
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {cw} {ch}\" role=\"img\" aria-label=\"CPA of {}\" class=\"small\"><title>CPA of {}</title><text x=\"{l}\" y=\"14\" class=\"label\">{}</text>",
            esc(campaign),
            esc(campaign),
            esc(&title)
        );
        let pw = cw - l - r_;
        let ph = ch - tp - b;
        let n = rows.len().max(2) - 1;
        let x = |i: usize| l + pw * i as f64 / n as f64;
        let y = |v: f64| tp + ph - ph * v / max;
        let _ = write!(
            out,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">0</text>",
            cw - r_,
            tp,
            tp,
            l - 3.0,
            tp + 4.0,
            short(max),
            l - 3.0,
            tp + ph
        );
        let line = |col: usize| -> String {
            rows.iter()
                .enumerate()
                .filter_map(|(i, r)| r[col].number().map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            out,
            "<polyline points=\"{}\" class=\"target\"/><polyline points=\"{}\" class=\"cpa\"/>",
            line(3),
            line(2)
        );
        for (i, r) in rows.iter().enumerate() {
            if let (Some(before), Some(after)) = (r[5].number(), r[6].number()) {
                let cy = r[2].number().map_or(tp + ph, y);
                let (cx, up) = (x(i), after > before);
                let points = if up {
                    format!(
                        "{cx:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                        cy - 7.0,
                        cx - 5.0,
                        cy + 2.0,
                        cx + 5.0,
                        cy + 2.0
                    )
                } else {
                    format!(
                        "{cx:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                        cy + 7.0,
                        cx - 5.0,
                        cy - 2.0,
                        cx + 5.0,
                        cy - 2.0
                    )
                };
                let _ = write!(
                    out,
                    "<polygon points=\"{points}\" class=\"{}\"><title>{}: bid {before:.2} to {after:.2}</title></polygon>",
                    if up { "up" } else { "down" },
                    esc(&r[1].text())
                );
            }
        }
        let first = rows.first().map(|r| r[1].text()).unwrap_or_default();
        let last = rows.last().map(|r| r[1].text()).unwrap_or_default();
        let _ = write!(
            out,
            "<text x=\"{l}\" y=\"{:.1}\" class=\"tick\">{}</text><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text></svg>",
            ch - 4.0,
            esc(&first),
            cw - r_,
            ch - 4.0,
            esc(&last)
        );
    }
    out.push_str("</div>");
    out
}

/// Spend and conversions per platform, as two bar groups.
pub fn platforms(t: &DataTable) -> String {
    if t.rows.is_empty() {
        return empty(t.title);
    }
    let mut s = open(t.title, H);
    let half = (W - LEFT - RIGHT) / 2.0;
    let plot_h = H - TOP - BOTTOM;
    for (g, (col, label)) in [(3usize, "spend"), (4usize, "conversions")]
        .iter()
        .enumerate()
    {
        let max = nice_max(
            t.rows
                .iter()
                .filter_map(|r| r[*col].number())
                .fold(0.0, f64::max),
        );
        let x0 = LEFT + half * g as f64;
        let slot = (half - 20.0) / t.rows.len() as f64;
        for (i, r) in t.rows.iter().enumerate() {
            let v = r[*col].number().unwrap_or(0.0);
            let h = plot_h * v / max;
            let x = x0 + slot * i as f64 + slot * 0.15;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {label}: {v:.2}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{}</text>",
                TOP + plot_h - h,
                slot * 0.7,
                PALETTE[i % PALETTE.len()],
                esc(&r[0].text()),
                x + slot * 0.35,
                TOP + plot_h + 14.0,
                esc(&r[0].text()),
                x + slot * 0.35,
                (TOP + plot_h - h - 4.0).max(10.0),
                short(v)
            );
        }
        let caption = if *col == 3 {
            format!(
                "spend ({})",
                t.rows.first().map(|r| r[1].text()).unwrap_or_default()
            )
        } else {
            "conversions".to_string()
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"label\">{}</text>",
            x0 + half / 2.0 - 10.0,
            H - 6.0,
            esc(&caption)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_text_is_escaped_in_charts() {
        let t = DataTable {
            name: "leads-by-source",
            title: "t",
            columns: vec!["day", "source", "leads"],
            rows: vec![vec![
                Cell::Text("2026-11-28".into()),
                Cell::Text("<script>alert(1)</script>".into()),
                Cell::Int(3),
            ]],
        };
        let svg = stacked_days(&t);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn axes_round_up_to_readable_numbers() {
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
