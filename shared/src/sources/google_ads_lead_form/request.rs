//! Verification and mapping for Google Ads lead forms: pure, no I/O.

use serde_json::Value;

use crate::domain::AdAttribution;
use crate::domain::intake::{RawFields, RawValue};
use crate::sources::{
    Request, SigningKeys, SourceLead, Unverified, Verified, VerifyError, any_key_equals, json_text,
    safe_field_name,
};

/// Checks the body's `google_key` against the configured keys, in constant time. The key is in the
/// body, so the body is read as JSON to find it; nothing else of it is used before the key matches.
pub fn verify<'a>(
    request: Request<'a, Unverified>,
    keys: &SigningKeys,
) -> Result<Request<'a, Verified>, VerifyError> {
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        #[serde(default)]
        google_key: Option<String>,
    }
    let key = serde_json::from_slice::<KeyOnly>(request.unverified_body())
        .ok()
        .and_then(|k| k.google_key)
        .ok_or(VerifyError::BadKey)?;
    if !any_key_equals(keys, key.as_bytes()) {
        return Err(VerifyError::BadKey);
    }
    Ok(request.verified(None, None))
}

/// Fluxo's field for a `column_id`; `None` keeps the column as a custom field.
fn canonical(column_id: &str) -> Option<&'static str> {
    Some(match column_id {
        "FULL_NAME" => "full_name",
        "FIRST_NAME" => "first_name",
        "LAST_NAME" => "last_name",
        "EMAIL" | "WORK_EMAIL" => "email",
        "PHONE_NUMBER" | "WORK_PHONE" => "phone",
        "COMPANY_NAME" => "company",
        _ => return None,
    })
}

/// The lead in a verified `WebhookLead`. The platform id is `lead_id`.
pub fn lead(request: &Request<'_, Verified>) -> Result<SourceLead, String> {
    let body: Value = serde_json::from_slice(request.body())
        .map_err(|e| format!("body is not valid JSON: line {}", e.line()))?;
    let lead_id = json_text(body.get("lead_id")).ok_or("lead_id is missing")?;
    let mut fields: RawFields = Vec::new();
    for column in body
        .get("user_column_data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(value) = json_text(column.get("string_value")) else {
            continue;
        };
        let id = json_text(column.get("column_id")).unwrap_or_default();
        let name = match canonical(&id) {
            // A second email or phone column (work and personal) is kept as a custom field.
            Some(c) if !fields.iter().any(|(k, _)| k == c) => c.to_string(),
            _ => safe_field_name(
                &json_text(column.get("column_name")).unwrap_or_else(|| id.to_lowercase()),
            ),
        };
        fields.push((name, RawValue::Text(value)));
    }
    let gclid = json_text(body.get("gcl_id"));
    if let Some(g) = &gclid {
        fields.push(("gclid".into(), RawValue::Text(g.clone())));
    }
    let form_id = json_text(body.get("form_id"));
    if let Some(f) = &form_id {
        fields.push(("form".into(), RawValue::Text(f.clone())));
    }
    let attribution = AdAttribution {
        platform: Some("google".into()),
        campaign_id: json_text(body.get("campaign_id")),
        adset_id: json_text(body.get("adgroup_id")),
        ad_id: json_text(body.get("creative_id")),
        form_id,
        lead_id: Some(lead_id.clone()),
    };
    let test = body
        .get("is_test")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(SourceLead::new(lead_id, fields, attribution, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SigningKey;

    const LEAD: &str = r#"{"lead_id":"TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl","user_column_data":[{"column_name":"Full Name","string_value":"FirstName LastName","column_id":"FULL_NAME"},{"column_name":"User Phone","string_value":"+16505550123","column_id":"PHONE_NUMBER"},{"column_name":"User Email","string_value":"test@example.com","column_id":"EMAIL"},{"column_name":"Budget?","string_value":"10k","column_id":"SERVICE"}],"api_version":"1.0","form_id":40000000000,"campaign_id":20000000000,"google_key":"fluxo-google-key","is_test":true,"gcl_id":"gcl-1","adgroup_id":20000000000,"creative_id":30000000000}"#;

    fn keys() -> SigningKeys {
        SigningKeys::new(SigningKey::new(b"fluxo-google-key".to_vec()), None)
    }

    #[test]
    fn the_documented_sample_maps_to_a_test_lead_with_its_campaign() {
        let verified = verify(Request::new(&[], LEAD.as_bytes()), &keys()).unwrap();
        let source_lead = lead(&verified).unwrap();
        assert!(source_lead.is_test());
        let now = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let signed = source_lead
            .normalize("google-leads", now, &Default::default())
            .unwrap();
        let l = signed.lead();
        assert_eq!(l.email.as_str(), "test@example.com");
        assert_eq!(l.name.as_deref(), Some("FirstName LastName"));
        assert_eq!(l.phone.as_ref().map(|p| p.as_str()), Some("+16505550123"));
        assert_eq!(l.gclid.as_deref(), Some("gcl-1"));
        assert_eq!(l.ad.campaign_id.as_deref(), Some("20000000000"));
        assert_eq!(l.ad.adset_id.as_deref(), Some("20000000000"));
        assert_eq!(l.ad.form_id.as_deref(), Some("40000000000"));
        assert_eq!(l.ad.platform.as_deref(), Some("google"));
        assert!(l.test);
        assert_eq!(l.custom.get("Budget").map(String::as_str), Some("10k"));
    }

    #[test]
    fn a_wrong_or_missing_key_is_refused() {
        let wrong = LEAD.replace("fluxo-google-key", "guess");
        assert_eq!(
            verify(Request::new(&[], wrong.as_bytes()), &keys()).map(|_| ()),
            Err(VerifyError::BadKey)
        );
        let missing = LEAD.replace("\"google_key\":\"fluxo-google-key\",", "");
        assert_eq!(
            verify(Request::new(&[], missing.as_bytes()), &keys()).map(|_| ()),
            Err(VerifyError::BadKey)
        );
        assert_eq!(
            verify(Request::new(&[], b"not json"), &keys()).map(|_| ()),
            Err(VerifyError::BadKey)
        );
        let rotated = SigningKeys::new(
            SigningKey::new(b"new-key".to_vec()),
            Some(SigningKey::new(b"fluxo-google-key".to_vec())),
        );
        assert!(verify(Request::new(&[], LEAD.as_bytes()), &rotated).is_ok());
    }
}
