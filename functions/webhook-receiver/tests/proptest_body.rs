//! Hostile request bodies of every content type against the receiver's public body decoder, then intake
//! (issue 13 §3). Properties: no panic, bounded time, and either the fields or a clear error. A body the
//! decoder accepts must also give a lead or a list of problems, never a panic, when normalized.
//! `PROPTEST_CASES` sets the number of cases.

use std::time::{Duration, Instant};

use fluxo::domain::intake::{self, IntakeSettings};
use proptest::prelude::*;
use webhook_receiver::body::{self, MAX_FIELDS};

/// Longest one decode + normalize may take (generous: the machine is shared and loaded).
const BOUND: Duration = Duration::from_secs(2);

/// The phone-number crate loads its metadata on first use: done once before any case is timed.
fn warm_up_phone_metadata() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let _ = rlibphonenumber::PHONE_NUMBER_UTIL.parse("+55 11 91234-5678", None);
    });
}

fn runtime() -> Result<tokio::runtime::Runtime, TestCaseError> {
    warm_up_phone_metadata();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(format!("no runtime: {e}")))
}

/// Decodes and normalizes one body; fails the case on a slow answer or an empty error message.
fn check(
    rt: &tokio::runtime::Runtime,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<bool, TestCaseError> {
    let start = Instant::now();
    let decoded = rt.block_on(body::decode(content_type, bytes));
    let accepted = match decoded {
        Ok(fields) => {
            prop_assert!(
                fields.len() <= MAX_FIELDS,
                "{} fields accepted",
                fields.len()
            );
            let at = chrono::Utc::now();
            match intake::normalize(&fields, None, at, &IntakeSettings::default()) {
                Ok(_) => true,
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    false
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            // Errors never quote the sender's bytes.
            if let Ok(text) = std::str::from_utf8(bytes)
                && text.len() >= 12
            {
                prop_assert!(!message.contains(text), "the error echoes the body");
            }
            false
        }
    };
    let took = start.elapsed();
    prop_assert!(
        took < BOUND,
        "{content_type:?} body of {} bytes took {took:?}",
        bytes.len()
    );
    Ok(accepted)
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("application/json; charset=latin1".to_string())),
        Just(Some("application/vnd.api+json".to_string())),
        Just(Some("text/json".to_string())),
        Just(Some("application/x-www-form-urlencoded".to_string())),
        Just(Some("multipart/form-data; boundary=XyZ".to_string())),
        Just(Some("multipart/form-data".to_string())),
        Just(Some("multipart/form-data; boundary=".to_string())),
        Just(Some(
            "multipart/form-data; boundary=\"a b\"; boundary=other".to_string()
        )),
        Just(Some("text/plain".to_string())),
        Just(Some("application/xml".to_string())),
        Just(Some("application/json, text/plain".to_string())),
        ".{0,40}".prop_map(Some),
    ]
}

fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        ".{0,30}".prop_map(serde_json::Value::String),
        Just(serde_json::json!("ana@exemplo.com")),
    ];
    let value = leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("email".to_string()),
                    Just("nome".to_string()),
                    Just("consent".to_string()),
                    Just("_redirect".to_string()),
                    Just("_gotcha".to_string()),
                    ".{0,10}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
        (1usize..20_000).prop_map(|depth| {
            let mut s = String::with_capacity(depth * 7 + 2);
            for _ in 0..depth {
                s.push_str("{\"a\":");
            }
            s.push('1');
            for _ in 0..depth {
                s.push('}');
            }
            s.into_bytes()
        }),
        (1usize..20_000).prop_map(|n| {
            let mut s = String::from("{\"email\":\"a@exemplo.com\",\"n\":");
            s.push_str(&"9".repeat(n));
            s.push('}');
            s.into_bytes()
        }),
    ]
}

fn form_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(("[a-z_%+=&]{0,10}", "[ -~]{0,20}"), 0..30).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        }),
        (1usize..5_000).prop_map(|n| "a=1&".repeat(n).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
        Just(b"email=%FF%FE&nome=%C3%28".to_vec()),
    ]
}

fn multipart_body() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        ("[a-z_]{1,8}", "[ -~]{0,20}").prop_map(|(n, v)| format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"
        )),
        Just("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n".to_string()),
        Just("--XyZ\r\nContent-Disposition: form-data\r\n\r\nno name\r\n".to_string()),
        Just("--XyZ\r\n\r\n\r\n".to_string()),
        Just("--XyZ--\r\n--XyZ\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nend\r\n".to_string()),
        Just("--XyZX\r\nContent-Disposition: form-data; name=\"near\"\r\n\r\nmiss\r\n".to_string()),
        ".{0,40}",
    ];
    prop_oneof![
        prop::collection::vec(part, 0..12).prop_map(|parts| {
            let mut s = parts.concat();
            s.push_str("--XyZ--\r\n");
            s.into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #[test]
    fn any_body_of_any_content_type_is_fields_or_a_clear_error(
        ct in content_type(),
        bytes in prop_oneof![json_body(), form_body(), multipart_body()],
    ) {
        let rt = runtime()?;
        check(&rt, ct.as_deref(), &bytes)?;
    }

    #[test]
    fn json_bodies_are_decoded_or_refused_without_panic(bytes in json_body()) {
        let rt = runtime()?;
        check(&rt, Some("application/json"), &bytes)?;
    }

    #[test]
    fn form_bodies_are_decoded_or_refused_without_panic(bytes in form_body()) {
        let rt = runtime()?;
        check(&rt, Some("application/x-www-form-urlencoded"), &bytes)?;
    }

    #[test]
    fn multipart_bodies_are_decoded_or_refused_without_panic(bytes in multipart_body()) {
        let rt = runtime()?;
        check(&rt, Some("multipart/form-data; boundary=XyZ"), &bytes)?;
    }

    #[test]
    fn a_valid_lead_in_any_content_type_is_accepted(
        local in "[a-z]{1,12}",
        name in "[A-Za-z]{1,12}",
        kind in 0u8..3,
    ) {
        let email = format!("{local}@exemplo.com");
        let (ct, bytes) = match kind {
            0 => ("application/json".to_string(), serde_json::json!({"email": email, "nome": name}).to_string().into_bytes()),
            1 => ("application/x-www-form-urlencoded".to_string(), format!("email={email}&nome={name}").into_bytes()),
            _ => ("multipart/form-data; boundary=XyZ".to_string(), format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n{email}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"nome\"\r\n\r\n{name}\r\n--XyZ--\r\n"
            ).into_bytes()),
        };
        let rt = runtime()?;
        prop_assert!(check(&rt, Some(&ct), &bytes)?, "a valid {ct} lead was refused");
    }
}

#[test]
fn json_nested_ten_thousand_deep_is_refused_quickly() {
    let rt = runtime().unwrap();
    let depth = 10_000;
    let body = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let start = Instant::now();
    let result = rt.block_on(body::decode(Some("application/json"), body.as_bytes()));
    assert!(result.is_err(), "a 10,000-deep JSON body was accepted");
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
}

#[test]
fn a_hundred_thousand_fields_are_refused_quickly() {
    let rt = runtime().unwrap();
    let body = (0..100_000)
        .map(|i| format!("f{i}=x"))
        .collect::<Vec<_>>()
        .join("&");
    let start = Instant::now();
    let result = rt.block_on(body::decode(
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    ));
    assert!(
        matches!(result, Err(body::BodyError::TooManyFields { .. })),
        "{result:?}"
    );
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
}
