//! Builds HubSpot batch-upsert requests and reads their responses: pure, no I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::crm::{CrmContact, PreparedRequest};

/// The legacy v3 path, documented side by side with the date-versioned one; the bodies are the same.
pub const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";

/// `POST /crm/v3/objects/contacts/batch/upsert` with one input per contact, keyed by email.
pub fn build(base_url: &str, contacts: &[CrmContact]) -> PreparedRequest {
    let inputs: Vec<Value> = contacts
        .iter()
        .map(|c| {
            let mut properties: Map<String, Value> = c
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            properties.insert(
                "email".to_string(),
                Value::String(c.email.as_str().to_string()),
            );
            json!({
                "idProperty": "email",
                "id": c.email.as_str(),
                "properties": properties,
                "objectWriteTraceId": c.lead_id.as_str(),
            })
        })
        .collect();
    PreparedRequest {
        method: "POST",
        url: format!("{}{UPSERT_PATH}", base_url.trim_end_matches('/')),
        body: json!({ "inputs": inputs }),
    }
}

/// Per-contact result of a batch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputResult {
    /// Upserted; HubSpot's contact id.
    Upserted(Option<String>),
    /// Rejected, with HubSpot's message.
    Rejected(String),
}

/// Reads a 200/201/207 batch response into one result per contact, by email.
///
/// Results are matched by their `email` property. In a 207, an input missing from `results` failed; its
/// reason is the error whose `context.ids` names its email, or else the first error's message.
pub fn read_response(body: &str, contacts: &[CrmContact]) -> Vec<InputResult> {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut ids: BTreeMap<String, Option<String>> = BTreeMap::new();
    for result in parsed
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let email = result
            .get("properties")
            .and_then(|p| p.get("email"))
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        let id = result.get("id").and_then(Value::as_str).map(str::to_string);
        if let Some(email) = email {
            ids.insert(email, id);
        }
    }
    let errors: Vec<&Value> = parsed
        .get("errors")
        .and_then(Value::as_array)
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    let message_of = |e: &Value| {
        e.get("message")
            .and_then(Value::as_str)
            .unwrap_or("rejected by HubSpot")
            .to_string()
    };
    let no_results = parsed.get("results").is_none() && errors.is_empty();
    contacts
        .iter()
        .map(|c| {
            let email = c.email.as_str();
            if let Some(id) = ids.get(email) {
                return InputResult::Upserted(id.clone());
            }
            if no_results {
                // A success without a readable body: HubSpot accepted the batch.
                return InputResult::Upserted(None);
            }
            let named = errors.iter().find(|e| {
                e.get("context")
                    .and_then(|ctx| ctx.get("ids"))
                    .and_then(Value::as_array)
                    .is_some_and(|ids| {
                        ids.iter()
                            .any(|id| id.as_str().is_some_and(|s| s.eq_ignore_ascii_case(email)))
                    })
            });
            match named.or(errors.first()) {
                Some(e) => InputResult::Rejected(message_of(e)),
                None => InputResult::Rejected("missing from HubSpot's batch results".to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, LeadId};
    use chrono::DateTime;

    fn contact(email: &str, n: u128) -> CrmContact {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        CrmContact {
            lead_id: LeadId::new(at, n),
            email: Email::parse(email).unwrap(),
            properties: vec![("firstname".into(), "Jane".into())],
        }
    }

    #[test]
    fn the_batch_is_one_upsert_call_keyed_by_email() {
        let contacts = [contact("jane@x.com", 1), contact("joao@exemplo.com", 2)];
        let r = build("https://api.hubapi.com/", &contacts);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert"
        );
        let inputs = r.body["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0]["idProperty"], "email");
        assert_eq!(inputs[0]["id"], "jane@x.com");
        assert_eq!(inputs[0]["properties"]["email"], "jane@x.com");
        assert_eq!(inputs[0]["properties"]["firstname"], "Jane");
        assert_eq!(
            inputs[0]["objectWriteTraceId"],
            contacts[0].lead_id.as_str()
        );
    }

    #[test]
    fn a_complete_response_gives_each_contact_its_id() {
        let contacts = [contact("jane@x.com", 1)];
        let body = r#"{"status":"COMPLETE","results":[{"id":"501","new":true,"properties":{"email":"jane@x.com"}}]}"#;
        assert_eq!(
            read_response(body, &contacts),
            vec![InputResult::Upserted(Some("501".into()))]
        );
    }

    #[test]
    fn a_multi_status_response_rejects_only_the_failed_inputs() {
        let contacts = [contact("jane@x.com", 1), contact("bad@x.com", 2)];
        let body = r#"{"status":"COMPLETE","results":[{"id":"501","properties":{"email":"jane@x.com"}}],
            "numErrors":1,"errors":[{"status":"error","message":"Property values were not valid","context":{"ids":["bad@x.com"]}}]}"#;
        let results = read_response(body, &contacts);
        assert_eq!(results[0], InputResult::Upserted(Some("501".into())));
        assert_eq!(
            results[1],
            InputResult::Rejected("Property values were not valid".into())
        );
    }
}
