//! The budget table of `cargo xtask bench`: one row per measured figure, with its budget and whether it
//! holds. Also reads the criterion results and the last `cargo xtask cost` report from `target/`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub subject: String,
    pub measured: String,
    pub budget: String,
    /// `None`: no budget applies (shown for reference).
    pub within: Option<bool>,
}

impl Row {
    pub fn new(
        figure: &str,
        subject: &str,
        measured: String,
        budget: &str,
        within: Option<bool>,
    ) -> Row {
        Row {
            figure: figure.into(),
            subject: subject.into(),
            measured,
            budget: budget.into(),
            within,
        }
    }
}

/// The table as Markdown (the README's performance section shows it as measured).
pub fn markdown(rows: &[Row]) -> String {
    let mut out =
        String::from("| figure | function | measured | budget | within |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.figure,
            r.subject,
            r.measured,
            r.budget,
            match r.within {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        );
    }
    out
}

/// The table for a terminal.
pub fn text(rows: &[Row]) -> String {
    let w = |f: fn(&Row) -> &str| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (a, b, c, d) = (
        w(|r| &r.figure),
        w(|r| &r.subject),
        w(|r| &r.measured),
        w(|r| &r.budget),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<a$}  {:<b$}  {:>c$}  {:<d$}  within",
        "figure", "function", "measured", "budget"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<a$}  {:<b$}  {:>c$}  {:<d$}  {}",
            r.figure,
            r.subject,
            r.measured,
            r.budget,
            match r.within {
                Some(true) => "✓",
                Some(false) => "✗ over",
                None => "-",
            }
        );
    }
    out
}

/// A criterion benchmark's time per iteration, in nanoseconds, from
/// `target/criterion/GROUP/BENCH/new/estimates.json`: the estimate criterion prints, its slope when it
/// has one (linear sampling), else its mean.
pub fn criterion_estimate_ns(criterion_dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let text = std::fs::read_to_string(
        criterion_dir
            .join(group)
            .join(bench)
            .join("new")
            .join("estimates.json"),
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}

/// `target/perf/cost.json` of `cargo xtask cost`: the total per million leads and its measure time.
pub fn cost_per_million(path: &Path) -> Option<(f64, String)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((
        v["per_million_leads"]["total"].as_f64()?,
        v["measured_at"].as_str().unwrap_or("?").to_string(),
    ))
}

/// Bytes as MB (2^20) with two decimals.
#[allow(clippy::cast_precision_loss)]
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row::new(
                "size",
                "lead-router",
                "5.00 MB".into(),
                "<= 6 MB",
                Some(true),
            ),
            Row::new(
                "peak RSS",
                "report-api",
                "40.0 MB".into(),
                "<= 32 MB",
                Some(false),
            ),
            Row::new("render", "report-api", "80 ms".into(), "-", None),
        ]
    }

    #[test]
    fn the_markdown_table_marks_each_row_within_over_or_without_budget() {
        let md = markdown(&rows());
        assert!(md.starts_with("| figure | function | measured | budget | within |"));
        assert!(md.contains("| size | lead-router | 5.00 MB | <= 6 MB | yes |"));
        assert!(md.contains("| 40.0 MB | <= 32 MB | **no** |"));
        assert!(md.contains("| render | report-api | 80 ms | - | - |"));
    }

    #[test]
    fn the_text_table_aligns_its_columns_and_flags_misses() {
        let t = text(&rows());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].ends_with("✗ over"));
        let col = |l: &str| l.find("MB");
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    #[test]
    fn reads_criterion_estimates_and_the_cost_report() {
        let dir = std::env::temp_dir().join(format!("fluxo-table-{}", ulid::Ulid::new()));
        let est = dir.join("intake").join("json").join("new");
        std::fs::create_dir_all(&est).unwrap();
        std::fs::write(
            est.join("estimates.json"),
            r#"{"mean":{"point_estimate":2500.0}}"#,
        )
        .unwrap();
        assert_eq!(criterion_estimate_ns(&dir, "intake", "json"), Some(2500.0));
        assert_eq!(criterion_estimate_ns(&dir, "intake", "other"), None);
        let sloped = dir.join("intake").join("form").join("new");
        std::fs::create_dir_all(&sloped).unwrap();
        std::fs::write(
            sloped.join("estimates.json"),
            r#"{"mean":{"point_estimate":2500.0},"slope":{"point_estimate":2000.0}}"#,
        )
        .unwrap();
        assert_eq!(criterion_estimate_ns(&dir, "intake", "form"), Some(2000.0));
        let cost = dir.join("cost.json");
        std::fs::write(
            &cost,
            r#"{"measured_at":"2026-11-29T01:00:00Z","per_million_leads":{"total":4.25}}"#,
        )
        .unwrap();
        assert_eq!(
            cost_per_million(&cost),
            Some((4.25, "2026-11-29T01:00:00Z".to_string()))
        );
        assert_eq!(mb(3 * 1_048_576 / 2), "1.50 MB");
    }
}
