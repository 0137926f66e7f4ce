//! Builds RD Station Marketing conversion events and reads their errors: pure, no I/O.

use serde_json::{Map, Value, json};

use super::config::{RdAuth, RdStationConfig, RdStationSequence};
use crate::email::{Call, Contact, Job, Operation};
use crate::routing::fanout::ConsentSnapshot;

/// The conversion endpoint of the configured auth mode (the API key is added by the client).
pub fn endpoint(config: &RdStationConfig) -> String {
    let base = config.base_url.trim_end_matches('/');
    match config.auth {
        RdAuth::ApiKey => format!("{base}/platform/conversions"),
        RdAuth::Bearer => format!("{base}/platform/events?event_type=conversion"),
    }
}

/// LGPD legal bases from the consent: a grant is `granted`, a refusal `declined`; no answer sends none.
pub fn legal_bases(consent: &ConsentSnapshot) -> Option<Value> {
    let status = match consent.status.as_str() {
        "granted" => "granted",
        "refused" => "declined",
        _ => return None,
    };
    Some(json!([{ "category": "communications", "type": "consent", "status": status }]))
}

fn conversion(
    config: &RdStationConfig,
    identifier: &str,
    contact: &Contact,
    extra: Map<String, Value>,
    purpose: &'static str,
) -> Call {
    let mut payload = Map::new();
    payload.insert(
        "conversion_identifier".into(),
        Value::String(identifier.to_string()),
    );
    payload.insert(
        "email".into(),
        Value::String(contact.email.as_str().to_string()),
    );
    let name = [contact.first_name.as_deref(), contact.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        payload.insert("name".into(), Value::String(name));
    }
    payload.extend(extra);
    Call::json(
        "POST",
        endpoint(config),
        json!({ "event_type": "CONVERSION", "event_family": "CDP", "payload": payload }),
        purpose,
    )
}

/// The calls of one job. RD Station Marketing's API has no contact delete: an erasure makes no call
/// (reported as [`super::ERASURE_NOT_SUPPORTED`]; erase the contact in RD Station by hand).
pub fn plan(
    config: &RdStationConfig,
    job: &Job,
    sequence: Option<&RdStationSequence>,
) -> Result<Vec<Call>, String> {
    let c = &job.contact;
    Ok(match &job.operation {
        Operation::Enroll {
            sequence: name,
            consent,
        } => {
            let s = sequence.ok_or("the sequence has no RD Station action")?;
            let identifier = s
                .conversion_identifier
                .clone()
                .unwrap_or_else(|| name.clone());
            let mut extra = Map::new();
            if let Some(bases) = legal_bases(consent) {
                extra.insert("legal_bases".into(), bases);
            }
            vec![conversion(config, &identifier, c, extra, "conversion")]
        }
        Operation::Unsubscribe { .. } => {
            let refused = ConsentSnapshot {
                status: "refused".into(),
                at: None,
                text: None,
            };
            let mut extra = Map::new();
            if let Some(bases) = legal_bases(&refused) {
                extra.insert("legal_bases".into(), bases);
            }
            vec![conversion(
                config,
                &config.withdrawal_conversion,
                c,
                extra,
                "withdrawal conversion",
            )]
        }
        Operation::Erase => Vec::new(),
        Operation::Recommend {
            event_name,
            products,
            ..
        } => {
            let mut extra = Map::new();
            let names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
            let urls: Vec<&str> = products.iter().filter_map(|p| p.url.as_deref()).collect();
            extra.insert(
                config.recommendation_names_field.clone(),
                Value::String(names.join(", ")),
            );
            extra.insert(
                config.recommendation_urls_field.clone(),
                Value::String(urls.join(" ")),
            );
            vec![conversion(
                config,
                event_name,
                c,
                extra,
                "recommendation conversion",
            )]
        }
    })
}

/// The first `error_message` of an RD Station error body.
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let errors = v.get("errors")?;
    let first = errors.as_array().and_then(|a| a.first()).unwrap_or(errors);
    first
        .get("error_message")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn config() -> RdStationConfig {
        toml::from_str("").unwrap()
    }

    #[test]
    fn an_enrollment_is_a_conversion_with_the_sequence_and_the_consents_legal_basis() {
        let job = Job {
            key: "k".into(),
            contact: Contact {
                email: Email::parse("ana@exemplo.com").unwrap(),
                first_name: Some("Ana".into()),
                last_name: Some("Silva".into()),
            },
            operation: Operation::Enroll {
                sequence: "nutricao_geral".into(),
                consent: ConsentSnapshot {
                    status: "granted".into(),
                    at: None,
                    text: None,
                },
            },
        };
        let calls = plan(&config(), &job, Some(&RdStationSequence::default())).unwrap();
        assert_eq!(calls[0].url, "https://api.rd.services/platform/conversions");
        assert_eq!(
            calls[0].body.clone().unwrap(),
            json!({"event_type": "CONVERSION", "event_family": "CDP", "payload": {
                "conversion_identifier": "nutricao_geral", "email": "ana@exemplo.com", "name": "Ana Silva",
                "legal_bases": [{"category": "communications", "type": "consent", "status": "granted"}]}})
        );
    }

    #[test]
    fn an_erasure_sends_nothing_to_rd_station() {
        let job = Job {
            key: "k".into(),
            contact: Contact {
                email: Email::parse("ana@exemplo.com").unwrap(),
                first_name: None,
                last_name: None,
            },
            operation: Operation::Erase,
        };
        assert!(plan(&config(), &job, None).unwrap().is_empty());
    }

    #[test]
    fn no_consent_answer_sends_no_legal_basis_and_errors_are_read() {
        let unknown = ConsentSnapshot {
            status: "unknown".into(),
            at: None,
            text: None,
        };
        assert_eq!(legal_bases(&unknown), None);
        assert_eq!(
            error_message(r#"{"errors":[{"error_type":"INVALID_OPTION","error_message":"Must be one of CONVERSION","path":"$.body.event_type"}]}"#).as_deref(),
            Some("Must be one of CONVERSION")
        );
    }
}
