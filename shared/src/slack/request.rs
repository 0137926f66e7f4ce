//! Slack incoming-webhook messages, pure: Block Kit sections for a run, and reply classification.

use serde_json::{Value, json};

use crate::connector::{Outcome, Reply};
use crate::optimizer::ports::{Change, JournalEntry, OutcomeKind, RunSummary, is_noteworthy};
use crate::optimizer::units;

/// Most blocks Slack accepts in one message.
pub const MAX_BLOCKS: usize = 50;
/// Most characters in one section's text.
pub const MAX_SECTION_CHARS: usize = 3000;

/// Escapes the three characters Slack's mrkdwn reserves.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn money(micros: Option<i64>, e: &JournalEntry) -> String {
    let digits = units::minor_unit_digits(&e.currency);
    micros
        .map(|m| units::format_amount(m, digits))
        .unwrap_or_else(|| "?".into())
}

/// One line about one entry.
pub fn line(e: &JournalEntry) -> String {
    let what = match e.change {
        Some(Change::Pause) => "pause".to_string(),
        Some(Change::Resume) => "resume".to_string(),
        _ => format!(
            "bid {} → {} {}",
            money(e.bid_before_micros, e),
            money(e.bid_after_micros, e),
            e.currency
        ),
    };
    let tag = match e.outcome {
        OutcomeKind::Applied => "applied",
        OutcomeKind::DryRun => "dry-run",
        OutcomeKind::NotifyOnly => "proposed",
        OutcomeKind::Failed => "failed",
        OutcomeKind::Skipped => "skipped",
        OutcomeKind::Unchanged => "kept",
    };
    let subject = format!(
        "`{}` ({} {} {})",
        escape(&e.campaign_id),
        e.platform,
        e.entity_kind,
        escape(&e.entity_id)
    );
    match e.outcome {
        OutcomeKind::Failed | OutcomeKind::Skipped => format!("• {subject}: {}", escape(&e.reason)),
        _ => format!("• {subject}: {what} _({tag})_ — {}", escape(&e.reason)),
    }
}

/// Sections of lines, each under Slack's size limit.
fn sections(title: &str, lines: &[String]) -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut text = format!("*{title}*");
    for l in lines {
        let l: String = l.chars().take(MAX_SECTION_CHARS - 100).collect();
        if text.len() + l.len() + 1 > MAX_SECTION_CHARS {
            blocks.push(section(&text));
            text = String::new();
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&l);
    }
    if !text.is_empty() {
        blocks.push(section(&text));
    }
    blocks
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// The run's messages: a header with counts, then changes, skips for lack of data, and failures. Split into
/// several messages when longer than Slack's 50 blocks.
pub fn run_messages(summary: &RunSummary<'_>) -> Vec<Value> {
    let entries: Vec<&JournalEntry> = summary
        .entries
        .iter()
        .filter(|e| is_noteworthy(e))
        .collect();
    let count = |k: OutcomeKind| summary.entries.iter().filter(|e| e.outcome == k).count();
    let changes: Vec<String> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.outcome,
                OutcomeKind::Applied | OutcomeKind::DryRun | OutcomeKind::NotifyOnly
            )
        })
        .map(|e| line(e))
        .collect();
    let skipped: Vec<String> = entries
        .iter()
        .filter(|e| e.outcome == OutcomeKind::Skipped)
        .map(|e| line(e))
        .collect();
    let failed: Vec<String> = entries
        .iter()
        .filter(|e| e.outcome == OutcomeKind::Failed)
        .map(|e| line(e))
        .collect();
    let headline = format!(
        "{}: {} applied, {} dry-run, {} proposed, {} unchanged, {} skipped, {} failed",
        summary.title,
        count(OutcomeKind::Applied),
        count(OutcomeKind::DryRun),
        count(OutcomeKind::NotifyOnly),
        count(OutcomeKind::Unchanged),
        count(OutcomeKind::Skipped),
        count(OutcomeKind::Failed)
    );
    let mut blocks = vec![section(&format!("*{}*", escape(&headline)))];
    if changes.is_empty() && skipped.is_empty() && failed.is_empty() {
        blocks.push(section("Nothing changed this run."));
    }
    if !changes.is_empty() {
        blocks.extend(sections("Changes", &changes));
    }
    if !skipped.is_empty() {
        blocks.extend(sections("Skipped", &skipped));
    }
    if !failed.is_empty() {
        blocks.extend(sections("Failures", &failed));
    }
    blocks
        .chunks(MAX_BLOCKS)
        .enumerate()
        .map(|(i, chunk)| {
            let text = if i == 0 {
                headline.clone()
            } else {
                format!("{headline} (continued)")
            };
            json!({ "text": text, "blocks": chunk })
        })
        .collect()
}

/// Sorts a webhook reply: `200 ok` success; 429 (with `Retry-After`) and 5xx retryable; other errors,
/// which Slack sends as plain text (`invalid_payload`, `channel_not_found`, `no_service`...), permanent.
pub fn classify(reply: &Reply) -> Outcome<()> {
    match reply.status {
        200..=299 => Outcome::Success(()),
        429 | 500..=599 => Outcome::Retryable {
            reason: reply.summary(),
            retry_after: reply.retry_after(),
        },
        _ => Outcome::Permanent {
            reason: reply.summary(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::Mode;
    use crate::optimizer::ports::EntryKind;
    use chrono::Utc;

    fn entry(campaign: &str, outcome: OutcomeKind, reason: &str) -> JournalEntry {
        JournalEntry {
            entry_id: "01".into(),
            kind: EntryKind::Evaluation,
            run_id: "2026-11-27T20:00:00Z".into(),
            at: Utc::now(),
            campaign_id: campaign.into(),
            platform: "generic",
            account: "demo".into(),
            entity_kind: "campaign",
            entity_id: "123".into(),
            currency: "USD".into(),
            mode: Mode::DryRun,
            config_version: "abc".into(),
            metrics: None,
            target_cpa_micros: Some(4_000_000),
            decision: None,
            rule: Some("cpa_above_target".into()),
            change: Some(Change::SetBid {
                from_micros: 1_000_000,
                to_micros: 900_000,
            }),
            bid_before_micros: Some(1_000_000),
            bid_after_micros: Some(900_000),
            outcome,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_run_message_lists_changes_skips_and_failures_in_sections() {
        let mut skipped = entry("thin", OutcomeKind::Skipped, "3 clicks < minimum 100");
        skipped.rule = Some("insufficient_data".into());
        let entries = vec![
            entry(
                "article-example",
                OutcomeKind::DryRun,
                "CPA 5.00 > 4.80 (1.2 x target 4.00)",
            ),
            skipped,
            entry(
                "down",
                OutcomeKind::Failed,
                "fetching metrics failed: HTTP 503",
            ),
            entry("fine", OutcomeKind::Unchanged, "CPA within band"),
        ];
        let summary = RunSummary {
            run_id: "r",
            title: "Fluxo optimizer run r",
            entries: &entries,
        };
        let messages = run_messages(&summary);
        assert_eq!(messages.len(), 1);
        let blocks = messages[0]["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        let all: Vec<&str> = blocks
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert!(all[1].starts_with("*Changes*\n• `article-example` (generic campaign 123): bid 1.00 → 0.90 USD _(dry-run)_"), "{}", all[1]);
        assert!(all[1].contains("CPA 5.00 &gt; 4.80"), "{}", all[1]);
        assert!(all[2].starts_with("*Skipped*"));
        assert!(all[3].starts_with("*Failures*"));
        assert!(!all.concat().contains("`fine`"));
        assert!(messages[0]["text"].as_str().unwrap().contains("1 dry-run"));
    }

    #[test]
    fn long_runs_split_into_messages_of_at_most_fifty_blocks() {
        let long = "x".repeat(2_000);
        let entries: Vec<JournalEntry> = (0..120)
            .map(|i| entry(&format!("c{i}"), OutcomeKind::Applied, &long))
            .collect();
        let summary = RunSummary {
            run_id: "r",
            title: "t",
            entries: &entries,
        };
        let messages = run_messages(&summary);
        assert!(messages.len() >= 3);
        for m in &messages {
            let blocks = m["blocks"].as_array().unwrap();
            assert!(blocks.len() <= MAX_BLOCKS);
            for b in blocks {
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= MAX_SECTION_CHARS);
            }
        }
    }

    #[test]
    fn slack_plain_text_errors_are_classified() {
        let r = |status, body: &str, headers: Vec<(String, String)>| Reply {
            status,
            headers,
            body: body.into(),
        };
        assert_eq!(classify(&r(200, "ok", vec![])), Outcome::Success(()));
        assert!(
            matches!(classify(&r(404, "channel_not_found", vec![])), Outcome::Permanent { reason } if reason.contains("channel_not_found"))
        );
        assert!(matches!(
            classify(&r(400, "invalid_payload", vec![])),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(&r(500, "rollup_error", vec![])),
            Outcome::Retryable { .. }
        ));
        match classify(&r(429, "", vec![("Retry-After".into(), "3".into())])) {
            Outcome::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mrkdwn_control_characters_are_escaped() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
