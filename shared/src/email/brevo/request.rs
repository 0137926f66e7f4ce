//! Builds Brevo calls and reads its `{code, message}` errors: pure, no I/O.

use serde_json::{Map, Value, json};

use super::config::BrevoSequence;
use crate::email::{Call, Contact, Job, Operation};

/// `code` of the 400 Brevo answers when a contact (or one of its identifiers) already exists.
pub const DUPLICATE: &str = "duplicate_parameter";

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn contact_url(base: &str, contact: &Contact) -> String {
    format!(
        "{base}/contacts/{}?identifierType=email_id",
        path_segment(contact.email.as_str())
    )
}

/// `POST /contacts` with `updateEnabled: true` (an upsert) and the sequence's `listIds`.
pub fn upsert(base: &str, contact: &Contact, sequence: &BrevoSequence) -> Call {
    let mut attributes = Map::new();
    if let Some(f) = &contact.first_name {
        attributes.insert("FIRSTNAME".into(), Value::String(f.clone()));
    }
    if let Some(l) = &contact.last_name {
        attributes.insert("LASTNAME".into(), Value::String(l.clone()));
    }
    let mut body = json!({
        "email": contact.email.as_str(),
        "listIds": sequence.list_ids,
        "updateEnabled": true,
    });
    if !attributes.is_empty() {
        body["attributes"] = Value::Object(attributes);
    }
    Call::json("POST", format!("{base}/contacts"), body, "upsert contact")
}

/// The calls of one job.
pub fn plan(base: &str, job: &Job, sequence: Option<&BrevoSequence>) -> Result<Vec<Call>, String> {
    let c = &job.contact;
    Ok(match &job.operation {
        Operation::Enroll { .. } => {
            let s = sequence.ok_or("the sequence has no Brevo action")?;
            vec![upsert(base, c, s)]
        }
        Operation::Unsubscribe { .. } => vec![Call::json(
            "PUT",
            contact_url(base, c),
            json!({ "emailBlacklisted": true }),
            "unsubscribe contact",
        )],
        Operation::Erase => vec![Call {
            method: "DELETE",
            url: contact_url(base, c),
            headers: Vec::new(),
            body: None,
            purpose: "delete contact",
        }],
        Operation::Recommend {
            event_name,
            products,
            at,
        } => vec![Call::json(
            "POST",
            format!("{base}/events"),
            json!({
                "event_name": event_name,
                "event_date": at.to_rfc3339(),
                "identifiers": { "email_id": c.email.as_str() },
                "event_properties": { "products": products },
            }),
            "create event",
        )],
    })
}

/// The `code` of a Brevo error body.
pub fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("code").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use crate::routing::fanout::ConsentSnapshot;

    fn job(operation: Operation) -> Job {
        Job {
            key: "k".into(),
            contact: Contact {
                email: Email::parse("ana+loja@exemplo.com").unwrap(),
                first_name: Some("Ana".into()),
                last_name: None,
            },
            operation,
        }
    }

    #[test]
    fn the_upsert_posts_the_contact_with_update_enabled_and_the_lists() {
        let s = BrevoSequence {
            list_ids: vec![2, 7],
        };
        let enroll = Operation::Enroll {
            sequence: "a".into(),
            consent: ConsentSnapshot {
                status: "granted".into(),
                at: None,
                text: None,
            },
        };
        let calls = plan("https://api.brevo.com/v3", &job(enroll), Some(&s)).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].url, "https://api.brevo.com/v3/contacts");
        assert_eq!(
            calls[0].body.clone().unwrap(),
            json!({"email": "ana+loja@exemplo.com", "listIds": [2, 7], "updateEnabled": true,
                   "attributes": {"FIRSTNAME": "Ana"}})
        );
    }

    #[test]
    fn unsubscribe_and_delete_address_the_contact_by_its_encoded_email() {
        let calls = plan(
            "b",
            &job(Operation::Unsubscribe {
                reason: "withdrawal".into(),
            }),
            None,
        )
        .unwrap();
        assert_eq!(calls[0].method, "PUT");
        assert_eq!(
            calls[0].url,
            "b/contacts/ana%2Bloja%40exemplo.com?identifierType=email_id"
        );
        let calls = plan("b", &job(Operation::Erase), None).unwrap();
        assert_eq!(calls[0].method, "DELETE");
    }

    #[test]
    fn error_codes_are_read() {
        assert_eq!(
            error_code(r#"{"code":"duplicate_parameter","message":"Contact already exist"}"#)
                .as_deref(),
            Some(DUPLICATE)
        );
    }
}
