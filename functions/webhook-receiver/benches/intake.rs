//! Throughput of the receiver's CPU work: parse + validate + normalize + envelope, per typical form body.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxo::domain::intake::{self, IntakeSettings, Submission};
use fluxo::domain::{Email, LeadId, Phone};
use fluxo::envelope::LeadEnvelope;

const FORM: &[u8] = b"nome=Jo%C3%A3o+da+Silva&email=Joao.Silva%40Exemplo.com.br&telefone=%2811%29+98765-4321\
&empresa=Empresa+X&origem=Webinar+XYZ&interesse=Software+A&utm_source=google&utm_medium=cpc\
&utm_campaign=black-friday&page_url=https%3A%2F%2Fexemplo.com.br%2Fwebinar&consentimento=sim&cargo=CTO";

const SEED_JSON: &[u8] =
    br#"{"nome": "Jo\u00e3o", "email": "joao@exemplo.com", "origem": "Webinar XYZ", "interesse": "Software A"}"#;

fn accept(
    runtime: &tokio::runtime::Runtime,
    content_type: &str,
    body: &[u8],
    settings: &IntakeSettings,
) -> String {
    let at: DateTime<Utc> = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
    let fields = runtime
        .block_on(webhook_receiver::body::decode(Some(content_type), body))
        .unwrap_or_default();
    let Ok(Submission::Lead {
        lead, fingerprint, ..
    }) = intake::normalize(&fields, None, at, settings)
    else {
        return String::new();
    };
    let key = intake::content_dedup_key(&fingerprint);
    let envelope = LeadEnvelope::new(LeadId::new(at, 42), key, at, None, *lead);
    envelope.to_json().unwrap_or_default()
}

fn bench_intake(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| std::process::abort());
    let settings = IntakeSettings {
        default_country: Some(rlibphonenumber::Region::BR),
        ..Default::default()
    };
    // Make sure the benchmark measures accepted, fully normalized leads, not an early rejection: each
    // body's envelope must parse back and carry the normalized values.
    let form = accept(
        &runtime,
        "application/x-www-form-urlencoded",
        FORM,
        &settings,
    );
    let form = LeadEnvelope::from_json(&form).unwrap_or_else(|_| std::process::abort());
    assert_eq!(form.lead.email.as_str(), "joao.silva@exemplo.com.br");
    assert_eq!(
        form.lead.phone.as_ref().map(|p| p.as_str()),
        Some("+5511987654321")
    );
    assert_eq!(form.lead.utm.campaign.as_deref(), Some("black-friday"));
    assert!(form.lead.has_marketing_consent());
    let seed = accept(&runtime, "application/json", SEED_JSON, &settings);
    let seed = LeadEnvelope::from_json(&seed).unwrap_or_else(|_| std::process::abort());
    assert_eq!(seed.lead.name.as_deref(), Some("João"));
    assert_eq!(seed.lead.interest.as_deref(), Some("Software A"));

    let mut group = c.benchmark_group("intake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("urlencoded_form_with_phone", |b| {
        b.iter(|| {
            accept(
                &runtime,
                "application/x-www-form-urlencoded",
                black_box(FORM),
                &settings,
            )
        })
    });
    group.bench_function("article_json_payload", |b| {
        b.iter(|| {
            accept(
                &runtime,
                "application/json",
                black_box(SEED_JSON),
                &settings,
            )
        })
    });
    group.finish();

    // The form's steps alone, so that a miss above names its step.
    let mut steps = c.benchmark_group("intake_steps");
    steps.throughput(Throughput::Elements(1));
    steps.bench_function("decode_urlencoded_form", |b| {
        b.iter(|| {
            runtime.block_on(webhook_receiver::body::decode(
                Some("application/x-www-form-urlencoded"),
                black_box(FORM),
            ))
        })
    });
    let fields = runtime
        .block_on(webhook_receiver::body::decode(
            Some("application/x-www-form-urlencoded"),
            FORM,
        ))
        .unwrap_or_default();
    let at: DateTime<Utc> = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
    steps.bench_function("normalize_form", |b| {
        b.iter(|| intake::normalize(black_box(&fields), None, at, &settings))
    });
    let Ok(Submission::Lead { lead, .. }) = intake::normalize(&fields, None, at, &settings) else {
        std::process::abort()
    };
    steps.bench_function("client_fingerprint", |b| {
        b.iter(|| intake::client_fingerprint(black_box(&lead), None))
    });
    let envelope = LeadEnvelope::new(LeadId::new(at, 42), "k".into(), at, None, (*lead).clone());
    steps.bench_function("envelope_to_json", |b| {
        b.iter(|| black_box(&envelope).to_json())
    });
    steps.bench_function("phone_national_br", |b| {
        b.iter(|| Phone::parse(black_box("(11) 98765-4321"), settings.default_country))
    });
    steps.bench_function("phone_international", |b| {
        b.iter(|| Phone::parse(black_box("+55 11 98765-4321"), None))
    });
    steps.bench_function("email", |b| {
        b.iter(|| Email::parse(black_box("Joao.Silva@Exemplo.com.br")))
    });
    steps.finish();
}

criterion_group!(benches, bench_intake);
criterion_main!(benches);
