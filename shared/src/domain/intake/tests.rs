//! Intake's unit tests: aliases, values, consent, custom fields, controls, fingerprints.

use super::*;
use crate::domain::fields::{LeadField, UtmPart};

fn text(pairs: &[(&str, &str)]) -> RawFields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), RawValue::Text(v.to_string())))
        .collect()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap()
}

fn lead_of(submission: Submission) -> Lead {
    match submission {
        Submission::Lead { lead, .. } => *lead,
        Submission::Spam { .. } => panic!("unexpected spam"),
    }
}

fn accept(fields: &RawFields) -> Lead {
    lead_of(normalize(fields, None, now(), &IntakeSettings::default()).unwrap())
}

fn problems(fields: &RawFields) -> Vec<FieldProblem> {
    normalize(fields, None, now(), &IntakeSettings::default()).unwrap_err()
}

#[test]
fn the_articles_payload_is_accepted_as_sent() {
    let fields = text(&[
        ("nome", "João"),
        ("email", "joao@exemplo.com"),
        ("origem", "Webinar XYZ"),
        ("interesse", "Software A"),
    ]);
    let lead = accept(&fields);
    assert_eq!(lead.name.as_deref(), Some("João"));
    assert_eq!(lead.email.as_str(), "joao@exemplo.com");
    assert_eq!(lead.source.as_deref(), Some("Webinar XYZ"));
    assert_eq!(lead.interest.as_deref(), Some("Software A"));
    assert!(lead.custom.is_empty());
}

#[test]
fn every_alias_reaches_its_canonical_field() {
    for canon in LeadField::ALL {
        for alias in canon.aliases() {
            let value = match canon {
                LeadField::Email => "a@exemplo.com",
                LeadField::Phone => "+5511987654321",
                LeadField::Consent => "yes",
                LeadField::ConsentAt => "2026-01-02T03:04:05Z",
                LeadField::PageUrl => "https://exemplo.com/a",
                _ => "valor",
            };
            let mut fields = text(&[(alias, value)]);
            if canon != LeadField::Email {
                fields.push(("email".into(), RawValue::Text("a@exemplo.com".into())));
            }
            if matches!(canon, LeadField::ConsentAt | LeadField::ConsentText) {
                fields.push(("consent".into(), RawValue::Text("yes".into())));
            }
            let lead = lead_of(
                normalize(&fields, None, now(), &IntakeSettings::default())
                    .unwrap_or_else(|p| panic!("alias {alias} refused: {p:?}")),
            );
            assert!(
                lead.custom.is_empty(),
                "alias {alias} became a custom field"
            );
            let got = match canon {
                LeadField::Email => Some(lead.email.as_str().to_string()),
                LeadField::Name => lead.name.clone(),
                LeadField::FirstName => lead.first_name.clone(),
                LeadField::LastName => lead.last_name.clone(),
                LeadField::Company => lead.company.clone(),
                LeadField::Phone => lead.phone.as_ref().map(|p| p.as_str().to_string()),
                LeadField::Source => lead.source.clone(),
                LeadField::Interest => lead.interest.clone(),
                LeadField::Form => lead.form.clone(),
                LeadField::Consent => lead.consent.as_ref().map(|c| c.granted.to_string()),
                LeadField::ConsentAt => lead
                    .consent
                    .as_ref()
                    .and_then(|c| c.at)
                    .map(|t| t.to_rfc3339()),
                LeadField::ConsentText => lead.consent.as_ref().and_then(|c| c.text.clone()),
                LeadField::Utm(UtmPart::Source) => lead.utm.source.clone(),
                LeadField::Utm(UtmPart::Medium) => lead.utm.medium.clone(),
                LeadField::Utm(UtmPart::Campaign) => lead.utm.campaign.clone(),
                LeadField::Utm(UtmPart::Term) => lead.utm.term.clone(),
                LeadField::Utm(UtmPart::Content) => lead.utm.content.clone(),
                LeadField::Gclid => lead.gclid.clone(),
                LeadField::Fbclid => lead.fbclid.clone(),
                LeadField::PageUrl => lead.page_url.clone(),
            };
            assert!(got.is_some(), "alias {alias} did not fill {}", canon.name());
        }
    }
}

#[test]
fn field_names_match_case_and_dash_insensitively() {
    let lead = accept(&text(&[
        ("E-Mail", "a@exemplo.com"),
        ("Nome", "Ana"),
        ("UTM_Source", "google"),
    ]));
    assert_eq!(lead.email.as_str(), "a@exemplo.com");
    assert_eq!(lead.name.as_deref(), Some("Ana"));
    assert_eq!(lead.utm.source.as_deref(), Some("google"));
}

#[test]
fn values_are_trimmed_and_whitespace_collapsed_but_unicode_kept() {
    let lead = accept(&text(&[
        ("email", " A@Exemplo.com "),
        ("name", "  José \t da   Silva\n"),
        ("company", "Café ☕ Ltda"),
    ]));
    assert_eq!(lead.name.as_deref(), Some("José da Silva"));
    assert_eq!(lead.company.as_deref(), Some("Café ☕ Ltda"));
    assert_eq!(lead.email.as_str(), "a@exemplo.com");
}

#[test]
fn first_and_last_name_make_the_full_name() {
    let lead = accept(&text(&[
        ("email", "a@exemplo.com"),
        ("first_name", "Ana"),
        ("last_name", "Silva"),
    ]));
    assert_eq!(lead.name.as_deref(), Some("Ana Silva"));
    assert_eq!(lead.first_name.as_deref(), Some("Ana"));
}

#[test]
fn missing_email_is_reported() {
    let p = problems(&text(&[("nome", "Ana")]));
    assert_eq!(p, vec![FieldProblem::new("email", "is required")]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let fields = text(&[
        ("email", "nope"),
        ("telefone", "abc"),
        ("company", &"x".repeat(201)),
    ]);
    let p = problems(&fields);
    let names: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(names, vec!["company", "email", "phone"]);
}

#[test]
fn over_long_values_are_refused() {
    let p = problems(&text(&[
        ("email", "a@exemplo.com"),
        ("utm_campaign", &"c".repeat(201)),
    ]));
    assert_eq!(
        p,
        vec![FieldProblem::new(
            "utm_campaign",
            "is longer than 200 characters"
        )]
    );
}

#[test]
fn phone_becomes_e164_with_a_default_country() {
    let settings = IntakeSettings {
        default_country: Some(rlibphonenumber::Region::BR),
        ..Default::default()
    };
    let fields = text(&[("email", "a@exemplo.com"), ("whatsapp", "(11) 98765-4321")]);
    let lead = lead_of(normalize(&fields, None, now(), &settings).unwrap());
    assert_eq!(lead.phone.unwrap().as_str(), "+5511987654321");
}

#[test]
fn a_second_phone_alias_is_kept_as_a_custom_field() {
    let lead = accept(&text(&[
        ("email", "a@exemplo.com"),
        ("telefone", "+5511987654321"),
        ("whatsapp", "+5511912345678"),
    ]));
    assert_eq!(lead.phone.unwrap().as_str(), "+5511987654321");
    assert_eq!(
        lead.custom.get("whatsapp").map(String::as_str),
        Some("+5511912345678")
    );
}

#[test]
fn consent_flag_records_the_time_received_and_the_text() {
    let lead = accept(&text(&[
        ("email", "a@exemplo.com"),
        ("consentimento", "sim"),
        ("consent_version", "v3"),
    ]));
    let consent = lead.consent.unwrap();
    assert!(consent.granted);
    assert_eq!(consent.at, Some(now()));
    assert_eq!(consent.text.as_deref(), Some("v3"));
}

#[test]
fn consent_object_is_read_from_json() {
    let fields = vec![
        ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
        (
            "consent".to_string(),
            RawValue::Object(vec![
                ("granted".into(), RawValue::Bool(false)),
                (
                    "at".into(),
                    RawValue::Text("2026-11-01T10:00:00-03:00".into()),
                ),
            ]),
        ),
    ];
    let consent = accept(&fields).consent.unwrap();
    assert!(!consent.granted);
    assert_eq!(
        consent.at.unwrap().to_rfc3339(),
        "2026-11-01T13:00:00+00:00"
    );
}

#[test]
fn unreadable_consent_is_refused() {
    let p = problems(&text(&[("email", "a@exemplo.com"), ("consent", "maybe")]));
    assert_eq!(p[0].field, "consent");
    let p = problems(&text(&[("email", "a@exemplo.com"), ("consent_text", "v1")]));
    assert_eq!(
        p[0].problem,
        "is required when consent_at or consent_text is sent"
    );
}

#[test]
fn unknown_fields_become_custom_fields() {
    let lead = accept(&text(&[
        ("email", "a@exemplo.com"),
        ("cargo", "CTO"),
        ("Número de funcionários", "50"),
    ]));
    assert_eq!(lead.custom.get("cargo").map(String::as_str), Some("CTO"));
    assert_eq!(
        lead.custom
            .get("Número de funcionários")
            .map(String::as_str),
        Some("50")
    );
}

#[test]
fn custom_fields_are_bounded_in_count_and_length() {
    let mut fields = text(&[("email", "a@exemplo.com")]);
    for i in 0..51 {
        fields.push((format!("f{i}"), RawValue::Text("v".into())));
    }
    let p = problems(&fields);
    assert_eq!(
        p,
        vec![FieldProblem::new(
            "(custom fields)",
            "at most 50 custom fields are accepted"
        )]
    );

    let p = problems(&text(&[
        ("email", "a@exemplo.com"),
        ("notes", &"n".repeat(1001)),
    ]));
    assert_eq!(
        p,
        vec![FieldProblem::new("notes", "is longer than 1000 characters")]
    );
}

#[test]
fn custom_field_names_with_markup_are_refused_without_echoing_them() {
    let p = problems(&text(&[
        ("email", "a@exemplo.com"),
        ("<script>alert(1)</script>", "x"),
    ]));
    assert_eq!(p[0].field, "(custom field name)");
    assert!(!p[0].problem.contains("<script>"));
}

#[test]
fn nested_values_are_refused() {
    let fields = vec![
        ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
        ("company".to_string(), RawValue::List),
        ("extra".to_string(), RawValue::Object(vec![])),
    ];
    let p = problems(&fields);
    assert_eq!(
        p[0],
        FieldProblem::new("company", "must be a single value, not a list")
    );
    assert_eq!(
        p[1],
        FieldProblem::new("extra", "must be a single value, not an object")
    );
}

#[test]
fn numbers_and_booleans_are_kept_as_text() {
    let fields = vec![
        ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
        ("employees".to_string(), RawValue::Number("50".into())),
        ("newsletter".to_string(), RawValue::Bool(true)),
    ];
    let lead = accept(&fields);
    assert_eq!(lead.custom.get("employees").map(String::as_str), Some("50"));
    assert_eq!(
        lead.custom.get("newsletter").map(String::as_str),
        Some("true")
    );
}

#[test]
fn a_filled_honeypot_is_flagged_and_skips_validation() {
    let fields = text(&[("email", "not valid"), ("_gotcha", "http://spam")]);
    let submission = normalize(&fields, None, now(), &IntakeSettings::default()).unwrap();
    assert_eq!(submission, Submission::Spam { redirect: None });
}

#[test]
fn an_empty_honeypot_is_ignored() {
    let fields = text(&[("email", "a@exemplo.com"), ("_gotcha", "")]);
    let lead = lead_of(normalize(&fields, None, now(), &IntakeSettings::default()).unwrap());
    assert!(lead.custom.is_empty());
}

#[test]
fn the_honeypot_field_name_is_configurable() {
    let settings = IntakeSettings {
        honeypot_field: "website".into(),
        ..Default::default()
    };
    let fields = text(&[("email", "a@exemplo.com"), ("website", "x")]);
    assert!(matches!(
        normalize(&fields, None, now(), &settings).unwrap(),
        Submission::Spam { .. }
    ));
}

#[test]
fn redirect_and_other_control_fields_are_not_stored() {
    let submission = normalize(
        &text(&[
            ("email", "a@exemplo.com"),
            ("_redirect", "https://site.com/obrigado"),
            ("_subject", "x"),
        ]),
        None,
        now(),
        &IntakeSettings::default(),
    )
    .unwrap();
    assert_eq!(submission.redirect(), Some("https://site.com/obrigado"));
    assert!(lead_of(submission).custom.is_empty());
}

#[test]
fn the_path_source_is_used_when_the_body_names_none() {
    let fields = text(&[("email", "a@exemplo.com")]);
    let lead =
        lead_of(normalize(&fields, Some("landing"), now(), &IntakeSettings::default()).unwrap());
    assert_eq!(lead.source.as_deref(), Some("landing"));
    let fields = text(&[("email", "a@exemplo.com"), ("origem", "Webinar")]);
    let lead =
        lead_of(normalize(&fields, Some("landing"), now(), &IntakeSettings::default()).unwrap());
    assert_eq!(lead.source.as_deref(), Some("Webinar"));
}

#[test]
fn page_url_must_be_http() {
    let p = problems(&text(&[
        ("email", "a@exemplo.com"),
        ("page_url", "javascript:alert(1)"),
    ]));
    assert_eq!(
        p,
        vec![FieldProblem::new(
            "page_url",
            "must be an http or https URL"
        )]
    );
}

fn fingerprint_at(fields: &RawFields, endpoint: Option<&str>, at: DateTime<Utc>) -> String {
    match normalize(fields, endpoint, at, &IntakeSettings::default()).unwrap() {
        Submission::Lead { fingerprint, .. } => fingerprint,
        Submission::Spam { .. } => panic!("unexpected spam"),
    }
}

#[test]
fn a_consent_time_filled_in_by_the_server_is_not_part_of_the_fingerprint() {
    let fields = text(&[("email", "a@exemplo.com"), ("consent", "yes")]);
    let later = now() + chrono::Duration::milliseconds(1500);
    assert_eq!(
        fingerprint_at(&fields, None, now()),
        fingerprint_at(&fields, None, later)
    );
    // The lead itself still records when consent was received.
    let lead = lead_of(normalize(&fields, None, later, &IntakeSettings::default()).unwrap());
    assert_eq!(lead.consent.unwrap().at, Some(later));
}

#[test]
fn a_consent_time_the_client_sent_is_part_of_the_fingerprint() {
    let at = |t: &str| {
        fingerprint_at(
            &text(&[
                ("email", "a@exemplo.com"),
                ("consent", "yes"),
                ("consent_at", t),
            ]),
            None,
            now(),
        )
    };
    assert_ne!(at("2026-01-02T03:04:05Z"), at("2026-01-02T03:04:06Z"));
}

#[test]
fn any_difference_in_what_the_client_sent_changes_the_fingerprint() {
    let base = [("email", "a@exemplo.com"), ("interesse", "Software A")];
    let print = |extra: &[(&str, &str)], endpoint: Option<&str>| {
        let mut fields = text(&base);
        fields.extend(text(extra));
        fingerprint_at(&fields, endpoint, now())
    };
    let first = print(&[], None);
    assert_eq!(first, print(&[], None));
    assert_ne!(first, print(&[("telefone", "+5511987654321")], None));
    assert_ne!(first, print(&[("cargo", "CTO")], None));
    assert_ne!(first, print(&[], Some("landing")));
    let other_interest = fingerprint_at(
        &text(&[("email", "a@exemplo.com"), ("interesse", "Software B")]),
        None,
        now(),
    );
    assert_ne!(first, other_interest);
    assert_ne!(
        content_dedup_key(&first),
        content_dedup_key(&other_interest)
    );
}
