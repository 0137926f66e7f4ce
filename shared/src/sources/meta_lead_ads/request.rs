//! Meta lead ads, pure: the handshake check, the notification signature, the notification's leadgen ids,
//! the Graph API request and the classification and mapping of its answer. No I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connector::{Outcome, Reply};
use crate::domain::AdAttribution;
use crate::domain::intake::{RawFields, RawValue};
use crate::sources::{
    Request, SigningKeys, SourceLead, Unverified, Verified, VerifyError, any_key_equals,
    any_key_signs, json_text, safe_field_name,
};

use super::config::MetaLeadAdsConfig;

/// The notification signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The fields read for each lead.
pub const LEAD_FIELDS: &str =
    "created_time,field_data,ad_id,adset_id,campaign_id,form_id,custom_disclaimer_responses";

/// The `X-Hub-Signature-256` value for `body` under `app_secret`: `sha256=` + hex HMAC-SHA256.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crate::sources::hmac_sha256(app_secret, &[body]).unwrap_or_default())
    )
}

/// The subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`): the
/// challenge to echo when the token matches (in constant time), else `None` (a `403`). The challenge
/// must be short and alphanumeric: it is echoed back.
pub fn handshake<'q>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'q str>,
    verify_tokens: &SigningKeys,
) -> Option<&'q str> {
    let challenge = challenge?;
    let well_formed = (1..=128).contains(&challenge.len())
        && challenge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let token_ok = any_key_equals(verify_tokens, token.unwrap_or("").as_bytes());
    (mode == Some("subscribe") && token_ok && well_formed).then_some(challenge)
}

/// Checks `X-Hub-Signature-256` (hex HMAC-SHA256 of the raw body with the app secret) with each key.
/// Meta signs no timestamp and redelivers a notification for hours, so there is no freshness window:
/// a repeated notification is harmless because each `leadgen_id` is stored once.
pub fn verify<'a>(
    request: Request<'a, Unverified>,
    app_secrets: &SigningKeys,
) -> Result<Request<'a, Verified>, VerifyError> {
    let header = request
        .header(SIGNATURE_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;
    let signature = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
    if !any_key_signs(app_secrets, &[request.unverified_body()], &signature) {
        return Err(VerifyError::BadSignature);
    }
    Ok(request.verified(None, None))
}

/// One `leadgen` change of a notification: the lead to fetch, and what Meta said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadgenNotice {
    pub leadgen_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adgroup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
}

/// The `leadgen` changes of a verified `page` notification. Other fields and objects are ignored.
pub fn notices(request: &Request<'_, Verified>) -> Result<Vec<LeadgenNotice>, String> {
    let body: Value = serde_json::from_slice(request.body())
        .map_err(|e| format!("body is not valid JSON: line {}", e.line()))?;
    if body.get("object").and_then(Value::as_str) != Some("page") {
        return Err("object must be page".into());
    }
    let mut out = Vec::new();
    for entry in body
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for change in entry
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if change.get("field").and_then(Value::as_str) != Some("leadgen") {
                continue;
            }
            let Some(value) = change.get("value") else {
                continue;
            };
            let Some(leadgen_id) = json_text(value.get("leadgen_id"))
                .filter(|id| id.len() <= 64 && id.chars().all(|c| c.is_ascii_digit()))
            else {
                return Err("a leadgen change has no numeric leadgen_id".into());
            };
            out.push(LeadgenNotice {
                leadgen_id,
                page_id: json_text(value.get("page_id")).or_else(|| json_text(entry.get("id"))),
                form_id: json_text(value.get("form_id")),
                ad_id: json_text(value.get("ad_id")),
                adgroup_id: json_text(value.get("adgroup_id")),
                created_time: json_text(value.get("created_time")),
            });
        }
    }
    Ok(out)
}

/// The Graph API URL of one lead (without the token, which the client adds as `access_token`).
pub fn lead_url(graph_url: &str, leadgen_id: &str) -> String {
    format!(
        "{}/{leadgen_id}?fields={LEAD_FIELDS}",
        graph_url.trim_end_matches('/')
    )
}

/// Why a lead could not be fetched for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The Page token expired or was revoked (Graph error code 190): every lead of the source waits
    /// until a new token is deployed. Alarmed.
    TokenExpired(String),
    /// Anything else Meta refuses (a deleted lead, a missing permission): this lead cannot be fetched.
    Refused(String),
}

/// Meta's throttling codes (HTTP 400 with these `error.code`s).
fn is_throttling(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 613) || (80000..=80014).contains(&code)
}

/// Sorts a Graph reply: 200 is the lead; throttling codes, 408/429 and 5xx are retried; code 190 is an
/// expired token; any other error is a refusal of this lead.
pub fn classify(reply: &Reply) -> Outcome<Result<FetchedLead, Refusal>> {
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    if reply.status == 200 {
        return match parse_lead(&body) {
            Ok(lead) => Outcome::Success(Ok(lead)),
            Err(problem) => Outcome::Success(Err(Refusal::Refused(problem))),
        };
    }
    let code = body
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64);
    let summary = || {
        let message = body
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        format!(
            "HTTP {} code {}: {}",
            reply.status,
            code.map_or("-".into(), |c| c.to_string()),
            message.chars().take(200).collect::<String>()
        )
    };
    match code {
        Some(c) if is_throttling(c) => Outcome::Retryable {
            reason: summary(),
            retry_after: None,
        },
        Some(190) => Outcome::Success(Err(Refusal::TokenExpired(summary()))),
        _ => match reply.default_outcome() {
            Outcome::Retryable { retry_after, .. } => Outcome::Retryable {
                reason: summary(),
                retry_after,
            },
            _ => Outcome::Success(Err(Refusal::Refused(summary()))),
        },
    }
}

/// A lead as the Graph API returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedLead {
    pub id: String,
    pub created_time: Option<String>,
    /// Field name and its values, as answered.
    pub field_data: Vec<(String, Vec<String>)>,
    pub ad_id: Option<String>,
    pub adset_id: Option<String>,
    pub campaign_id: Option<String>,
    pub form_id: Option<String>,
    /// Checkbox key and whether it was ticked.
    pub disclaimer: Vec<(String, bool)>,
}

fn parse_lead(body: &Value) -> Result<FetchedLead, String> {
    let id = json_text(body.get("id")).ok_or("the lead has no id")?;
    let field_data = body
        .get("field_data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let name = json_text(f.get("name"))?;
            let values = f
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(|v| json_text(Some(v))).collect())
                .unwrap_or_default();
            Some((name, values))
        })
        .collect();
    let disclaimer = body
        .get("custom_disclaimer_responses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let key = json_text(r.get("checkbox_key"))?;
            let checked = match r.get("is_checked") {
                Some(Value::Bool(b)) => *b,
                other => matches!(json_text(other).as_deref(), Some("1" | "true")),
            };
            Some((key, checked))
        })
        .collect();
    Ok(FetchedLead {
        id,
        created_time: json_text(body.get("created_time")),
        field_data,
        ad_id: json_text(body.get("ad_id")),
        adset_id: json_text(body.get("adset_id")),
        campaign_id: json_text(body.get("campaign_id")),
        form_id: json_text(body.get("form_id")),
        disclaimer,
    })
}

impl FetchedLead {
    /// Maps the lead to Fluxo's fields: standard names through intake's aliases, custom questions by
    /// `config.fields` (else kept as custom fields), the disclaimer's checkbox to consent with the
    /// configured text, the ad ids to attribution. `notice` fills ids the fetch left out.
    pub fn into_source_lead(
        self,
        notice: &LeadgenNotice,
        config: &MetaLeadAdsConfig,
    ) -> SourceLead {
        let mut fields: RawFields = Vec::new();
        for (name, values) in &self.field_data {
            if values.is_empty() {
                continue;
            }
            let target = config
                .fields
                .get(name)
                .cloned()
                .unwrap_or_else(|| safe_field_name(name));
            fields.push((target, RawValue::Text(values.join(", "))));
        }
        let consent = match &config.consent_checkbox {
            Some(key) => self
                .disclaimer
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, checked)| *checked),
            None if !self.disclaimer.is_empty() => Some(self.disclaimer.iter().all(|(_, c)| *c)),
            None => None,
        };
        if let Some(granted) = consent {
            fields.push(("consent".into(), RawValue::Bool(granted)));
            if let Some(at) = self.created_time.as_deref().and_then(meta_time) {
                fields.push(("consent_at".into(), RawValue::Text(at.to_rfc3339())));
            }
            if let Some(text) = &config.consent_text {
                fields.push(("consent_text".into(), RawValue::Text(text.clone())));
            }
        }
        let form_id = self.form_id.or_else(|| notice.form_id.clone());
        if let Some(f) = &form_id {
            fields.push(("form".into(), RawValue::Text(f.clone())));
        }
        let attribution = AdAttribution {
            platform: Some("meta".into()),
            campaign_id: self.campaign_id,
            adset_id: self.adset_id.or_else(|| notice.adgroup_id.clone()),
            ad_id: self.ad_id.or_else(|| notice.ad_id.clone()),
            form_id,
            lead_id: Some(self.id.clone()),
        };
        SourceLead::new(self.id, fields, attribution, false)
    }
}

/// Meta's `created_time`: `2026-11-28T10:00:00+0000` (or RFC 3339).
fn meta_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SigningKey;

    const SECRET: &[u8] = b"meta-app-secret";
    pub(crate) const NOTIFICATION: &str = r#"{"object":"page","entry":[{"id":"153125381133","time":1764324000,"changes":[{"field":"leadgen","value":{"leadgen_id":"444444444444","page_id":"153125381133","form_id":"555555555555","ad_id":"666666666666","adgroup_id":"777777777777","created_time":1764324000}}]}]}"#;

    fn keys(secret: &[u8]) -> SigningKeys {
        SigningKeys::new(SigningKey::new(secret.to_vec()), None)
    }

    fn config() -> MetaLeadAdsConfig {
        toml::from_str(
            r#"name = "meta"
app_secret = { env = "X" }
verify_token = { env = "Y" }
page_token = { env = "Z" }
consent_checkbox = "marketing"
consent_text = "Aceito receber ofertas (v3)"
fields = { "qual_o_seu_orcamento?" = "budget" }"#,
        )
        .unwrap()
    }

    #[test]
    fn an_independent_openssl_vector_verifies() {
        // printf '%s' '{"object":"page"}' | openssl dgst -sha256 -mac HMAC -macopt key:meta-app-secret
        let body = br#"{"object":"page"}"#;
        let expected = "sha256=608590215a97c2b1eb88627b4845b66db760cda09f7172266c40e57ec1aa9cf6";
        assert_eq!(sign(SECRET, body), expected);
        let h = vec![(SIGNATURE_HEADER.to_string(), expected.to_string())];
        assert!(verify(Request::new(&h, body), &keys(SECRET)).is_ok());
    }

    #[test]
    fn hostile_notifications_are_refused() {
        let body = NOTIFICATION.as_bytes();
        assert_eq!(
            verify(Request::new(&[], body), &keys(SECRET)).map(|_| ()),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = vec![(SIGNATURE_HEADER.to_string(), sign(SECRET, body))];
        assert_eq!(
            verify(Request::new(&h, body), &keys(b"wrong")).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let other = NOTIFICATION.replace("444444444444", "444444444445");
        assert_eq!(
            verify(Request::new(&h, other.as_bytes()), &keys(SECRET)).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let sha1 = vec![(SIGNATURE_HEADER.to_string(), "sha1=abc".to_string())];
        assert_eq!(
            verify(Request::new(&sha1, body), &keys(SECRET)).map(|_| ()),
            Err(VerifyError::MalformedHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn the_handshake_echoes_the_challenge_only_for_the_right_token() {
        let tokens = keys(b"meu-token");
        assert_eq!(
            handshake(
                Some("subscribe"),
                Some("meu-token"),
                Some("1158201444"),
                &tokens
            ),
            Some("1158201444")
        );
        assert_eq!(
            handshake(
                Some("subscribe"),
                Some("outro"),
                Some("1158201444"),
                &tokens
            ),
            None
        );
        assert_eq!(handshake(Some("subscribe"), None, Some("1"), &tokens), None);
        assert_eq!(
            handshake(Some("unsubscribe"), Some("meu-token"), Some("1"), &tokens),
            None
        );
        assert_eq!(
            handshake(
                Some("subscribe"),
                Some("meu-token"),
                Some("<script>"),
                &tokens
            ),
            None
        );
    }

    #[test]
    fn a_notification_names_its_leadgen_ids() {
        let h = vec![(
            SIGNATURE_HEADER.to_string(),
            sign(SECRET, NOTIFICATION.as_bytes()),
        )];
        let verified = verify(Request::new(&h, NOTIFICATION.as_bytes()), &keys(SECRET)).unwrap();
        let found = notices(&verified).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].leadgen_id, "444444444444");
        assert_eq!(found[0].adgroup_id.as_deref(), Some("777777777777"));
        assert_eq!(found[0].created_time.as_deref(), Some("1764324000"));
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
        }
    }

    #[test]
    fn graph_replies_are_classified() {
        assert!(matches!(
            classify(&reply(
                400,
                r#"{"error":{"code":17,"message":"User request limit reached"}}"#
            )),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(&reply(400, r#"{"error":{"code":80005,"message":"x"}}"#)),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(&reply(503, "")),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(&reply(
                400,
                r#"{"error":{"code":190,"error_subcode":463,"message":"Session has expired"}}"#
            )),
            Outcome::Success(Err(Refusal::TokenExpired(_)))
        ));
        assert!(matches!(
            classify(&reply(
                400,
                r#"{"error":{"code":100,"message":"Unsupported get request"}}"#
            )),
            Outcome::Success(Err(Refusal::Refused(_)))
        ));
    }

    #[test]
    fn a_fetched_lead_maps_fields_consent_and_attribution() {
        let body = r#"{"id":"444444444444","created_time":"2026-11-28T10:00:00+0000","ad_id":"666666666666","adset_id":"777777777777","campaign_id":"888888888888","form_id":"555555555555","field_data":[{"name":"email","values":["Ana@Exemplo.com"]},{"name":"full_name","values":["Ana Silva"]},{"name":"phone_number","values":["+5511987654321"]},{"name":"qual_o_seu_orcamento?","values":["10-20k"]},{"name":"cidade?","values":["São Paulo"]}],"custom_disclaimer_responses":[{"checkbox_key":"marketing","is_checked":"1"},{"checkbox_key":"terms","is_checked":"0"}]}"#;
        let Outcome::Success(Ok(fetched)) = classify(&reply(200, body)) else {
            panic!("not a lead");
        };
        let notice = LeadgenNotice {
            leadgen_id: "444444444444".into(),
            page_id: None,
            form_id: None,
            ad_id: None,
            adgroup_id: None,
            created_time: None,
        };
        let source_lead = fetched.into_source_lead(&notice, &config());
        assert_eq!(source_lead.platform_id(), "444444444444");
        let now = DateTime::from_timestamp(1_764_400_000, 0).unwrap();
        let signed = source_lead
            .normalize("meta-leads", now, &Default::default())
            .unwrap();
        let l = signed.lead();
        assert_eq!(l.email.as_str(), "ana@exemplo.com");
        assert_eq!(l.name.as_deref(), Some("Ana Silva"));
        assert_eq!(l.custom.get("budget").map(String::as_str), Some("10-20k"));
        assert_eq!(
            l.custom.get("cidade").map(String::as_str),
            Some("São Paulo")
        );
        let consent = l.consent.as_ref().unwrap();
        assert!(consent.granted);
        assert_eq!(consent.text.as_deref(), Some("Aceito receber ofertas (v3)"));
        assert_eq!(
            consent.at.map(|t| t.to_rfc3339()),
            Some("2026-11-28T10:00:00+00:00".into())
        );
        assert_eq!(l.ad.campaign_id.as_deref(), Some("888888888888"));
        assert_eq!(l.ad.adset_id.as_deref(), Some("777777777777"));
        assert_eq!(l.ad.ad_id.as_deref(), Some("666666666666"));
        assert_eq!(l.ad.lead_id.as_deref(), Some("444444444444"));
        assert_eq!(l.source.as_deref(), Some("meta-leads"));
    }

    #[test]
    fn the_lead_url_asks_for_the_documented_fields() {
        assert_eq!(
            lead_url("https://graph.facebook.com/v25.0/", "444"),
            "https://graph.facebook.com/v25.0/444?fields=created_time,field_data,ad_id,adset_id,campaign_id,form_id,custom_disclaimer_responses"
        );
    }
}
