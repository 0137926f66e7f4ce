//! Meta custom audience requests, built without I/O: hashed multi-key rows, the `payload` and `session`
//! form fields, and the response reader.

use serde_json::{Value, json};

use crate::audience::normalize::{
    country_of_phone, meta_country, meta_email, meta_name, meta_phone, sha256_hex,
};
use crate::audience::{Op, Person};

/// Most rows Meta takes in one request.
pub const MAX_ROWS: usize = 10_000;

/// The multi-key schema every row follows; an unknown key is an empty string.
pub const SCHEMA: [&str; 5] = ["EMAIL", "PHONE", "FN", "LN", "COUNTRY"];

/// One hashed row, in [`SCHEMA`] order.
pub type Row = [String; 5];

/// `{endpoint}/{version}/{audience_id}/users`.
pub fn users_url(endpoint: &str, version: &str, audience_id: &str) -> String {
    format!(
        "{}/{version}/{audience_id}/users",
        endpoint.trim_end_matches('/')
    )
}

/// The HTTP method of an operation: `POST` adds, `DELETE` removes.
pub fn method(op: Op) -> &'static str {
    match op {
        Op::Add => "POST",
        Op::Remove => "DELETE",
    }
}

fn hashed(value: Option<String>) -> String {
    value.map(|v| sha256_hex(&v)).unwrap_or_default()
}

/// A person's row: each key normalized by Meta's rules and hashed. `None` when neither the email nor
/// the phone can be matched.
pub fn row(person: &Person) -> Option<Row> {
    let email = meta_email(&person.email);
    let phone = person.phone.as_deref().and_then(meta_phone);
    if email.is_none() && phone.is_none() {
        return None;
    }
    let country = person
        .country
        .as_deref()
        .and_then(meta_country)
        .or_else(|| person.phone.as_deref().and_then(country_of_phone));
    Some([
        hashed(email),
        hashed(phone),
        hashed(person.first_name.as_deref().and_then(meta_name)),
        hashed(person.last_name.as_deref().and_then(meta_name)),
        hashed(country),
    ])
}

/// The `payload` field: `{"schema": [...], "data": [[...], ...]}`.
pub fn payload(rows: &[Row]) -> Value {
    json!({ "schema": SCHEMA, "data": rows })
}

/// The `session` field that ties the requests of one upload together (`batch_seq` from 1).
pub fn session(session_id: u64, batch_seq: usize, last: bool, total: usize) -> Value {
    json!({
        "session_id": session_id,
        "batch_seq": batch_seq,
        "last_batch_flag": last,
        "estimated_num_total": total,
    })
}

/// The form body: `payload=<json>&session=<json>`, URL-encoded.
#[cfg(feature = "http-client")]
pub fn form(payload: &Value, session: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .append_pair("session", &session.to_string())
        .finish()
}

/// What Meta answered for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    pub num_received: u64,
    pub num_invalid_entries: u64,
}

/// Reads `{audience_id, session_id, num_received, num_invalid_entries, invalid_entry_samples}`.
pub fn parse_receipt(body: &str) -> Result<Receipt, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let num = |k: &str| {
        v.get(k).and_then(|n| {
            n.as_u64()
                .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let num_received = num("num_received").ok_or("no num_received in the response")?;
    Ok(Receipt {
        num_received,
        num_invalid_entries: num("num_invalid_entries").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::ConsentStatus;

    fn mary() -> Person {
        Person {
            profile_key: "k".into(),
            email: "John_Smith@gmail.com".into(),
            phone: Some("+16505551212".into()),
            first_name: Some("Mary".into()),
            last_name: None,
            country: None,
            consent: ConsentStatus::Granted,
        }
    }

    #[test]
    fn a_row_holds_metas_hashes_in_schema_order_with_blanks_for_unknown_keys() {
        let r = row(&mary()).unwrap();
        assert_eq!(
            r[0],
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
        assert_eq!(
            r[1],
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
        );
        assert_eq!(
            r[2],
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
        );
        assert_eq!(r[3], "");
        assert_eq!(r[4], sha256_hex("us"), "country from the phone number");
    }

    #[cfg(feature = "http-client")]
    #[test]
    fn the_form_carries_payload_and_session_as_json() {
        let rows = vec![row(&mary()).unwrap()];
        let body = form(&payload(&rows), &session(7, 1, true, 1));
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs[0].0, "payload");
        let p: Value = serde_json::from_str(&pairs[0].1).unwrap();
        assert_eq!(
            p["schema"],
            json!(["EMAIL", "PHONE", "FN", "LN", "COUNTRY"])
        );
        assert_eq!(p["data"][0][0], json!(rows[0][0]));
        let s: Value = serde_json::from_str(&pairs[1].1).unwrap();
        assert_eq!(
            s,
            json!({"session_id": 7, "batch_seq": 1, "last_batch_flag": true, "estimated_num_total": 1})
        );
    }

    #[test]
    fn the_receipt_counts_are_read() {
        let r = parse_receipt(r#"{"audience_id":"1","session_id":"7","num_received":3,"num_invalid_entries":1,"invalid_entry_samples":{}}"#).unwrap();
        assert_eq!(
            r,
            Receipt {
                num_received: 3,
                num_invalid_entries: 1
            }
        );
        assert!(parse_receipt("{}").is_err());
    }

    #[test]
    fn a_person_without_email_or_phone_has_no_row() {
        let mut p = mary();
        p.email = "not-an-email".into();
        p.phone = Some("11987654321".into());
        assert_eq!(row(&p), None);
    }
}
