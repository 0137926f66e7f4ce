//! Verification and mapping for Typeform: pure, no I/O.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::domain::AdAttribution;
use crate::domain::intake::{RawFields, RawValue};
use crate::sources::{
    Request, SigningKeys, SourceLead, Unverified, Verified, VerifyError, any_key_signs,
    hmac_sha256, json_text, safe_field_name,
};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "typeform-signature";

/// The header value Typeform sends for `body` under `secret`: `sha256=` + base64 HMAC-SHA256.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        BASE64.encode(hmac_sha256(secret, &[body]).unwrap_or_default())
    )
}

/// Checks `Typeform-Signature` against the raw body with each key.
pub fn verify<'a>(
    request: Request<'a, Unverified>,
    keys: &SigningKeys,
) -> Result<Request<'a, Verified>, VerifyError> {
    let header = request
        .header(SIGNATURE_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;
    let signature = header
        .strip_prefix("sha256=")
        .and_then(|b64| BASE64.decode(b64).ok())
        .ok_or(VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
    if !any_key_signs(keys, &[request.unverified_body()], &signature) {
        return Err(VerifyError::BadSignature);
    }
    Ok(request.verified(None, None))
}

/// The value of one answer, by its `type`.
fn answer_value(answer: &Value) -> Option<RawValue> {
    let kind = answer.get("type")?.as_str()?;
    let text = |v: Option<&Value>| json_text(v).map(RawValue::Text);
    match kind {
        "boolean" => answer.get("boolean")?.as_bool().map(RawValue::Bool),
        "choice" => text(answer.get("choice")?.get("label")),
        "choices" => {
            let labels: Vec<String> = answer
                .get("choices")?
                .get("labels")?
                .as_array()?
                .iter()
                .filter_map(|l| json_text(Some(l)))
                .collect();
            (!labels.is_empty()).then(|| RawValue::Text(labels.join(", ")))
        }
        other => text(answer.get(other)),
    }
}

/// The lead in a verified `form_response` event: answers mapped by field ref (`fields`), unlisted
/// answers kept as custom fields, hidden fields (UTM, gclid, fbclid) as sent. The platform id is the
/// response's `token`.
pub fn lead(
    request: &Request<'_, Verified>,
    fields: &BTreeMap<String, String>,
) -> Result<SourceLead, String> {
    let event: Value = serde_json::from_slice(request.body())
        .map_err(|e| format!("body is not valid JSON: line {}", e.line()))?;
    if event.get("event_type").and_then(Value::as_str) != Some("form_response") {
        return Err("event_type must be form_response".into());
    }
    let response = event
        .get("form_response")
        .filter(|r| r.is_object())
        .ok_or("form_response is missing")?;
    let token = json_text(response.get("token"))
        .or_else(|| json_text(event.get("event_id")))
        .ok_or("form_response.token is missing")?;
    let mut out: RawFields = Vec::new();
    if let Some(hidden) = response.get("hidden").and_then(Value::as_object) {
        for (k, v) in hidden {
            if let Some(t) = json_text(Some(v)) {
                out.push((safe_field_name(k), RawValue::Text(t)));
            }
        }
    }
    for answer in response
        .get("answers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(field_ref) = answer
            .get("field")
            .and_then(|f| json_text(f.get("ref")).or_else(|| json_text(f.get("id"))))
        else {
            continue;
        };
        let Some(value) = answer_value(answer) else {
            continue;
        };
        let name = fields
            .get(&field_ref)
            .cloned()
            .unwrap_or_else(|| safe_field_name(&field_ref));
        out.push((name, value));
    }
    if let Some(form) = json_text(response.get("form_id")) {
        out.push(("form".into(), RawValue::Text(form)));
    }
    if let Some(at) = json_text(response.get("submitted_at"))
        && out.iter().any(|(k, _)| k == "consent")
    {
        out.push(("consent_at".into(), RawValue::Text(at)));
    }
    Ok(SourceLead::new(token, out, AdAttribution::default(), false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SigningKey;

    const SECRET: &[u8] = b"typeform-test-secret";
    const EVENT: &str = r#"{"event_id":"01HX","event_type":"form_response","form_response":{"form_id":"lT4Z3j","token":"a3a12ec67a1ace1b5a18a6c8b5a8c38d","submitted_at":"2026-11-28T10:00:00Z","hidden":{"utm_source":"instagram","gclid":"g-1"},"answers":[{"type":"email","email":"Ana@Exemplo.com","field":{"id":"x1","ref":"work_email","type":"email"}},{"type":"text","text":"Ana Silva","field":{"id":"x2","ref":"nome","type":"short_text"}},{"type":"choice","choice":{"label":"Software A"},"field":{"id":"x3","ref":"produto","type":"multiple_choice"}},{"type":"boolean","boolean":true,"field":{"id":"x4","ref":"aceite_lgpd","type":"yes_no"}},{"type":"number","number":42,"field":{"id":"x5","ref":"team size?","type":"number"}}]}}"#;

    fn keys() -> SigningKeys {
        SigningKeys::new(SigningKey::new(SECRET.to_vec()), None)
    }

    fn signed(signature: &str) -> Vec<(String, String)> {
        vec![(SIGNATURE_HEADER.into(), signature.into())]
    }

    #[test]
    fn an_independent_openssl_vector_verifies() {
        // printf '%s' '{"event_id":"1"}' | openssl dgst -sha256 -mac HMAC \
        //   -macopt key:typeform-test-secret -binary | base64
        let body = br#"{"event_id":"1"}"#;
        let expected = "sha256=Gm7ZEKYeSVw/41pKMdan9tsKTXvKmzWY9PaIoGAxjHM=";
        assert_eq!(sign(SECRET, body), expected);
        let h = signed(expected);
        assert!(verify(Request::new(&h, body), &keys()).is_ok());
    }

    #[test]
    fn hostile_requests_are_refused() {
        let body = EVENT.as_bytes();
        let good = sign(SECRET, body);
        let no_header: Vec<(String, String)> = vec![];
        assert_eq!(
            verify(Request::new(&no_header, body), &keys()).map(|_| ()),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let hex = signed(&format!("sha256={}", hex::encode([1u8; 32])));
        assert!(verify(Request::new(&hex, body), &keys()).is_err());
        let h = signed(&good);
        let tampered = EVENT.replace("Ana Silva", "Eve");
        assert_eq!(
            verify(Request::new(&h, tampered.as_bytes()), &keys()).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let other = SigningKeys::new(SigningKey::new(b"other".to_vec()), None);
        assert_eq!(
            verify(Request::new(&h, body), &other).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let rotated = SigningKeys::new(
            SigningKey::new(b"other".to_vec()),
            Some(SigningKey::new(SECRET.to_vec())),
        );
        assert!(verify(Request::new(&h, body), &rotated).is_ok());
    }

    #[test]
    fn answers_map_by_field_ref_and_the_rest_are_kept() {
        let body = EVENT.as_bytes();
        let h = signed(&sign(SECRET, body));
        let verified = verify(Request::new(&h, body), &keys()).unwrap();
        let map = BTreeMap::from([
            ("work_email".to_string(), "email".to_string()),
            ("produto".to_string(), "interest".to_string()),
            ("aceite_lgpd".to_string(), "consent".to_string()),
        ]);
        let source_lead = lead(&verified, &map).unwrap();
        assert_eq!(
            source_lead.platform_id(),
            "a3a12ec67a1ace1b5a18a6c8b5a8c38d"
        );
        let now = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let signed = source_lead
            .normalize("typeform", now, &Default::default())
            .unwrap();
        let l = signed.lead();
        assert_eq!(l.email.as_str(), "ana@exemplo.com");
        assert_eq!(l.name.as_deref(), Some("Ana Silva"));
        assert_eq!(l.interest.as_deref(), Some("Software A"));
        assert!(l.has_marketing_consent());
        assert_eq!(
            l.consent
                .as_ref()
                .and_then(|c| c.at)
                .map(|t| t.to_rfc3339()),
            Some("2026-11-28T10:00:00+00:00".into())
        );
        assert_eq!(l.utm.source.as_deref(), Some("instagram"));
        assert_eq!(l.gclid.as_deref(), Some("g-1"));
        assert_eq!(l.form.as_deref(), Some("lT4Z3j"));
        assert_eq!(l.custom.get("team size").map(String::as_str), Some("42"));
    }

    #[test]
    fn another_event_type_is_refused() {
        let body = br#"{"event_type":"form_partial_response"}"#;
        let h = signed(&sign(SECRET, body));
        let verified = verify(Request::new(&h, body), &keys()).unwrap();
        assert!(lead(&verified, &BTreeMap::new()).is_err());
    }
}
