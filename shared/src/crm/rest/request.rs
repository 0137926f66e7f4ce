//! Builds the generic REST CRM requests (upsert, and the configured erase): pure, no I/O.

use serde_json::{Map, Value, json};

use super::config::{EraseMethod, RestErase};
use crate::crm::{CrmContact, PreparedRequest};
use crate::domain::Email;

/// `POST <url>` with the contact's mapped properties as a flat JSON object.
pub fn build(url: &str, contact: &CrmContact) -> PreparedRequest {
    let body: Map<String, Value> = contact
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    PreparedRequest {
        method: "POST",
        url: url.to_string(),
        body: Value::Object(body),
    }
}

/// The configured erase call for one person: `{email}` and `{email_sha256}` filled in the URL; `DELETE`
/// has no body (`null`), `POST` sends `{"email": ...}`.
pub fn erase(config: &RestErase, email: &Email) -> PreparedRequest {
    let url = config
        .url
        .get_ref()
        .replace("{email_sha256}", &email.sha256_hex())
        .replace(
            "{email}",
            &crate::email::brevo::request::path_segment(email.as_str()),
        );
    match config.method {
        EraseMethod::Delete => PreparedRequest {
            method: "DELETE",
            url,
            body: Value::Null,
        },
        EraseMethod::Post => PreparedRequest {
            method: "POST",
            url,
            body: json!({ "email": email.as_str() }),
        },
    }
}

/// What an erase answer means: `Some(true)` deleted, `Some(false)` already gone, `None` a failure.
pub fn read_erase(config: &RestErase, status: u16) -> Option<bool> {
    if config.success_status.contains(&status) {
        Some(true)
    } else if config.gone_status.contains(&status) {
        Some(false)
    } else {
        None
    }
}

/// The contact id in a created response, when the CRM returned one (`id`, `data.id` or `lead_id`).
pub fn contact_id(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let id = v
        .get("id")
        .or_else(|| v.get("data").and_then(|d| d.get("id")))
        .or_else(|| v.get("lead_id"))?;
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::config::Mapping;
    use crate::crm::rest::config::default_body;
    use crate::domain::{Email, Lead, LeadId};
    use crate::envelope::LeadEnvelope;
    use crate::routing::profile::{Profile, RoutingView};
    use crate::routing::rules::Decision;
    use chrono::DateTime;

    #[test]
    fn the_default_mapping_reproduces_the_articles_crm_body() {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let mut lead = Lead::with_email(Email::parse("ana.silva@exemplo.com").unwrap());
        lead.name = Some("Ana Silva".into());
        lead.company = Some("Empresa X".into());
        let id = LeadId::new(at, 1);
        let profile = Profile::new(
            &LeadEnvelope::new(id.clone(), "k".into(), at, None, lead),
            at,
        );
        let decision = Decision {
            crm_status: Some("novo_lead".into()),
            ..Decision::default()
        };
        let view = RoutingView {
            profile: &profile,
            submission: &profile.last_touch,
            decision: Some(&decision),
        };
        let contact = Mapping::compile(&default_body())
            .unwrap()
            .contact(&id, &view);

        let request = build("https://api.crmdigital.com/v1/leads", &contact);

        // The article's body, word for word (team fixture seed-crm-lead.json).
        let fixture: Value = serde_json::from_str(
            r#"{"first_name": "Ana Silva", "email": "ana.silva@exemplo.com", "company": "Empresa X", "status": "novo_lead"}"#,
        )
        .unwrap();
        assert_eq!(request.body, fixture);
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://api.crmdigital.com/v1/leads");
    }

    fn erase_config(text: &str) -> RestErase {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_erase_call_fills_the_url_placeholders_and_sends_no_body_on_delete() {
        let email = Email::parse("Ana+x@Exemplo.com").unwrap();
        let r = erase(
            &erase_config("url = \"https://crm.example/v1/leads/{email}?h={email_sha256}\""),
            &email,
        );
        assert_eq!(r.method, "DELETE");
        assert_eq!(
            r.url,
            format!(
                "https://crm.example/v1/leads/ana%2Bx%40exemplo.com?h={}",
                email.sha256_hex()
            )
        );
        assert_eq!(r.body, Value::Null);
        let post = erase(
            &erase_config("method = \"POST\"\nurl = \"https://crm.example/v1/erasures\""),
            &email,
        );
        assert_eq!(post.method, "POST");
        assert_eq!(post.body, json!({"email": "ana+x@exemplo.com"}));
    }

    #[test]
    fn erase_statuses_read_as_deleted_gone_or_failure() {
        let c = erase_config("url = \"https://crm.example/v1/leads/{email}\"");
        assert_eq!(read_erase(&c, 204), Some(true));
        assert_eq!(read_erase(&c, 404), Some(false));
        assert_eq!(read_erase(&c, 201), None);
        assert_eq!(read_erase(&c, 500), None);
    }

    #[test]
    fn contact_ids_are_read_from_common_shapes() {
        assert_eq!(contact_id(r#"{"id": 42}"#).as_deref(), Some("42"));
        assert_eq!(
            contact_id(r#"{"data": {"id": "abc"}}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(contact_id("created"), None);
    }
}
