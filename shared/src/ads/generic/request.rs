//! Generic platform requests and responses, pure: the article's metrics JSON and a JSON bid change.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::optimizer::ports::{Change, Observation};
use crate::optimizer::{Campaign, Metrics, units};

/// The article's metrics JSON: `{"cpc":0.50,"conversions":10,"spend":50.0,"target_cpa":4.0}`. `clicks`,
/// `bid` and `paused` are optional extras.
#[derive(Debug, Clone, Deserialize)]
pub struct GenericMetrics {
    pub spend: f64,
    pub conversions: f64,
    #[serde(default)]
    pub cpc: Option<f64>,
    #[serde(default)]
    pub clicks: Option<u64>,
    #[serde(default)]
    pub target_cpa: Option<f64>,
    #[serde(default)]
    pub bid: Option<f64>,
    #[serde(default)]
    pub paused: bool,
}

/// Parses the metrics body. Without `clicks`, clicks are derived as spend / cpc.
pub fn parse_metrics(body: &str) -> Result<Observation, String> {
    let m: GenericMetrics = serde_json::from_str(body)
        .map_err(|e| format!("metrics response is not the expected JSON: {e}"))?;
    let spend = units::micros_from_f64(m.spend)
        .filter(|s| *s >= 0)
        .ok_or("spend is not a valid amount")?;
    if !(m.conversions.is_finite() && m.conversions >= 0.0) {
        return Err("conversions is not a valid count".into());
    }
    let cpc = match m.cpc {
        Some(c) => Some(
            units::micros_from_f64(c)
                .filter(|c| *c >= 0)
                .ok_or("cpc is not a valid amount")?,
        ),
        None => None,
    };
    let clicks = m.clicks.unwrap_or_else(|| match cpc {
        Some(c) if c > 0 => u64::try_from((spend + c / 2) / c).unwrap_or(0),
        _ => 0,
    });
    let amount = |v: Option<f64>, what: &str| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(v) => units::micros_from_f64(v)
                .filter(|x| *x > 0)
                .map(Some)
                .ok_or(format!("{what} is not a positive amount")),
        }
    };
    Ok(Observation {
        metrics: Metrics {
            spend_micros: spend,
            conversions_milli: (m.conversions * 1000.0).round() as i64,
            clicks,
            cpc_micros: cpc,
        },
        bid_micros: amount(m.bid, "bid")?,
        paused: m.paused,
        target_cpa_micros: amount(m.target_cpa, "target_cpa")?,
        bid_strategy: None,
        bid_fixed: None,
    })
}

/// The JSON body POSTed to the bid URL.
pub fn bid_body(c: &Campaign, change: Change, idempotency_key: &str) -> Value {
    let (action, bid, previous) = match change {
        Change::SetBid {
            from_micros,
            to_micros,
        } => (
            "set_bid",
            Some(units::micros_to_f64(to_micros)),
            Some(units::micros_to_f64(from_micros)),
        ),
        Change::Pause => ("pause", None, None),
        Change::Resume => ("resume", None, None),
    };
    let mut body = json!({
        "campaign": c.id,
        "account": c.account,
        "entity_kind": c.entity_kind.as_str(),
        "entity_id": c.entity_id,
        "action": action,
        "currency": c.currency,
        "idempotency_key": idempotency_key,
    });
    if let (Some(map), Some(bid), Some(previous)) = (body.as_object_mut(), bid, previous) {
        map.insert("bid".into(), json!(bid));
        map.insert("previous_bid".into(), json!(previous));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_articles_metrics_fixture_parses_exactly() {
        let obs =
            parse_metrics(r#"{"cpc": 0.50, "conversions": 10, "spend": 50.0, "target_cpa": 4.0}"#)
                .unwrap();
        assert_eq!(obs.metrics.spend_micros, 50_000_000);
        assert_eq!(obs.metrics.conversions_milli, 10_000);
        assert_eq!(obs.metrics.cpc_micros, Some(500_000));
        assert_eq!(obs.metrics.clicks, 100);
        assert_eq!(obs.target_cpa_micros, Some(4_000_000));
        assert_eq!(obs.bid_micros, None);
    }

    #[test]
    fn malformed_metrics_are_refused_with_a_reason() {
        assert!(parse_metrics(r#"{"spend":"lots"}"#).is_err());
        assert!(parse_metrics(r#"{"spend":-1,"conversions":1}"#).is_err());
    }
}
