//! Builds the generic REST CRM request: pure, no I/O.

use serde_json::{Map, Value};

use crate::crm::{CrmContact, PreparedRequest};

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
