//! The qualification rules engine: compiled once from the config, evaluated per lead without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::fields::{Facts, FieldRef};
use super::profile::{Profile, RoutingView, Submission};
use crate::config::router::{ConditionConfig, RouterConfig, RuleMode};

/// What the rules decided for one lead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Sum of the points of every rule that applied.
    pub score: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Email sequences, in the order rules and the segment added them, without duplicates.
    #[serde(default)]
    pub sequences: Vec<String>,
    /// Ad audiences, in the order rules and the segment added them, without duplicates.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_owner: Option<String>,
    /// Names of the rules that applied, in order.
    #[serde(default)]
    pub matched_rules: Vec<String>,
}

/// A config problem found while compiling the rules, located by span and field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub span: Option<Range<usize>>,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    In(Vec<String>),
    Contains(String),
    Regex(Regex),
    Exists(bool),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
}

#[derive(Debug, Clone)]
struct Condition {
    field: FieldRef,
    test: Test,
    ignore_case: bool,
    not: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    all: Vec<Condition>,
    any: Vec<Condition>,
    score: i64,
    segment: Option<String>,
    sequences: Vec<String>,
    audiences: Vec<String>,
    crm_status: Option<String>,
    crm_owner: Option<String>,
    stop: bool,
}

/// Compiled rules, segments and defaults. Cheap to share; evaluation does no allocation beyond the decision.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    mode: RuleMode,
    rules: Vec<Rule>,
    default_segment: Option<String>,
    default_status: Option<String>,
    default_owner: Option<String>,
    segments: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

fn err(span: Option<Range<usize>>, field: String, message: impl Into<String>) -> RuleError {
    RuleError {
        span,
        field,
        message: message.into(),
    }
}

/// Sequence, audience and segment names end up in queue messages and vendor calls: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1-100 characters of letters, digits, `_`, `-`, `.` or `:`"
        ))
    }
}

fn names(list: &[toml::Spanned<String>], path: &str) -> Result<Vec<String>, RuleError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        check_name(item.get_ref())
            .map_err(|m| err(Some(item.span()), format!("{path}[{i}]"), m))?;
        if !out.contains(item.get_ref()) {
            out.push(item.get_ref().clone());
        }
    }
    Ok(out)
}

fn compile_condition(
    c: &toml::Spanned<ConditionConfig>,
    path: &str,
) -> Result<Condition, RuleError> {
    let span = Some(c.span());
    let c = c.get_ref();
    let field = FieldRef::parse(c.field.get_ref())
        .map_err(|m| err(Some(c.field.span()), format!("{path}.field"), m))?;
    let fold = |s: &str| {
        if c.ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let mut tests = Vec::new();
    if let Some(v) = &c.equals {
        tests.push(Test::Equals(fold(v)));
    }
    if let Some(v) = &c.one_of {
        if v.is_empty() {
            return Err(err(span, format!("{path}.in"), "needs at least one value"));
        }
        tests.push(Test::In(v.iter().map(|s| fold(s)).collect()));
    }
    if let Some(v) = &c.contains {
        tests.push(Test::Contains(fold(v)));
    }
    if let Some(v) = &c.regex {
        let re = RegexBuilder::new(v.get_ref())
            .case_insensitive(c.ignore_case)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                err(
                    Some(v.span()),
                    format!("{path}.regex"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
        tests.push(Test::Regex(re));
    }
    if let Some(v) = c.exists {
        tests.push(Test::Exists(v));
    }
    for (value, make, name) in [
        (c.gt, Test::Gt as fn(f64) -> Test, "gt"),
        (c.gte, Test::Gte, "gte"),
        (c.lt, Test::Lt, "lt"),
        (c.lte, Test::Lte, "lte"),
    ] {
        if let Some(n) = value {
            if !n.is_finite() {
                return Err(err(
                    span,
                    format!("{path}.{name}"),
                    "must be a finite number",
                ));
            }
            tests.push(make(n));
        }
    }
    if tests.len() != 1 {
        return Err(err(
            span,
            path.to_string(),
            format!(
                "needs exactly one operator (equals, in, contains, regex, exists, gt, gte, lt, lte); found {}",
                tests.len()
            ),
        ));
    }
    let test = tests.remove(0);
    Ok(Condition {
        field,
        test,
        ignore_case: c.ignore_case,
        not: c.not,
    })
}

impl RuleSet {
    /// Compiles the `[lead_router]` rules: resolves fields, compiles regexes, checks segment references.
    pub fn compile(config: &RouterConfig) -> Result<Self, RuleError> {
        let mut segments = BTreeMap::new();
        for (name, segment) in &config.segments {
            let path = format!("lead_router.segments.{name}");
            check_name(name).map_err(|m| err(None, path.clone(), m))?;
            let sequences = names(&segment.sequences, &format!("{path}.sequences"))?;
            let audiences = names(&segment.audiences, &format!("{path}.audiences"))?;
            segments.insert(name.clone(), (sequences, audiences));
        }
        let declared = |s: &toml::Spanned<String>, path: String| -> Result<String, RuleError> {
            if segments.contains_key(s.get_ref()) {
                Ok(s.get_ref().clone())
            } else {
                Err(err(
                    Some(s.span()),
                    path,
                    format!(
                        "segment `{}` is not declared under [lead_router.segments]",
                        s.get_ref()
                    ),
                ))
            }
        };
        let default_segment = config
            .defaults
            .segment
            .as_ref()
            .map(|s| declared(s, "lead_router.defaults.segment".into()))
            .transpose()?;

        let mut seen = BTreeSet::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, spanned) in config.rules.iter().enumerate() {
            let path = format!("lead_router.rules[{i}]");
            let r = spanned.get_ref();
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(err(
                    Some(r.name.span()),
                    format!("{path}.name"),
                    "must not be empty",
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(err(
                    Some(r.name.span()),
                    format!("{path}.name"),
                    format!("rule `{name}` is defined twice"),
                ));
            }
            let all = r
                .when
                .iter()
                .enumerate()
                .map(|(j, c)| compile_condition(c, &format!("{path}.when[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let any = r
                .when_any
                .iter()
                .enumerate()
                .map(|(j, c)| compile_condition(c, &format!("{path}.when_any[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let segment = r
                .segment
                .as_ref()
                .map(|s| declared(s, format!("{path}.segment")))
                .transpose()?;
            rules.push(Rule {
                name,
                all,
                any,
                score: r.score,
                segment,
                sequences: names(&r.sequences, &format!("{path}.sequences"))?,
                audiences: names(&r.audiences, &format!("{path}.audiences"))?,
                crm_status: r.crm_status.clone().filter(|s| !s.trim().is_empty()),
                crm_owner: r.crm_owner.clone().filter(|s| !s.trim().is_empty()),
                stop: r.stop,
            });
        }
        Ok(RuleSet {
            mode: config.mode,
            rules,
            default_segment,
            default_status: config
                .defaults
                .crm_status
                .clone()
                .filter(|s| !s.trim().is_empty()),
            default_owner: config
                .defaults
                .crm_owner
                .clone()
                .filter(|s| !s.trim().is_empty()),
            segments,
        })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates the rules for a profile and the submission being routed.
    pub fn evaluate(&self, profile: &Profile, submission: &Submission) -> Decision {
        let mut decision = Decision::default();
        for rule in &self.rules {
            let view = RoutingView {
                profile,
                submission,
                decision: Some(&decision),
            };
            if !rule.matches(&view) {
                continue;
            }
            decision.score = decision.score.saturating_add(rule.score);
            if decision.segment.is_none() {
                decision.segment.clone_from(&rule.segment);
            }
            if decision.crm_status.is_none() {
                decision.crm_status.clone_from(&rule.crm_status);
            }
            if decision.crm_owner.is_none() {
                decision.crm_owner.clone_from(&rule.crm_owner);
            }
            push_unique(&mut decision.sequences, &rule.sequences);
            push_unique(&mut decision.audiences, &rule.audiences);
            decision.matched_rules.push(rule.name.clone());
            if rule.stop || self.mode == RuleMode::FirstMatch {
                break;
            }
        }
        if decision.segment.is_none() {
            decision.segment.clone_from(&self.default_segment);
        }
        if decision.crm_status.is_none() {
            decision.crm_status.clone_from(&self.default_status);
        }
        if decision.crm_owner.is_none() {
            decision.crm_owner.clone_from(&self.default_owner);
        }
        if let Some((sequences, audiences)) =
            decision.segment.as_ref().and_then(|s| self.segments.get(s))
        {
            push_unique(&mut decision.sequences, sequences);
            push_unique(&mut decision.audiences, audiences);
        }
        decision
    }
}

fn push_unique(into: &mut Vec<String>, from: &[String]) {
    for item in from {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

impl Rule {
    fn matches(&self, facts: &impl Facts) -> bool {
        self.all.iter().all(|c| c.holds(facts))
            && (self.any.is_empty() || self.any.iter().any(|c| c.holds(facts)))
    }
}

impl Condition {
    fn holds(&self, facts: &impl Facts) -> bool {
        let value = facts.get(&self.field);
        let result = match (&self.test, value) {
            (Test::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Test::Regex(re), Some(v)) => re.is_match(&v),
            (Test::Equals(want), Some(v)) => self.fold(&v) == *want,
            (Test::In(options), Some(v)) => {
                let v = self.fold(&v);
                options.iter().any(|o| *o == v)
            }
            (Test::Contains(part), Some(v)) => self.fold(&v).contains(part.as_str()),
            (numeric, Some(v)) => match parse_number(&v) {
                None => false,
                Some(n) => match numeric {
                    Test::Gt(t) => n > *t,
                    Test::Gte(t) => n >= *t,
                    Test::Lt(t) => n < *t,
                    Test::Lte(t) => n <= *t,
                    _ => false,
                },
            },
        };
        result != self.not
    }

    fn fold<'a>(&self, v: &'a str) -> std::borrow::Cow<'a, str> {
        if self.ignore_case {
            std::borrow::Cow::Owned(v.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(v)
        }
    }
}

/// Reads a form value as a number: `1234`, `1234.5`, or the Brazilian `1.234,5` / `1234,5`.
fn parse_number(v: &str) -> Option<f64> {
    let t = v.trim();
    if let Ok(n) = t.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    if t.contains(',') {
        let swapped = t.replace('.', "").replace(',', ".");
        if let Ok(n) = swapped.parse::<f64>() {
            return n.is_finite().then_some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::domain::{Email, Lead, LeadId};
    use crate::envelope::LeadEnvelope;
    use chrono::DateTime;

    fn rules(text: &str) -> RuleSet {
        let cfg = load_str("t.toml", text).unwrap().config;
        RuleSet::compile(&cfg.lead_router).unwrap()
    }

    fn profile(edit: impl FnOnce(&mut Lead)) -> Profile {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let mut lead = Lead::with_email(Email::parse("joao@exemplo.com").unwrap());
        edit(&mut lead);
        Profile::new(
            &LeadEnvelope::new(LeadId::new(at, 1), "k".into(), at, None, lead),
            at,
        )
    }

    fn decide(set: &RuleSet, p: &Profile) -> Decision {
        set.evaluate(p, &p.last_touch)
    }

    const ARTICLE: &str = include_str!("../../../config/fluxo.toml");

    #[test]
    fn the_articles_lead_interested_in_software_a_gets_its_segment_sequence_and_audience() {
        // ../shared/fixtures/seed-webhook-lead.json, as the receiver normalizes it.
        let set = rules(ARTICLE);
        let p = profile(|l| {
            l.name = Some("João".into());
            l.source = Some("Webinar XYZ".into());
            l.interest = Some("Software A".into());
        });
        let d = decide(&set, &p);
        assert_eq!(d.segment.as_deref(), Some("interesse_software_a"));
        assert_eq!(d.sequences, vec!["nutricao_interesse_software_a"]);
        assert_eq!(d.audiences, vec!["leads_qualificados"]);
        assert_eq!(d.crm_status.as_deref(), Some("novo_lead"));
    }

    #[test]
    fn every_other_lead_gets_the_general_segment() {
        let set = rules(ARTICLE);
        let d = decide(&set, &profile(|l| l.interest = Some("Software B".into())));
        assert_eq!(d.segment.as_deref(), Some("geral"));
        assert_eq!(d.sequences, vec!["nutricao_geral"]);
        assert_eq!(d.audiences, vec!["leads_qualificados"]);
        let d = decide(&set, &profile(|_| {}));
        assert_eq!(d.segment.as_deref(), Some("geral"));
    }

    const ACCUMULATING: &str = r#"
[lead_router.segments.hot]
[lead_router.segments.cold]
[[lead_router.rules]]
name = "big"
when = [{ field = "custom.employees", gte = 100 }]
score = 30
audiences = ["big_companies"]
[[lead_router.rules]]
name = "paid"
when_any = [{ field = "utm_medium", in = ["cpc", "paid"] }, { field = "gclid", exists = true }]
score = 20
[[lead_router.rules]]
name = "hot"
when = [{ field = "score", gte = 50 }]
segment = "hot"
crm_owner = "ana"
stop = true
[[lead_router.rules]]
name = "never_after_stop"
score = 1000
[[lead_router.rules]]
name = "gmail"
when = [{ field = "email", regex = "@gmail\\.com$" }]
segment = "cold"
"#;

    #[test]
    fn accumulating_rules_add_scores_and_a_stop_rule_ends_evaluation() {
        let set = rules(ACCUMULATING);
        let p = profile(|l| {
            l.custom.insert("employees".into(), "1200".into());
            l.utm.medium = Some("cpc".into());
        });
        let d = decide(&set, &p);
        assert_eq!(d.matched_rules, vec!["big", "paid", "hot"]);
        assert_eq!(d.score, 50);
        assert_eq!(d.segment.as_deref(), Some("hot"));
        assert_eq!(d.crm_owner.as_deref(), Some("ana"));
        assert_eq!(d.audiences, vec!["big_companies"]);
    }

    #[test]
    fn a_non_numeric_value_fails_numeric_comparisons() {
        let set = rules(ACCUMULATING);
        let p = profile(|l| {
            l.custom.insert("employees".into(), "many".into());
        });
        let d = decide(&set, &p);
        assert!(!d.matched_rules.contains(&"big".to_string()));
    }

    #[test]
    fn first_match_mode_applies_only_the_first_matching_rule() {
        let text = format!("[lead_router]\nmode = \"first_match\"\n{ACCUMULATING}");
        let set = rules(&text);
        let p = profile(|l| {
            l.custom.insert("employees".into(), "500".into());
            l.utm.medium = Some("cpc".into());
        });
        assert_eq!(decide(&set, &p).matched_rules, vec!["big"]);
    }

    #[test]
    fn operators_compare_text_as_configured() {
        let text = r#"
[[lead_router.rules]]
name = "contains_ci"
when = [{ field = "company", contains = "acme", ignore_case = true }]
[[lead_router.rules]]
name = "not_equals"
when = [{ field = "source", equals = "site", not = true }]
[[lead_router.rules]]
name = "no_phone"
when = [{ field = "telefone", exists = false }]
[[lead_router.rules]]
name = "utm"
when = [{ field = "utm.source", equals = "google" }]
"#;
        let set = rules(text);
        let p = profile(|l| {
            l.company = Some("ACME Ltda".into());
            l.source = Some("webinar".into());
            l.utm.source = Some("google".into());
        });
        assert_eq!(
            decide(&set, &p).matched_rules,
            vec!["contains_ci", "not_equals", "no_phone", "utm"]
        );
    }

    #[test]
    fn brazilian_decimal_numbers_are_read() {
        assert_eq!(parse_number("1.234,5"), Some(1234.5));
        assert_eq!(parse_number("42"), Some(42.0));
        assert_eq!(parse_number("abc"), None);
    }
}
