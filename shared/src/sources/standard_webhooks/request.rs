//! Verification and mapping for Standard Webhooks: pure, no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use crate::domain::AdAttribution;
use crate::sources::{
    Request, SigningKey, SigningKeys, SourceLead, TIMESTAMP_TOLERANCE_SECS, Unverified, Verified,
    VerifyError, any_key_signs, hmac_sha256, json_fields,
};

/// The message id header; the same id across a message's retries.
pub const ID_HEADER: &str = "webhook-id";
/// Unix seconds of the attempt, signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signing key of a `whsec_` secret: the base64 after the prefix, decoded.
pub fn key_from_secret(secret: &str) -> Result<SigningKey, String> {
    let encoded = secret
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("must start with {SECRET_PREFIX}"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| format!("must be {SECRET_PREFIX} followed by base64"))?;
    if bytes.len() < 16 {
        return Err("must hold at least 16 bytes of key".into());
    }
    Ok(SigningKey::new(bytes))
}

/// The `webhook-signature` value for a message: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn sign(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        key.bytes(),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    )
    .unwrap_or_default();
    format!("v1,{}", BASE64.encode(mac))
}

/// Checks the three headers against the raw body: a fresh timestamp (within 5 minutes of `now`) and a
/// `v1` signature by one of `keys`. The message id is carried on, for the replay check.
pub fn verify<'a>(
    request: Request<'a, Unverified>,
    keys: &SigningKeys,
    now: DateTime<Utc>,
) -> Result<Request<'a, Verified>, VerifyError> {
    let id = request
        .header(ID_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(ID_HEADER))?;
    if id.len() > 255 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(VerifyError::MalformedHeader(ID_HEADER));
    }
    let ts_text = request
        .header(TIMESTAMP_HEADER)
        .ok_or(VerifyError::MissingHeader(TIMESTAMP_HEADER))?;
    let ts: i64 = ts_text
        .parse()
        .map_err(|_| VerifyError::MalformedHeader(TIMESTAMP_HEADER))?;
    let signatures = request
        .header(SIGNATURE_HEADER)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;
    let age = now.timestamp().saturating_sub(ts);
    if age > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampTooOld);
    }
    if age < -TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampTooNew);
    }
    let body = request.unverified_body();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
    let matched = signatures
        .split(' ')
        .take(10)
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .any(|sig| any_key_signs(keys, &parts, &sig));
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    let at = DateTime::from_timestamp(ts, 0);
    let id = id.to_string();
    Ok(request.verified(Some(id), at))
}

/// The lead in a verified body: Fluxo's own lead JSON (the fields a form would send). The platform id
/// is the message id, so a redelivered message is one lead.
pub fn lead(request: &Request<'_, Verified>) -> Result<SourceLead, String> {
    let value: serde_json::Value = serde_json::from_slice(request.body())
        .map_err(|e| format!("body is not valid JSON: line {}", e.line()))?;
    let fields = json_fields(&value)?;
    let id = request.message_id().unwrap_or_default().to_string();
    Ok(SourceLead::new(id, fields, AdAttribution::default(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn keys(secret: &str) -> SigningKeys {
        SigningKeys::new(key_from_secret(secret).unwrap(), None)
    }

    fn headers(id: &str, ts: i64, signature: &str) -> Vec<(String, String)> {
        vec![
            (ID_HEADER.into(), id.into()),
            (TIMESTAMP_HEADER.into(), ts.to_string()),
            (SIGNATURE_HEADER.into(), signature.into()),
        ]
    }

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    #[test]
    fn the_specifications_published_vector_signs_and_verifies() {
        // The Standard Webhooks / svix reference vector.
        let key = key_from_secret(SPEC_SECRET).unwrap();
        assert_eq!(sign(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        let h = headers(SPEC_ID, SPEC_TS, SPEC_SIGNATURE);
        let verified = verify(
            Request::new(&h, SPEC_BODY),
            &keys(SPEC_SECRET),
            at(SPEC_TS + 10),
        )
        .unwrap();
        assert_eq!(verified.message_id(), Some(SPEC_ID));
        assert_eq!(verified.body(), SPEC_BODY);
    }

    #[test]
    fn an_independent_openssl_vector_verifies() {
        // printf 'msg_1.1764000000.{"email":"ana@exemplo.com"}' \
        //   | openssl dgst -sha256 -mac HMAC -macopt key:0123456789abcdef0123456789abcdef -binary | base64
        let secret = format!(
            "whsec_{}",
            BASE64.encode(b"0123456789abcdef0123456789abcdef")
        );
        let body = br#"{"email":"ana@exemplo.com"}"#;
        let expected = "v1,LznbZ4w2fLvCtCLzTp8togvhts6Y9qRiaFHqspUoI/E=";
        assert_eq!(
            sign(
                &key_from_secret(&secret).unwrap(),
                "msg_1",
                1_764_000_000,
                body
            ),
            expected
        );
        let h = headers("msg_1", 1_764_000_000, expected);
        assert!(verify(Request::new(&h, body), &keys(&secret), at(1_764_000_000)).is_ok());
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let h = headers(SPEC_ID, SPEC_TS, &format!("v1,bm9wZQ== {SPEC_SIGNATURE}"));
        assert!(verify(Request::new(&h, SPEC_BODY), &keys(SPEC_SECRET), at(SPEC_TS)).is_ok());
    }

    #[test]
    fn hostile_requests_are_refused_by_the_right_check() {
        let k = keys(SPEC_SECRET);
        let check = |h: Vec<(String, String)>, body: &[u8], now: i64| {
            verify(Request::new(&h, body), &k, at(now)).map(|_| ())
        };
        assert_eq!(
            check(vec![], SPEC_BODY, SPEC_TS),
            Err(VerifyError::MissingHeader(ID_HEADER))
        );
        let mut no_sig = headers(SPEC_ID, SPEC_TS, SPEC_SIGNATURE);
        no_sig.pop();
        assert_eq!(
            check(no_sig, SPEC_BODY, SPEC_TS),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(SPEC_ID, SPEC_TS, SPEC_SIGNATURE);
        assert_eq!(
            check(h.clone(), br#"{"test": 2432232315}"#, SPEC_TS),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(h.clone(), SPEC_BODY, SPEC_TS + 301),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            check(h.clone(), SPEC_BODY, SPEC_TS - 301),
            Err(VerifyError::TimestampTooNew)
        );
        let wrong = keys(&format!("whsec_{}", BASE64.encode([7u8; 24])));
        assert_eq!(
            verify(Request::new(&h, SPEC_BODY), &wrong, at(SPEC_TS)).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let h = headers(SPEC_ID, SPEC_TS, "v2,abc");
        assert_eq!(check(h, SPEC_BODY, SPEC_TS), Err(VerifyError::BadSignature));
        let mut bad_ts = headers(SPEC_ID, SPEC_TS, SPEC_SIGNATURE);
        bad_ts[1].1 = "soon".into();
        assert_eq!(
            check(bad_ts, SPEC_BODY, SPEC_TS),
            Err(VerifyError::MalformedHeader(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn a_secret_without_the_prefix_or_with_bad_base64_is_refused() {
        assert!(key_from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(key_from_secret("whsec_not base64!").is_err());
        assert!(key_from_secret("whsec_AAAA").is_err());
    }

    #[test]
    fn the_body_is_fluxos_lead_json() {
        let body = br#"{"email":"ana@exemplo.com","nome":"Ana","utm_source":"evento"}"#;
        let key = key_from_secret(SPEC_SECRET).unwrap();
        let sig = sign(&key, "msg_9", SPEC_TS, body);
        let h = headers("msg_9", SPEC_TS, &sig);
        let verified = verify(Request::new(&h, body), &keys(SPEC_SECRET), at(SPEC_TS)).unwrap();
        let lead = lead(&verified).unwrap();
        assert_eq!(lead.platform_id(), "msg_9");
        let signed = lead
            .normalize("backend", at(SPEC_TS), &Default::default())
            .unwrap();
        assert_eq!(signed.lead().email.as_str(), "ana@exemplo.com");
        assert_eq!(signed.lead().utm.source.as_deref(), Some("evento"));
        assert_eq!(signed.lead().source.as_deref(), Some("backend"));
    }
}
