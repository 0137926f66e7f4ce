//! The `[lead_router]` section: qualification rules, segments, the CRM connector and batch processing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Located};
use crate::crm::config::CrmConfig;

/// The lead-router function's timeout, in seconds: `LeadRouterFunction.Properties.Timeout` in
/// infra/template.yaml (a unit test keeps the two equal). Config validation runs where the template is
/// not at hand (`cargo xtask` checks, cold start), so the fact lives here too.
pub const FUNCTION_TIMEOUT_SECS: u64 = 30;
/// No new work starts this close to Lambda's deadline: what is left goes back to SQS.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// CRM calls stop this much earlier still, leaving time to record their outcomes and fan out.
pub const CRM_RESERVE: Duration = Duration::from_secs(2);

/// The time CRM calls may take in one invocation: the function's timeout less the margin and the reserve.
pub fn crm_budget() -> Duration {
    Duration::from_secs(FUNCTION_TIMEOUT_SECS)
        .saturating_sub(DEADLINE_MARGIN)
        .saturating_sub(CRM_RESERVE)
}

/// Lead-router settings. Every table is optional; an empty section routes nothing anywhere.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// How matching rules combine; see [`RuleMode`].
    #[serde(default)]
    pub mode: RuleMode,
    /// Outcomes every lead gets when no matching rule set them.
    #[serde(default)]
    pub defaults: DefaultsConfig,
    /// Qualification rules, evaluated in file order.
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
    /// Each segment's email sequences and audiences. Every segment a rule names must be declared here.
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentConfig>,
    /// The CRM connector.
    #[serde(default)]
    pub crm: CrmConfig,
    /// Batch processing limits.
    #[serde(default)]
    pub processing: ProcessingConfig,
}

/// How matching rules combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// Every matching rule applies, in file order: scores add up, sequences and audiences are merged,
    /// and `segment`, `crm_status` and `crm_owner` come from the first matching rule that sets them.
    /// A rule with `stop = true` ends the evaluation once it has applied.
    #[default]
    Accumulate,
    /// Only the first matching rule applies.
    FirstMatch,
}

/// Outcomes applied when no matching rule set them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Segment of a lead no rule segmented.
    #[serde(default)]
    pub segment: Option<Spanned<String>>,
    /// CRM status of a lead no rule gave one (the article's `novo_lead`).
    #[serde(default)]
    pub crm_status: Option<String>,
    /// CRM owner of a lead no rule gave one.
    #[serde(default)]
    pub crm_owner: Option<String>,
}

/// One qualification rule: conditions, then outcomes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, recorded in the decision of every lead the rule matched.
    pub name: Spanned<String>,
    /// All of these must hold. Empty means the rule matches every lead.
    #[serde(default)]
    pub when: Vec<Spanned<ConditionConfig>>,
    /// At least one of these must hold, when any are given (on top of `when`).
    #[serde(default)]
    pub when_any: Vec<Spanned<ConditionConfig>>,
    /// Points added to the lead's score.
    #[serde(default)]
    pub score: i64,
    /// Segment given to the lead.
    #[serde(default)]
    pub segment: Option<Spanned<String>>,
    /// Email sequences the lead is enrolled in.
    #[serde(default)]
    pub sequences: Vec<Spanned<String>>,
    /// Ad audiences the lead is added to.
    #[serde(default)]
    pub audiences: Vec<Spanned<String>>,
    /// CRM status sent with the upsert.
    #[serde(default)]
    pub crm_status: Option<String>,
    /// CRM owner sent with the upsert.
    #[serde(default)]
    pub crm_owner: Option<String>,
    /// Stop evaluating later rules once this one matched (accumulate mode).
    #[serde(default)]
    pub stop: bool,
}

/// A test on one field. Exactly one operator must be given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Canonical field or alias (`interesse`), `utm_source`/`utm.source`, or `custom.<name>`.
    pub field: Spanned<String>,
    /// The value equals this text.
    #[serde(default)]
    pub equals: Option<String>,
    /// The value is one of these texts.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
    /// The value contains this text.
    #[serde(default)]
    pub contains: Option<String>,
    /// The value matches this regular expression (Rust `regex` syntax, unanchored).
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
    /// `true`: the field has a non-empty value; `false`: it has none.
    #[serde(default)]
    pub exists: Option<bool>,
    /// The value, read as a number, is greater than this.
    #[serde(default)]
    pub gt: Option<f64>,
    /// The value, read as a number, is at least this.
    #[serde(default)]
    pub gte: Option<f64>,
    /// The value, read as a number, is less than this.
    #[serde(default)]
    pub lt: Option<f64>,
    /// The value, read as a number, is at most this.
    #[serde(default)]
    pub lte: Option<f64>,
    /// Compare text case-insensitively (equals, in, contains, regex).
    #[serde(default)]
    pub ignore_case: bool,
    /// Negate the test.
    #[serde(default)]
    pub not: bool,
}

/// A segment's destinations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Email sequences every lead of the segment is enrolled in.
    #[serde(default)]
    pub sequences: Vec<Spanned<String>>,
    /// Ad audiences every lead of the segment is added to.
    #[serde(default)]
    pub audiences: Vec<Spanned<String>>,
}

/// Batch processing limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Messages of one batch processed at the same time (and CRM calls in flight).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds an in-flight effect claim makes a duplicate delivery wait (it is retried later).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_concurrency() -> usize {
    10
}

fn default_lease_secs() -> u64 {
    60
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            concurrency: default_concurrency(),
            lease_secs: default_lease_secs(),
        }
    }
}

impl RouterConfig {
    /// Checks what serde cannot: field names, operators, regexes, segment references, the connector.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        crate::routing::rules::RuleSet::compile(self)
            .map_err(|e| at.error(e.span, &e.field, e.message))?;
        self.crm.validate(at)?;
        if self.processing.concurrency == 0 || self.processing.concurrency > 100 {
            return Err(at.error(
                None,
                "lead_router.processing.concurrency",
                "must be between 1 and 100",
            ));
        }
        // A lease shorter than an invocation would let a redelivery take an effect still being performed.
        if self.processing.lease_secs < FUNCTION_TIMEOUT_SECS || self.processing.lease_secs > 900 {
            return Err(at.error(
                None,
                "lead_router.processing.lease_secs",
                format!("must be between {FUNCTION_TIMEOUT_SECS} (the function's timeout) and 900"),
            ));
        }
        let crm = &self.crm;
        if crm.connector != crate::crm::config::ConnectorKind::None && !crm.dry_run {
            let attempts = u64::from(crm.max_attempts);
            let worst_ms = attempts
                .saturating_mul(crm.timeout_ms)
                .saturating_add(attempts.saturating_sub(1).saturating_mul(crm.max_delay_ms));
            let budget_ms = u64::try_from(crm_budget().as_millis()).unwrap_or(u64::MAX);
            if worst_ms > budget_ms {
                return Err(at.error(
                    None,
                    "lead_router.crm.max_attempts",
                    format!(
                        "max_attempts x timeout_ms + (max_attempts - 1) x max_delay_ms is {worst_ms} ms, more than the {budget_ms} ms CRM calls may take within the function's {FUNCTION_TIMEOUT_SECS} s timeout; lower them"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn err(text: &str) -> crate::config::ConfigError {
        load_str("f.toml", text).unwrap_err()
    }

    #[test]
    fn an_unknown_operator_names_its_line_and_field() {
        let e = err(
            "[lead_router]\n\n[[lead_router.rules]]\nname = \"a\"\nwhen = [{ field = \"email\", equal = \"x\" }]\n",
        );
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(e.field.contains("rules[0].when[0]"), "{e}");
    }

    #[test]
    fn a_bad_regex_is_refused_at_load_with_its_position() {
        let e = err(
            "[[lead_router.rules]]\nname = \"a\"\nwhen = [{ field = \"email\", regex = \"(unclosed\" }]\n",
        );
        assert_eq!(e.line, 3, "{e}");
        assert_eq!(e.field, "lead_router.rules[0].when[0].regex");
    }

    #[test]
    fn an_undeclared_segment_is_refused() {
        let e = err("[[lead_router.rules]]\nname = \"a\"\nsegment = \"vip\"\n");
        assert_eq!(e.line, 3, "{e}");
        assert_eq!(e.field, "lead_router.rules[0].segment");
        assert!(e.message.contains("vip"), "{e}");
    }

    #[test]
    fn an_unknown_field_name_suggests_the_custom_prefix() {
        let e = err(
            "[[lead_router.rules]]\nname = \"a\"\nwhen = [{ field = \"cargo\", exists = true }]\n",
        );
        assert_eq!(e.field, "lead_router.rules[0].when[0].field");
        assert!(e.message.contains("custom.cargo"), "{e}");
    }

    #[test]
    fn a_condition_with_two_operators_is_refused() {
        let e = err(
            "[[lead_router.rules]]\nname = \"a\"\nwhen = [{ field = \"email\", equals = \"x\", contains = \"y\" }]\n",
        );
        assert!(e.message.contains("exactly one"), "{e}");
    }

    #[test]
    fn duplicate_rule_names_are_refused() {
        let e = err("[[lead_router.rules]]\nname = \"a\"\n[[lead_router.rules]]\nname = \"a\"\n");
        assert_eq!(e.line, 4, "{e}");
    }

    fn crm(extra: &str) -> String {
        format!(
            "[lead_router.crm]\nconnector = \"rest\"\ndry_run = false\n{extra}\n[lead_router.crm.rest]\nurl = \"https://crm.example/leads\"\ntoken = {{ env = \"T\" }}\n"
        )
    }

    #[test]
    fn crm_retries_that_cannot_fit_the_function_timeout_are_refused() {
        let e = err(&crm("timeout_ms = 120000\nmax_attempts = 10"));
        assert_eq!(e.field, "lead_router.crm.max_attempts", "{e}");
        assert!(e.message.contains("30 s timeout"), "{e}");
        let e = err(&crm(
            "timeout_ms = 10000\nmax_attempts = 3\nmax_delay_ms = 5000",
        ));
        assert_eq!(e.field, "lead_router.crm.max_attempts", "{e}");
        // 3 x 5 s + 2 x 5 s = 25 s: the defaults fit exactly.
        load_str(
            "f.toml",
            &crm("timeout_ms = 5000\nmax_attempts = 3\nmax_delay_ms = 5000"),
        )
        .unwrap();
        // Dry-run sends nothing, so it has no retry budget to check.
        load_str(
            "f.toml",
            &crm("timeout_ms = 120000\nmax_attempts = 10")
                .replace("dry_run = false", "dry_run = true"),
        )
        .unwrap();
    }

    #[test]
    fn a_lease_shorter_than_the_function_timeout_is_refused() {
        let e = err("[lead_router.processing]\nlease_secs = 29\n");
        assert_eq!(e.field, "lead_router.processing.lease_secs");
        assert!(e.message.contains("30"), "{e}");
        load_str("f.toml", "[lead_router.processing]\nlease_secs = 30\n").unwrap();
    }

    #[test]
    fn the_function_timeout_is_the_templates() {
        let template = include_str!("../../../infra/template.yaml");
        let indent = |l: &str| l.len() - l.trim_start().len();
        let timeout: Vec<u64> = template
            .lines()
            .skip_while(|l| *l != "  LeadRouterFunction:")
            .skip(1)
            // The resource ends at the next line indented like its name, or less.
            .take_while(|l| l.trim().is_empty() || indent(l) > 2)
            .filter_map(|l| l.trim().strip_prefix("Timeout:"))
            .map(|v| v.trim().parse().expect("a numeric Timeout"))
            .collect();
        assert_eq!(timeout, vec![super::FUNCTION_TIMEOUT_SECS]);
    }

    #[test]
    fn the_default_config_file_is_valid() {
        let text = include_str!("../../../config/fluxo.toml");
        load_str("config/fluxo.toml", text).unwrap();
    }

    #[test]
    fn the_end_to_end_config_file_is_valid() {
        let text = include_str!("../../../tests/e2e/fluxo.toml");
        load_str("tests/e2e/fluxo.toml", text).unwrap();
    }
}
