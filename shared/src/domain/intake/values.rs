//! Reading one sent value: as flat text (whitespace collapsed), as a yes/no flag, as a time; and
//! whether a custom field's name is safe to keep.

use chrono::{DateTime, Utc};

use super::{FieldProblem, RawValue};

/// Trims and collapses every run of whitespace into one space. Unicode is kept as is.
pub fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether a custom field name is safe to store and to name in an error.
pub(super) fn is_safe_custom_key(key: &str) -> bool {
    let len = key.chars().count();
    (1..=64).contains(&len)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
}

/// Reads a flat value as text; `None` when absent or empty.
pub(super) fn flat_text(
    field: &str,
    value: &RawValue,
    problems: &mut Vec<FieldProblem>,
) -> Option<String> {
    let text = match value {
        RawValue::Text(s) => collapse_whitespace(s),
        RawValue::Number(n) => n.clone(),
        RawValue::Bool(b) => b.to_string(),
        RawValue::Null => return None,
        RawValue::List => {
            problems.push(FieldProblem::new(
                field,
                "must be a single value, not a list",
            ));
            return None;
        }
        RawValue::Object(_) => {
            problems.push(FieldProblem::new(
                field,
                "must be a single value, not an object",
            ));
            return None;
        }
    };
    (!text.is_empty()).then_some(text)
}

pub(super) fn parse_flag(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" | "sim" | "s" | "checked" | "granted" | "accepted"
        | "aceito" | "agree" => Some(true),
        "false" | "no" | "n" | "off" | "0" | "não" | "nao" | "denied" | "refused" | "recusado" => {
            Some(false)
        }
        _ => None,
    }
}

pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // Epoch seconds or milliseconds, as many form tools send.
    let n: i64 = text.parse().ok()?;
    if n > 10_000_000_000 {
        DateTime::from_timestamp_millis(n)
    } else {
        DateTime::from_timestamp(n, 0)
    }
}
