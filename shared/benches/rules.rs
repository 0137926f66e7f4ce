//! Rule evaluation throughput: one lead through a 50-rule accumulating config (every operator kind).
//!
//! The set-up asserts what it built (50 rules, a lead that some of them match), so the benchmark cannot
//! quietly measure nothing.

// A set-up failure must stop the benchmark loudly rather than let it measure nothing.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use chrono::DateTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxo::config::load_str;
use fluxo::domain::{Email, Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::routing::{Profile, RuleSet};

/// 50 rules cycling through the operators, over canonical, UTM and custom fields, plus 5 segments.
fn fifty_rules() -> String {
    let mut text = String::from(
        "[lead_router]\nmode = \"accumulate\"\n[lead_router.defaults]\nsegment = \"s0\"\n",
    );
    for s in 0..5 {
        text.push_str(&format!(
            "[lead_router.segments.s{s}]\nsequences = [\"seq_{s}\"]\n"
        ));
    }
    for i in 0..50 {
        let condition = match i % 8 {
            0 => format!("{{ field = \"interesse\", equals = \"Software {i}\" }}"),
            1 => "{ field = \"utm_source\", in = [\"google\", \"facebook\", \"linkedin\"] }"
                .to_string(),
            2 => "{ field = \"company\", contains = \"ltda\", ignore_case = true }".to_string(),
            3 => "{ field = \"email\", regex = \"@(gmail|hotmail|outlook)\\\\.com$\" }".to_string(),
            4 => "{ field = \"telefone\", exists = true }".to_string(),
            5 => format!("{{ field = \"custom.employees\", gte = {} }}", i * 10),
            6 => format!("{{ field = \"score\", gt = {i} }}"),
            _ => "{ field = \"origem\", equals = \"webinar\", not = true }".to_string(),
        };
        text.push_str(&format!(
            "[[lead_router.rules]]\nname = \"rule_{i}\"\nwhen = [{condition}]\nscore = {}\nsegment = \"s{}\"\naudiences = [\"aud_{}\"]\n",
            i % 7,
            i % 5,
            i % 4
        ));
    }
    text
}

fn bench(c: &mut Criterion) {
    let config = load_str("bench.toml", &fifty_rules())
        .map(|l| l.config)
        .expect("the benchmark's 50-rule config loads");
    let rules = RuleSet::compile(&config.lead_router).expect("the 50 rules compile");
    assert_eq!(rules.len(), 50);
    let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
    let email = Email::parse("joao.silva@gmail.com").expect("the benchmark's email is valid");
    let mut lead = Lead::with_email(email);
    lead.name = Some("João Silva".into());
    lead.company = Some("Empresa X Ltda".into());
    lead.interest = Some("Software A".into());
    lead.source = Some("Webinar XYZ".into());
    lead.utm.source = Some("google".into());
    lead.custom.insert("employees".into(), "250".into());
    let profile = Profile::new(
        &LeadEnvelope::new(LeadId::new(at, 1), "k".into(), at, None, lead),
        at,
    );

    let decision = rules.evaluate(&profile, &profile.last_touch);
    assert!(
        !decision.matched_rules.is_empty() && decision.segment.is_some(),
        "the benchmark's lead matches no rule: {decision:?}"
    );

    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function("evaluate_50_rules", |b| {
        b.iter(|| black_box(rules.evaluate(black_box(&profile), &profile.last_touch)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
