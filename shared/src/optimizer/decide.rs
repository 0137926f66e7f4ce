//! The pure bid decision: the article's CPA rule plus the guardrails, in exact integer arithmetic.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::units::{self, BP_PER_UNIT};
use super::{Guardrails, Metrics};

/// What to do with the entity's bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Leave the bid as it is.
    Keep,
    /// Lower the bid by the reduce step.
    Reduce,
    /// Raise the bid by the raise step.
    Raise,
    /// Pause the entity (zero conversions with too much spend, when configured).
    Pause,
}

/// The rule that decided, recorded in the journal so that every decision can be explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// CPA > high threshold x target.
    CpaAboveTarget,
    /// CPA < low threshold x target.
    CpaBelowTarget,
    /// CPA within the band (both boundaries included).
    CpaWithinBand,
    /// No conversions, and spend above the configured multiple of the target.
    ZeroConversionsOverspend,
    /// Too little data to judge (clicks, conversions, or spend without conversions below the multiple).
    InsufficientData,
    /// The entity changed less than the cooldown ago.
    Cooldown,
    /// The entity is paused on the platform; the optimizer leaves paused entities alone.
    EntityPaused,
}

impl Rule {
    /// The snake_case label used in journals and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::CpaAboveTarget => "cpa_above_target",
            Rule::CpaBelowTarget => "cpa_below_target",
            Rule::CpaWithinBand => "cpa_within_band",
            Rule::ZeroConversionsOverspend => "zero_conversions_overspend",
            Rule::InsufficientData => "insufficient_data",
            Rule::Cooldown => "cooldown",
            Rule::EntityPaused => "entity_paused",
        }
    }
}

/// Which bound clamped the new bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clamp {
    MinBid,
    MaxBid,
}

/// Everything the decision needs, already fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionInput<'a> {
    pub metrics: &'a Metrics,
    /// Target CPA in micros.
    pub target_cpa_micros: i64,
    /// The bid now in effect, in micros.
    pub bid_micros: i64,
    /// Whether the entity is paused on the platform.
    pub paused: bool,
    /// The scheduled hour of the last applied change to this entity, if any.
    pub last_change_hour: Option<DateTime<Utc>>,
    /// The scheduled hour of this run.
    pub run_hour: DateTime<Utc>,
    pub guardrails: &'a Guardrails,
}

/// The outcome of the decision, with the values before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub rule: Rule,
    /// CPA in micros; `None` means infinite (no conversions).
    pub cpa_micros: Option<i64>,
    pub bid_before_micros: i64,
    pub bid_after_micros: i64,
    /// Set when the new bid hit a bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamped: Option<Clamp>,
    /// One human sentence: why.
    pub reason: String,
}

impl Decision {
    /// Whether the decision changes anything on the platform.
    pub fn is_change(&self) -> bool {
        match self.action {
            Action::Keep => false,
            Action::Pause => true,
            Action::Reduce | Action::Raise => self.bid_after_micros != self.bid_before_micros,
        }
    }
}

/// CPA = spend / conversions, in micros, rounded to the nearest micro; `None` (infinite) without conversions.
pub fn cpa_micros(metrics: &Metrics) -> Option<i64> {
    if metrics.conversions_milli <= 0 {
        return None;
    }
    let num = i128::from(metrics.spend_micros) * 1000;
    let den = i128::from(metrics.conversions_milli);
    let q = (num + den / 2) / den;
    i64::try_from(q).ok()
}

/// Compares CPA with `ratio_bp x target` exactly: the sign of `spend / conversions - ratio x target`.
fn cmp_cpa(metrics: &Metrics, target_cpa_micros: i64, ratio_bp: i64) -> std::cmp::Ordering {
    // spend/conv (conv = milli/1000)  vs  ratio_bp/10000 * target
    // <=> spend * 1000 * 10000  vs  ratio_bp * target * milli
    let left = i128::from(metrics.spend_micros) * 1000 * i128::from(BP_PER_UNIT);
    let right = i128::from(ratio_bp)
        * i128::from(target_cpa_micros)
        * i128::from(metrics.conversions_milli);
    left.cmp(&right)
}

/// Decides one entity's bid. Pure: the same input always gives the same decision.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let g = input.guardrails;
    let m = input.metrics;
    let cpa = cpa_micros(m);
    let digits = g.currency_digits;
    let money = |micros: i64| units::format_amount(micros, digits);
    let keep = |rule: Rule, reason: String| Decision {
        action: Action::Keep,
        rule,
        cpa_micros: cpa,
        bid_before_micros: input.bid_micros,
        bid_after_micros: input.bid_micros,
        clamped: None,
        reason,
    };

    if input.paused {
        return keep(
            Rule::EntityPaused,
            "the entity is paused on the platform".to_string(),
        );
    }
    if let Some(last) = input.last_change_hour {
        let hours_since = (input.run_hour - last).num_hours();
        if hours_since < i64::from(g.cooldown_hours) {
            return keep(
                Rule::Cooldown,
                format!(
                    "changed {hours_since} h ago; cooldown is {} h",
                    g.cooldown_hours
                ),
            );
        }
    }

    let (action, rule, reason) = if m.conversions_milli <= 0 {
        let limit =
            i128::from(g.zero_conversion_spend_multiple_bp) * i128::from(input.target_cpa_micros);
        let spend = i128::from(m.spend_micros) * i128::from(BP_PER_UNIT);
        if spend > limit {
            let action = if g.pause_instead_of_reduce {
                Action::Pause
            } else {
                Action::Reduce
            };
            let limit_micros = i64::try_from(limit / i128::from(BP_PER_UNIT)).unwrap_or(i64::MAX);
            (
                action,
                Rule::ZeroConversionsOverspend,
                format!(
                    "no conversions and spend {} > {} (multiple of target)",
                    money(m.spend_micros),
                    money(limit_micros)
                ),
            )
        } else {
            return keep(
                Rule::InsufficientData,
                format!(
                    "no conversions yet and spend {} is within the multiple of target",
                    money(m.spend_micros)
                ),
            );
        }
    } else if m.clicks < g.min_clicks {
        return keep(
            Rule::InsufficientData,
            format!("{} clicks < minimum {}", m.clicks, g.min_clicks),
        );
    } else if m.conversions_milli < i64::from(g.min_conversions).saturating_mul(1000) {
        return keep(
            Rule::InsufficientData,
            format!(
                "{} conversions < minimum {}",
                m.conversions_milli as f64 / 1000.0,
                g.min_conversions
            ),
        );
    } else {
        let cpa_text = cpa.map(money).unwrap_or_else(|| "infinite".to_string());
        let target = money(input.target_cpa_micros);
        if cmp_cpa(m, input.target_cpa_micros, g.high_threshold_bp).is_gt() {
            let limit = i128::from(g.high_threshold_bp) * i128::from(input.target_cpa_micros)
                / i128::from(BP_PER_UNIT);
            (
                Action::Reduce,
                Rule::CpaAboveTarget,
                format!(
                    "CPA {cpa_text} > {} ({} x target {target})",
                    money(limit as i64),
                    ratio(g.high_threshold_bp)
                ),
            )
        } else if cmp_cpa(m, input.target_cpa_micros, g.low_threshold_bp).is_lt() {
            let limit = i128::from(g.low_threshold_bp) * i128::from(input.target_cpa_micros)
                / i128::from(BP_PER_UNIT);
            (
                Action::Raise,
                Rule::CpaBelowTarget,
                format!(
                    "CPA {cpa_text} < {} ({} x target {target})",
                    money(limit as i64),
                    ratio(g.low_threshold_bp)
                ),
            )
        } else {
            return keep(
                Rule::CpaWithinBand,
                format!(
                    "CPA {cpa_text} within {}..{} x target {target}",
                    ratio(g.low_threshold_bp),
                    ratio(g.high_threshold_bp)
                ),
            );
        }
    };

    if action == Action::Pause {
        return Decision {
            action,
            rule,
            cpa_micros: cpa,
            bid_before_micros: input.bid_micros,
            bid_after_micros: input.bid_micros,
            clamped: None,
            reason,
        };
    }

    let step = if action == Action::Reduce {
        -g.reduce_step_bp
    } else {
        g.raise_step_bp
    };
    let stepped = units::apply_step(input.bid_micros, step, g.bid_unit_micros);
    // Never below one platform unit: a zero bid is not a bid.
    let floor = g.min_bid_micros.unwrap_or(0).max(g.bid_unit_micros.max(1));
    let (after, clamped) = if stepped < floor {
        (floor, Some(Clamp::MinBid))
    } else if let Some(max) = g.max_bid_micros.filter(|max| stepped > *max) {
        (max, Some(Clamp::MaxBid))
    } else {
        (stepped, None)
    };
    // A clamp must never move the bid against the rule (e.g. a raise down to a lowered max).
    let against = (action == Action::Reduce && after > input.bid_micros)
        || (action == Action::Raise && after < input.bid_micros);
    if after == input.bid_micros || against {
        let bound = if clamped == Some(Clamp::MaxBid) {
            "maximum"
        } else {
            "minimum"
        };
        return Decision {
            action: Action::Keep,
            rule,
            cpa_micros: cpa,
            bid_before_micros: input.bid_micros,
            bid_after_micros: input.bid_micros,
            clamped,
            reason: format!(
                "{reason}; bid {} already at the {bound} bid",
                money(input.bid_micros)
            ),
        };
    }
    let reason = match clamped {
        Some(Clamp::MinBid) => format!("{reason}; clamped to the minimum bid {}", money(after)),
        Some(Clamp::MaxBid) => format!("{reason}; clamped to the maximum bid {}", money(after)),
        None => reason,
    };
    Decision {
        action,
        rule,
        cpa_micros: cpa,
        bid_before_micros: input.bid_micros,
        bid_after_micros: after,
        clamped,
        reason,
    }
}

/// `12000` -> `1.2`.
fn ratio(bp: i64) -> String {
    let whole = bp / BP_PER_UNIT;
    let frac = (bp % BP_PER_UNIT).abs();
    if frac == 0 {
        return format!("{whole}");
    }
    let text = format!("{frac:04}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

/// A bid held within the guardrails: at least `min_bid` (and one platform unit), at most `max_bid`.
/// Reverts pass the bid they restore through it, so a revert never leaves the configured range.
pub fn within_bounds(bid_micros: i64, g: &Guardrails) -> (i64, Option<Clamp>) {
    let floor = g.min_bid_micros.unwrap_or(0).max(g.bid_unit_micros.max(1));
    if bid_micros < floor {
        (floor, Some(Clamp::MinBid))
    } else if let Some(max) = g.max_bid_micros.filter(|max| bid_micros > *max) {
        (max, Some(Clamp::MaxBid))
    } else {
        (bid_micros, None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bid_is_held_within_min_and_max_bid() {
        let mut g = super::Guardrails::article_defaults("USD");
        g.min_bid_micros = Some(500_000);
        g.max_bid_micros = Some(2_000_000);
        assert_eq!(super::within_bounds(1_000_000, &g), (1_000_000, None));
        assert_eq!(
            super::within_bounds(400_000, &g),
            (500_000, Some(super::Clamp::MinBid))
        );
        assert_eq!(
            super::within_bounds(3_000_000, &g),
            (2_000_000, Some(super::Clamp::MaxBid))
        );
    }

    use super::*;
    use chrono::TimeZone;

    fn guardrails() -> Guardrails {
        Guardrails::article_defaults("USD")
    }

    fn metrics(spend: f64, conversions: f64, clicks: u64) -> Metrics {
        Metrics {
            spend_micros: units::micros_from_f64(spend).unwrap(),
            conversions_milli: (conversions * 1000.0).round() as i64,
            clicks,
            cpc_micros: None,
        }
    }

    fn hour(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap()
    }

    fn run(m: &Metrics, target: f64, bid: f64, g: &Guardrails) -> Decision {
        decide(&DecisionInput {
            metrics: m,
            target_cpa_micros: units::micros_from_f64(target).unwrap(),
            bid_micros: units::micros_from_f64(bid).unwrap(),
            paused: false,
            last_change_hour: None,
            run_hour: hour(12),
            guardrails: g,
        })
    }

    #[test]
    fn the_articles_example_reduces_the_bid_ten_percent() {
        // ../shared/fixtures/seed-campaign-metrics.json: {"cpc":0.50,"conversions":10,"spend":50.0,"target_cpa":4.0}
        let m = metrics(50.0, 10.0, 100);
        let d = run(&m, 4.0, 1.00, &guardrails());
        assert_eq!(d.cpa_micros, Some(5_000_000));
        assert_eq!(d.action, Action::Reduce);
        assert_eq!(d.rule, Rule::CpaAboveTarget);
        assert_eq!(d.bid_after_micros, 900_000);
        assert!(d.reason.contains("CPA 5.00 > 4.80"), "{}", d.reason);
    }

    #[test]
    fn cpa_exactly_at_the_high_threshold_keeps_the_bid() {
        // 48 / 10 = 4.80 = 1.2 x 4.00 exactly; 4.8 is not exact in binary floating point.
        let d = run(&metrics(48.0, 10.0, 100), 4.0, 1.0, &guardrails());
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.rule, Rule::CpaWithinBand);
    }

    #[test]
    fn cpa_exactly_at_the_low_threshold_keeps_the_bid() {
        // 32 / 10 = 3.20 = 0.8 x 4.00 exactly.
        let d = run(&metrics(32.0, 10.0, 100), 4.0, 1.0, &guardrails());
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.rule, Rule::CpaWithinBand);
    }

    #[test]
    fn cpa_one_micro_above_the_high_threshold_reduces() {
        let m = Metrics {
            spend_micros: 48_000_001,
            conversions_milli: 10_000,
            clicks: 100,
            cpc_micros: None,
        };
        assert_eq!(run(&m, 4.0, 1.0, &guardrails()).action, Action::Reduce);
    }

    #[test]
    fn cpa_just_below_the_low_threshold_raises_five_percent() {
        let m = Metrics {
            spend_micros: 31_999_999,
            conversions_milli: 10_000,
            clicks: 100,
            cpc_micros: None,
        };
        let d = run(&m, 4.0, 1.0, &guardrails());
        assert_eq!(d.action, Action::Raise);
        assert_eq!(d.rule, Rule::CpaBelowTarget);
        assert_eq!(d.bid_after_micros, 1_050_000);
    }

    #[test]
    fn fractional_conversions_are_compared_exactly() {
        // Google reports conversions as doubles: 12.5 conversions, spend 60 -> CPA 4.80, the boundary.
        let d = run(&metrics(60.0, 12.5, 100), 4.0, 1.0, &guardrails());
        assert_eq!(d.action, Action::Keep);
    }

    #[test]
    fn too_few_clicks_changes_nothing() {
        let g = Guardrails {
            min_clicks: 200,
            ..guardrails()
        };
        let d = run(&metrics(50.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.rule, Rule::InsufficientData);
    }

    #[test]
    fn too_few_conversions_changes_nothing() {
        let g = Guardrails {
            min_conversions: 20,
            ..guardrails()
        };
        let d = run(&metrics(50.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.rule, Rule::InsufficientData);
    }

    #[test]
    fn zero_conversions_with_little_spend_waits_for_data() {
        // Spend 4.00 with no conversions is not above 1.2 x 4.00.
        let d = run(&metrics(4.0, 0.0, 10), 4.0, 1.0, &guardrails());
        assert_eq!(d.cpa_micros, None);
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.rule, Rule::InsufficientData);
    }

    #[test]
    fn zero_conversions_with_spend_above_the_multiple_reduces() {
        let d = run(&metrics(10.0, 0.0, 10), 4.0, 1.0, &guardrails());
        assert_eq!(d.action, Action::Reduce);
        assert_eq!(d.rule, Rule::ZeroConversionsOverspend);
        assert_eq!(d.bid_after_micros, 900_000);
    }

    #[test]
    fn zero_conversions_with_spend_above_the_multiple_pauses_when_configured() {
        let g = Guardrails {
            pause_instead_of_reduce: true,
            ..guardrails()
        };
        let d = run(&metrics(10.0, 0.0, 10), 4.0, 1.0, &g);
        assert_eq!(d.action, Action::Pause);
        assert!(d.is_change());
        assert_eq!(d.bid_after_micros, d.bid_before_micros);
    }

    #[test]
    fn zero_conversions_ignore_the_click_minimum() {
        // Spend without conversions is itself the evidence; a click minimum must not hide it.
        let g = Guardrails {
            min_clicks: 1_000,
            ..guardrails()
        };
        assert_eq!(
            run(&metrics(10.0, 0.0, 10), 4.0, 1.0, &g).action,
            Action::Reduce
        );
    }

    #[test]
    fn the_new_bid_is_clamped_to_the_minimum() {
        let g = Guardrails {
            min_bid_micros: Some(950_000),
            ..guardrails()
        };
        let d = run(&metrics(50.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.bid_after_micros, 950_000);
        assert_eq!(d.clamped, Some(Clamp::MinBid));
        assert_eq!(d.action, Action::Reduce);
    }

    #[test]
    fn the_new_bid_is_clamped_to_the_maximum() {
        let g = Guardrails {
            max_bid_micros: Some(1_020_000),
            ..guardrails()
        };
        let d = run(&metrics(30.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.bid_after_micros, 1_020_000);
        assert_eq!(d.clamped, Some(Clamp::MaxBid));
    }

    #[test]
    fn a_bid_already_at_the_minimum_is_kept() {
        let g = Guardrails {
            min_bid_micros: Some(1_000_000),
            ..guardrails()
        };
        let d = run(&metrics(50.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.rule, Rule::CpaAboveTarget);
        assert!(!d.is_change());
    }

    #[test]
    fn a_raise_never_lowers_a_bid_above_a_lowered_maximum() {
        let g = Guardrails {
            max_bid_micros: Some(800_000),
            ..guardrails()
        };
        let d = run(&metrics(30.0, 10.0, 100), 4.0, 1.0, &g);
        assert_eq!(d.action, Action::Keep);
    }

    #[test]
    fn no_change_while_the_cooldown_runs() {
        let g = Guardrails {
            cooldown_hours: 3,
            ..guardrails()
        };
        let m = metrics(50.0, 10.0, 100);
        let mut input = DecisionInput {
            metrics: &m,
            target_cpa_micros: 4_000_000,
            bid_micros: 1_000_000,
            paused: false,
            last_change_hour: Some(hour(10)),
            run_hour: hour(12),
            guardrails: &g,
        };
        assert_eq!(decide(&input).rule, Rule::Cooldown);
        input.last_change_hour = Some(hour(9));
        assert_eq!(decide(&input).action, Action::Reduce);
    }

    #[test]
    fn the_default_cooldown_allows_one_change_per_hour() {
        let g = guardrails();
        let m = metrics(50.0, 10.0, 100);
        let input = DecisionInput {
            metrics: &m,
            target_cpa_micros: 4_000_000,
            bid_micros: 1_000_000,
            paused: false,
            last_change_hour: Some(hour(11)),
            run_hour: hour(12),
            guardrails: &g,
        };
        assert_eq!(decide(&input).action, Action::Reduce);
    }

    #[test]
    fn paused_entities_are_left_alone() {
        let g = guardrails();
        let m = metrics(50.0, 10.0, 100);
        let input = DecisionInput {
            metrics: &m,
            target_cpa_micros: 4_000_000,
            bid_micros: 1_000_000,
            paused: true,
            last_change_hour: None,
            run_hour: hour(12),
            guardrails: &g,
        };
        assert_eq!(decide(&input).rule, Rule::EntityPaused);
    }

    #[test]
    fn zero_decimal_currencies_round_to_whole_yen() {
        let g = Guardrails::article_defaults("JPY");
        // CPA 600 vs target 400 -> reduce 155 yen by 10% = 139.5 -> 140.
        let d = run(&metrics(6000.0, 10.0, 100), 400.0, 155.0, &g);
        assert_eq!(d.bid_after_micros, 140_000_000);
    }

    #[test]
    fn ratios_print_without_trailing_zeros() {
        assert_eq!(ratio(12_000), "1.2");
        assert_eq!(ratio(8_000), "0.8");
        assert_eq!(ratio(20_000), "2");
        assert_eq!(ratio(12_500), "1.25");
    }
}
