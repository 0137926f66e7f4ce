//! Consent: the record built from a flag (`consent=yes`) and its companions, or a JSON object.

use chrono::{DateTime, Utc};

use super::values::{flat_text, parse_flag, parse_time};
use super::{Collected, FieldProblem, RawValue};
use crate::domain::Consent;
use crate::domain::fields::{LeadField, normalize_key};

/// Builds the consent record from a flag (`consent=yes`), its companions (`consent_at`,
/// `consent_text`) or an object (`{"granted": true, "at": "...", "text": "..."}`). The flag says whether
/// the time was filled in with `received_at` because the client sent none.
pub(super) fn consent_of(
    collected: &Collected,
    received_at: DateTime<Utc>,
    problems: &mut Vec<FieldProblem>,
) -> Option<(Consent, bool)> {
    let mut flag = collected.consent_flag.clone();
    let mut at_text = collected.get(LeadField::ConsentAt).map(str::to_string);
    let mut text = collected.get(LeadField::ConsentText).map(str::to_string);
    if let Some(object) = &collected.consent_object {
        for (k, v) in object {
            let mut sink = Vec::new();
            match normalize_key(k).as_str() {
                "granted" | "given" | "value" | "opt_in" | "accepted" => flag = Some(v.clone()),
                "at" | "timestamp" | "given_at" | "time" => {
                    at_text = flat_text("consent_at", v, &mut sink)
                }
                "text" | "version" | "wording" => text = flat_text("consent_text", v, &mut sink),
                _ => sink.push(FieldProblem::new(
                    "consent",
                    "has an unknown key (expected granted, at, text)",
                )),
            }
            problems.extend(sink);
        }
    }
    let granted = match flag {
        None => {
            if at_text.is_some() || text.is_some() {
                problems.push(FieldProblem::new(
                    "consent",
                    "is required when consent_at or consent_text is sent",
                ));
            }
            return None;
        }
        Some(RawValue::Bool(b)) => b,
        Some(RawValue::Number(n)) if n == "1" || n == "0" => n == "1",
        Some(RawValue::Text(t)) => match parse_flag(t.trim()) {
            Some(b) => b,
            None => {
                problems.push(FieldProblem::new(
                    "consent",
                    "must be yes or no (true/false, sim/não, on/off, 1/0)",
                ));
                return None;
            }
        },
        Some(_) => {
            problems.push(FieldProblem::new("consent", "must be yes or no"));
            return None;
        }
    };
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > LeadField::ConsentText.max_len())
    {
        problems.push(FieldProblem::new(
            "consent_text",
            "is longer than 2000 characters",
        ));
    }
    let derived = at_text.is_none();
    let at = match at_text {
        None => Some(received_at),
        Some(t) => match parse_time(&t) {
            Some(at) => Some(at),
            None => {
                problems.push(FieldProblem::new(
                    "consent_at",
                    "must be an RFC 3339 time or epoch seconds",
                ));
                None
            }
        },
    };
    Some((Consent { granted, at, text }, derived))
}
