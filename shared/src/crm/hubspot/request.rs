//! Builds HubSpot batch-upsert and GDPR-delete requests and reads their responses: pure, no I/O.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use crate::crm::{CrmContact, PreparedRequest};
use crate::domain::Email;

/// The legacy v3 path, documented side by side with the date-versioned one; the bodies are the same.
pub const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";

/// One input of a batch upsert: every contact of the batch with the same email, merged.
///
/// HubSpot refuses a whole batch that names one record twice, so the leads of one person in one SQS
/// batch become one input. Later contacts' values win (they carry the person's latest profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The `idProperty` value.
    pub email: String,
    /// `objectWriteTraceId`: the lead id of the last contact merged in; results are matched by it.
    pub trace_id: String,
    /// Properties, `email` included.
    pub properties: BTreeMap<String, String>,
    /// Indexes, in the caller's slice, of the contacts merged into this input.
    pub members: Vec<usize>,
}

/// Merges the contacts into one input per email, in order of first appearance.
pub fn merge_inputs(contacts: &[CrmContact]) -> Vec<Input> {
    let mut inputs: Vec<Input> = Vec::new();
    let mut by_email: HashMap<String, usize> = HashMap::new();
    for (i, c) in contacts.iter().enumerate() {
        // HubSpot matches emails case-insensitively; `Email` is already lower-case, this is belt and braces.
        let email = c.email.as_str().to_lowercase();
        let slot = *by_email.entry(email.clone()).or_insert_with(|| {
            inputs.push(Input {
                email: email.clone(),
                trace_id: String::new(),
                properties: BTreeMap::new(),
                members: Vec::new(),
            });
            inputs.len() - 1
        });
        let Some(input) = inputs.get_mut(slot) else {
            continue;
        };
        for (k, v) in &c.properties {
            input.properties.insert(k.clone(), v.clone());
        }
        input
            .properties
            .insert("email".to_string(), c.email.as_str().to_string());
        input.trace_id = c.lead_id.as_str().to_string();
        input.members.push(i);
    }
    inputs
}

/// `POST /crm/v3/objects/contacts/batch/upsert` with one input per person, keyed by email.
pub fn build(base_url: &str, inputs: &[&Input]) -> PreparedRequest {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|input| {
            let properties: Map<String, Value> = input
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "idProperty": "email",
                "id": input.email,
                "properties": properties,
                "objectWriteTraceId": input.trace_id,
            })
        })
        .collect();
    PreparedRequest {
        method: "POST",
        url: format!("{}{UPSERT_PATH}", base_url.trim_end_matches('/')),
        body: json!({ "inputs": inputs }),
    }
}

/// The GDPR delete of a contact (legacy v3 path; the date-versioned
/// `/crm/objects/2026-03/contacts/gdpr-delete` takes the same body).
pub const GDPR_DELETE_PATH: &str = "/crm/v3/objects/contacts/gdpr-delete";

/// `POST /crm/v3/objects/contacts/gdpr-delete` with `{"objectId": <email>, "idProperty": "email"}`:
/// permanently deletes the contact and its associated content, found by email. HubSpot documents that
/// an email no contact has is added to a blocklist instead, so the address cannot be used again.
pub fn gdpr_delete(base_url: &str, email: &Email) -> PreparedRequest {
    PreparedRequest {
        method: "POST",
        url: format!("{}{GDPR_DELETE_PATH}", base_url.trim_end_matches('/')),
        body: json!({
            "objectId": email.as_str().to_lowercase(),
            "idProperty": "email",
        }),
    }
}

/// What HubSpot's answer to a GDPR delete means, when it is not an error to retry or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// 204 No Content (documented), or another 2xx: deleted (or blocklisted when unknown).
    Deleted,
    /// 404: there is no such contact; already gone, nothing to do.
    AlreadyGone,
}

/// Reads the status of a GDPR-delete answer: `Some` for the answers that end the erasure well, `None`
/// for the ones the client classifies as failures.
pub fn read_gdpr_delete(status: u16) -> Option<Erased> {
    match status {
        200..=299 => Some(Erased::Deleted),
        404 | 410 => Some(Erased::AlreadyGone),
        _ => None,
    }
}

/// Per-input result of a batch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputResult {
    /// Upserted; HubSpot's contact id, when the result named the input.
    Upserted(Option<String>),
    /// Rejected by an error that names this input, with HubSpot's message.
    Rejected(String),
    /// Neither in `results` nor named by an error (a 207 whose errors name no input). The message of
    /// the first error that names nobody, if any. The caller isolates such inputs by sending them again
    /// in smaller batches.
    Unmatched(Option<String>),
}

/// The trace ids and emails an error names: `objectWriteTraceId`, `context.objectWriteTraceId[]`,
/// `context.ids[]` (the `idProperty` values, emails here). Every field is optional.
fn named_by(error: &Value) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(id) = error.get("objectWriteTraceId").and_then(Value::as_str) {
        names.push(id.to_string());
    }
    let context = error.get("context");
    for key in ["objectWriteTraceId", "ids"] {
        for id in context
            .and_then(|ctx| ctx.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            names.push(id.to_string());
        }
    }
    names
}

/// Reads a 200/201/207 batch response into one result per input.
///
/// Results are matched to inputs by `objectWriteTraceId` only, never by echoed properties. An error
/// rejects the inputs it names by trace id or by email. In a 200/201 without errors, an input the
/// results do not name was accepted (HubSpot answered for the whole batch) but its id is unknown. In a
/// 207, or whenever errors are present, such an input is [`InputResult::Unmatched`].
pub fn read_response(status: u16, body: &str, inputs: &[&Input]) -> Vec<InputResult> {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut ids: HashMap<String, Option<String>> = HashMap::new();
    for result in parsed
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(trace) = result.get("objectWriteTraceId").and_then(Value::as_str) {
            let id = result.get("id").and_then(Value::as_str).map(str::to_string);
            ids.insert(trace.to_string(), id);
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
    let mut rejected: HashMap<String, String> = HashMap::new();
    let mut unnamed: Option<String> = None;
    for e in &errors {
        let names = named_by(e);
        if names.is_empty() && unnamed.is_none() {
            unnamed = Some(message_of(e));
        }
        for name in names {
            rejected
                .entry(name.to_lowercase())
                .or_insert_with(|| message_of(e));
        }
    }
    let whole_batch_accepted = status != 207 && errors.is_empty();
    inputs
        .iter()
        .map(|input| {
            if let Some(id) = ids.get(&input.trace_id) {
                return InputResult::Upserted(id.clone());
            }
            let named = rejected
                .get(&input.trace_id.to_lowercase())
                .or_else(|| rejected.get(&input.email));
            if let Some(message) = named {
                return InputResult::Rejected(message.clone());
            }
            if whole_batch_accepted {
                return InputResult::Upserted(None);
            }
            InputResult::Unmatched(unnamed.clone())
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

    fn refs(inputs: &[Input]) -> Vec<&Input> {
        inputs.iter().collect()
    }

    #[test]
    fn a_gdpr_delete_is_one_post_keyed_by_the_lowercased_email() {
        let email = Email::parse("Ana.Silva@Exemplo.com").unwrap();
        let r = gdpr_delete("https://api.hubapi.com/", &email);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://api.hubapi.com/crm/v3/objects/contacts/gdpr-delete"
        );
        assert_eq!(
            r.body,
            json!({"objectId": "ana.silva@exemplo.com", "idProperty": "email"})
        );
    }

    #[test]
    fn a_gdpr_delete_answer_204_is_deleted_and_404_is_already_gone() {
        assert_eq!(read_gdpr_delete(204), Some(Erased::Deleted));
        assert_eq!(read_gdpr_delete(200), Some(Erased::Deleted));
        assert_eq!(read_gdpr_delete(404), Some(Erased::AlreadyGone));
        assert_eq!(read_gdpr_delete(400), None);
        assert_eq!(read_gdpr_delete(429), None);
    }

    #[test]
    fn the_batch_is_one_upsert_call_keyed_by_email() {
        let contacts = [contact("jane@x.com", 1), contact("joao@exemplo.com", 2)];
        let inputs = merge_inputs(&contacts);
        let r = build("https://api.hubapi.com/", &refs(&inputs));
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
    fn two_leads_of_one_person_become_one_input_with_the_latest_values() {
        let mut later = contact("jane@x.com", 3);
        later.properties = vec![("company".into(), "Empresa Y".into())];
        let contacts = [
            contact("jane@x.com", 1),
            contact("joao@exemplo.com", 2),
            later,
        ];
        let inputs = merge_inputs(&contacts);
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].members, vec![0, 2]);
        assert_eq!(inputs[0].trace_id, contacts[2].lead_id.as_str());
        assert_eq!(inputs[0].properties["firstname"], "Jane");
        assert_eq!(inputs[0].properties["company"], "Empresa Y");
        let body = build("https://api.hubapi.com", &refs(&inputs)).body;
        let ids: Vec<&str> = body["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["jane@x.com", "joao@exemplo.com"],
            "no record named twice"
        );
    }

    #[test]
    fn results_are_matched_by_trace_id_not_by_echoed_properties() {
        let inputs = merge_inputs(&[contact("jane@x.com", 1), contact("joao@exemplo.com", 2)]);
        // Out of order, and the echoed emails are swapped: only the trace id counts.
        let body = json!({"status": "COMPLETE", "results": [
            {"id": "602", "objectWriteTraceId": inputs[1].trace_id, "properties": {"email": "jane@x.com"}},
            {"id": "601", "objectWriteTraceId": inputs[0].trace_id, "properties": {"email": "joao@exemplo.com"}},
        ]})
        .to_string();
        assert_eq!(
            read_response(200, &body, &refs(&inputs)),
            vec![
                InputResult::Upserted(Some("601".into())),
                InputResult::Upserted(Some("602".into()))
            ]
        );
    }

    #[test]
    fn a_multi_status_response_rejects_only_the_inputs_its_errors_name() {
        let inputs = merge_inputs(&[
            contact("jane@x.com", 1),
            contact("bad@x.com", 2),
            contact("other@x.com", 3),
        ]);
        let body = json!({"status": "COMPLETE",
            "results": [{"id": "501", "objectWriteTraceId": inputs[0].trace_id}],
            "numErrors": 2,
            "errors": [
                {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid",
                 "context": {"objectWriteTraceId": [inputs[1].trace_id]}},
                {"status": "error", "message": "something else"}
            ]})
        .to_string();
        let results = read_response(207, &body, &refs(&inputs));
        assert_eq!(results[0], InputResult::Upserted(Some("501".into())));
        assert_eq!(
            results[1],
            InputResult::Rejected("Property values were not valid".into())
        );
        assert_eq!(
            results[2],
            InputResult::Unmatched(Some("something else".into())),
            "an error that names nobody is not pinned on an arbitrary input"
        );
    }

    #[test]
    fn an_error_naming_the_email_in_context_ids_rejects_that_input() {
        let inputs = merge_inputs(&[contact("jane@x.com", 1), contact("bad@x.com", 2)]);
        let body = r#"{"status":"COMPLETE","results":[],"errors":[{"message":"Invalid email","context":{"ids":["BAD@x.com"]}}]}"#;
        let results = read_response(207, body, &refs(&inputs));
        assert_eq!(results[1], InputResult::Rejected("Invalid email".into()));
        assert_eq!(results[0], InputResult::Unmatched(None));
    }

    #[test]
    fn a_complete_answer_without_trace_ids_accepts_the_whole_batch() {
        let inputs = merge_inputs(&[contact("jane@x.com", 1)]);
        assert_eq!(
            read_response(
                200,
                r#"{"status":"COMPLETE","results":[{"id":"9"}]}"#,
                &refs(&inputs)
            ),
            vec![InputResult::Upserted(None)]
        );
        assert_eq!(
            read_response(201, "", &refs(&inputs)),
            vec![InputResult::Upserted(None)]
        );
    }
}
