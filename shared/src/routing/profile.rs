//! One profile per person (normalized email): submissions, attribution, latest field values, consent history.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fields::{Facts, FieldRef, LeadField, UtmPart};
use super::rules::Decision;
use crate::domain::{Email, LeadId, Utm};
use crate::envelope::LeadEnvelope;

/// Most submissions kept on a profile: the first (first touch) and the latest ones. Bounds the item size.
pub const MAX_SUBMISSIONS: usize = 50;
/// Most consent events kept: the first and the latest ones.
pub const MAX_CONSENT_EVENTS: usize = 20;
/// Most custom fields (`custom.<name>`) kept: the most recently set ones. The receiver accepts 50 per
/// submission, so one submission's custom fields always fit; older names make way for newer ones.
pub const MAX_CUSTOM_FIELDS: usize = 50;
/// Longest value kept for any field, in characters (the receiver's limits are lower; this guards the
/// profile against envelopes from elsewhere).
pub const MAX_FIELD_CHARS: usize = 2_048;
/// Largest profile, as stored JSON, in bytes. DynamoDB refuses items over 400 KB; the rest of the item
/// (the latest CRM record, at most [`MAX_CRM_FAILURES`] failures, the keys) stays well under the other
/// 200 KB. Past it, the oldest submissions (never the first), then the oldest consent events (never
/// the first and latest), then the oldest custom fields are dropped.
pub const MAX_PROFILE_BYTES: usize = 200_000;
/// Most permanent CRM failures kept on a profile (`crm_failures`): the latest ones.
pub const MAX_CRM_FAILURES: usize = 10;
/// Longest CRM failure reason kept, in characters.
pub const MAX_CRM_REASON_CHARS: usize = 500;

/// The CRM record state of a lead the CRM refused for good.
pub const CRM_PERMANENT_FAILURE: &str = "permanent_failure";

/// A value and the time of the submission that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub value: String,
    pub at: DateTime<Utc>,
}

/// One form submission, as kept on the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub lead_id: LeadId,
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// The ad platform ids of a lead-ad lead.
    #[serde(
        default,
        skip_serializing_if = "crate::domain::AdAttribution::is_empty"
    )]
    pub ad: crate::domain::AdAttribution,
}

impl Submission {
    /// The submission an envelope carries.
    pub fn of(envelope: &LeadEnvelope) -> Self {
        let lead = &envelope.lead;
        Submission {
            lead_id: envelope.lead_id.clone(),
            received_at: envelope.received_at,
            source: lead.source.clone(),
            form: lead.form.clone(),
            endpoint: envelope.endpoint.clone(),
            utm: lead.utm.clone(),
            page_url: lead.page_url.clone(),
            gclid: lead.gclid.clone(),
            fbclid: lead.fbclid.clone(),
            ad: lead.ad.clone(),
        }
    }
}

/// One explicit consent answer (a grant or a refusal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    pub granted: bool,
    /// When the person answered (the form's time, else the time the lead was received).
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The submission that carried it.
    pub lead_id: LeadId,
}

/// What happened to the profile's CRM upsert for one lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmRecord {
    /// The connector (`rest`, `hubspot`), with `dry_run` when nothing was sent.
    pub connector: String,
    pub lead_id: LeadId,
    pub at: DateTime<Utc>,
    /// `done` or `permanent_failure`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The exact request, for the dry-run connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::crm::RecordedRequest>,
}

impl CrmRecord {
    /// Whether the CRM refused the lead for good (the only records kept in `crm_failures`).
    pub fn is_permanent_failure(&self) -> bool {
        self.state == CRM_PERMANENT_FAILURE
    }

    /// The record with its reason cut to [`MAX_CRM_REASON_CHARS`], as stored.
    pub fn bounded(&self) -> CrmRecord {
        let mut record = self.clone();
        if let Some(reason) = &mut record.reason {
            truncate_chars(reason, MAX_CRM_REASON_CHARS);
        }
        record
    }
}

/// Cuts a string to at most `max` characters, on a character boundary.
fn truncate_chars(text: &mut String, max: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
    }
}

/// A person: every submission, first and last touch, the latest value of each field, consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub email: Email,
    /// Canonical and custom fields (`custom.<name>`), each the latest non-empty value.
    #[serde(default)]
    pub fields: BTreeMap<String, Stamped>,
    /// Oldest first; bounded by [`MAX_SUBMISSIONS`], always keeping the first.
    #[serde(default)]
    pub submissions: Vec<Submission>,
    pub first_touch: Submission,
    pub last_touch: Submission,
    /// Oldest first; bounded by [`MAX_CONSENT_EVENTS`].
    #[serde(default)]
    pub consent_history: Vec<ConsentEvent>,
    /// The latest routing decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a merge changed the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The submission was new and is now on the profile.
    Added,
    /// The profile already held this submission (a redelivery); nothing changed.
    AlreadyMerged,
}

impl Profile {
    /// A profile made from its first submission.
    pub fn new(envelope: &LeadEnvelope, now: DateTime<Utc>) -> Self {
        let submission = Submission::of(envelope);
        let mut profile = Profile {
            email: envelope.lead.email.clone(),
            fields: BTreeMap::new(),
            submissions: Vec::new(),
            first_touch: submission.clone(),
            last_touch: submission,
            consent_history: Vec::new(),
            decision: None,
            created_at: now,
            updated_at: now,
        };
        profile.merge(envelope, now);
        profile
    }

    /// The stable key of the profile: the SHA-256 of the normalized email.
    pub fn key(&self) -> String {
        self.email.sha256_hex()
    }

    /// Merges a submission. Idempotent: merging the same lead id twice changes nothing.
    ///
    /// Submissions may arrive out of order, so each field keeps the value of the latest submission that
    /// had one, attribution is recomputed from the sorted submissions, and consent follows the latest
    /// explicit answer. A submission without a consent answer leaves consent as it was.
    pub fn merge(&mut self, envelope: &LeadEnvelope, now: DateTime<Utc>) -> Merge {
        if self
            .submissions
            .iter()
            .any(|s| s.lead_id == envelope.lead_id)
        {
            return Merge::AlreadyMerged;
        }
        let at = envelope.received_at;
        let lead = &envelope.lead;
        let mut set = |key: Cow<'_, str>, value: Option<&str>| {
            let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                return;
            };
            let newer = self.fields.get(key.as_ref()).is_none_or(|old| at >= old.at);
            if newer {
                let mut value = value.to_string();
                truncate_chars(&mut value, MAX_FIELD_CHARS);
                self.fields.insert(key.into_owned(), Stamped { value, at });
            }
        };
        set(Cow::Borrowed("email"), Some(lead.email.as_str()));
        set(Cow::Borrowed("name"), lead.name.as_deref());
        set(Cow::Borrowed("first_name"), lead.first_name.as_deref());
        set(Cow::Borrowed("last_name"), lead.last_name.as_deref());
        set(Cow::Borrowed("company"), lead.company.as_deref());
        set(
            Cow::Borrowed("phone"),
            lead.phone.as_ref().map(|p| p.as_str()),
        );
        set(Cow::Borrowed("source"), lead.source.as_deref());
        set(Cow::Borrowed("interest"), lead.interest.as_deref());
        set(Cow::Borrowed("form"), lead.form.as_deref());
        for (name, value) in &lead.custom {
            set(Cow::Owned(format!("custom.{name}")), Some(value));
        }

        let submission = Submission::of(envelope);
        let pos = self
            .submissions
            .partition_point(|s| s.received_at <= submission.received_at);
        self.submissions.insert(pos, submission);
        keep_first_and_latest(&mut self.submissions, MAX_SUBMISSIONS);
        if let (Some(first), Some(last)) = (self.submissions.first(), self.submissions.last()) {
            self.first_touch = first.clone();
            self.last_touch = last.clone();
        }

        if let Some(consent) = &lead.consent {
            let event = ConsentEvent {
                granted: consent.granted,
                at: consent.at.unwrap_or(at),
                text: consent.text.clone(),
                lead_id: envelope.lead_id.clone(),
            };
            let pos = self.consent_history.partition_point(|e| e.at <= event.at);
            self.consent_history.insert(pos, event);
            keep_first_and_latest(&mut self.consent_history, MAX_CONSENT_EVENTS);
        }
        self.keep_latest_custom_fields(MAX_CUSTOM_FIELDS);
        self.fit_within(MAX_PROFILE_BYTES);
        self.updated_at = now;
        Merge::Added
    }

    /// Drops the custom fields set longest ago until at most `max` remain.
    fn keep_latest_custom_fields(&mut self, max: usize) {
        let mut custom: Vec<(DateTime<Utc>, String)> = self
            .fields
            .iter()
            .filter(|(k, _)| k.starts_with("custom."))
            .map(|(k, v)| (v.at, k.clone()))
            .collect();
        let excess = custom.len().saturating_sub(max);
        if excess == 0 {
            return;
        }
        custom.sort();
        for (_, key) in custom.into_iter().take(excess) {
            self.fields.remove(&key);
        }
    }

    /// Shrinks the profile until its JSON fits in `max_bytes`: oldest submissions first (the first
    /// touch and the latest stay), then consent events (the first and the latest stay), then custom fields.
    pub fn fit_within(&mut self, max_bytes: usize) {
        let Ok(size) = serde_json::to_vec(self).map(|v| v.len()) else {
            return;
        };
        let mut excess = size.saturating_sub(max_bytes);
        while excess > 0 && self.submissions.len() > 2 {
            let dropped = self.submissions.remove(1);
            excess = excess.saturating_sub(json_size(&dropped) + 1);
        }
        while excess > 0 && self.consent_history.len() > 2 {
            let dropped = self.consent_history.remove(1);
            excess = excess.saturating_sub(json_size(&dropped) + 1);
        }
        while excess > 0 {
            let oldest = self
                .fields
                .iter()
                .filter(|(k, _)| k.starts_with("custom."))
                .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)))
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else { break };
            if let Some(dropped) = self.fields.remove(&key) {
                excess = excess.saturating_sub(key.len() + json_size(&dropped) + 4);
            }
        }
    }

    /// The current consent: the latest explicit answer, or `None` when the person never answered.
    pub fn consent(&self) -> Option<&ConsentEvent> {
        self.consent_history.last()
    }

    /// Whether the person's latest explicit answer is a grant.
    pub fn has_marketing_consent(&self) -> bool {
        self.consent().is_some_and(|c| c.granted)
    }

    /// The latest non-empty value of a stored field.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(|s| s.value.as_str())
    }

    /// The best first name: the explicit one, or the first word of the full name.
    pub fn display_first_name(&self) -> Option<&str> {
        self.field("first_name")
            .or_else(|| self.field("name").and_then(|n| n.split(' ').next()))
    }
}

fn borrowed(v: Option<&str>) -> Option<Cow<'_, str>> {
    v.filter(|v| !v.is_empty()).map(Cow::Borrowed)
}

/// Bytes of a value's JSON.
fn json_size(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}

fn keep_first_and_latest<T>(items: &mut Vec<T>, max: usize) {
    if items.len() > max && max >= 2 {
        let excess = items.len() - max;
        items.drain(1..1 + excess);
    }
}

/// What rules read: the merged profile, the submission being routed, and the decision so far.
#[derive(Debug, Clone, Copy)]
pub struct RoutingView<'a> {
    pub profile: &'a Profile,
    pub submission: &'a Submission,
    pub decision: Option<&'a Decision>,
}

impl Facts for RoutingView<'_> {
    fn get(&self, field: &FieldRef) -> Option<Cow<'_, str>> {
        let p = self.profile;
        let s = self.submission;
        match field {
            FieldRef::Lead(lead) => match lead {
                LeadField::Email => Some(Cow::Borrowed(p.email.as_str())),
                LeadField::Name => borrowed(p.field("name")),
                LeadField::FirstName => borrowed(p.display_first_name()),
                LeadField::LastName => borrowed(p.field("last_name")),
                LeadField::Company => borrowed(p.field("company")),
                LeadField::Phone => borrowed(p.field("phone")),
                LeadField::Source => borrowed(s.source.as_deref().or(p.field("source"))),
                LeadField::Interest => borrowed(p.field("interest")),
                LeadField::Form => borrowed(s.form.as_deref().or(p.field("form"))),
                LeadField::PageUrl => borrowed(s.page_url.as_deref()),
                LeadField::Gclid => borrowed(s.gclid.as_deref()),
                LeadField::Fbclid => borrowed(s.fbclid.as_deref()),
                LeadField::Consent => p
                    .consent()
                    .map(|c| Cow::Borrowed(if c.granted { "granted" } else { "refused" })),
                // `FieldRef::parse` never yields these: rules read `consent`.
                LeadField::ConsentAt | LeadField::ConsentText => None,
                LeadField::Utm(part) => borrowed(match part {
                    UtmPart::Source => s.utm.source.as_deref(),
                    UtmPart::Medium => s.utm.medium.as_deref(),
                    UtmPart::Campaign => s.utm.campaign.as_deref(),
                    UtmPart::Term => s.utm.term.as_deref(),
                    UtmPart::Content => s.utm.content.as_deref(),
                }),
            },
            FieldRef::EmailDomain => Some(Cow::Borrowed(p.email.domain())),
            FieldRef::Endpoint => borrowed(s.endpoint.as_deref()),
            FieldRef::Custom(name) => p
                .fields
                .get(&format!("custom.{name}"))
                .map(|v| Cow::Borrowed(v.value.as_str())),
            FieldRef::SubmissionCount => Some(Cow::Owned(p.submissions.len().to_string())),
            FieldRef::Segment => self.decision.and_then(|d| borrowed(d.segment.as_deref())),
            FieldRef::Score => Some(Cow::Owned(
                self.decision.map(|d| d.score).unwrap_or(0).to_string(),
            )),
            FieldRef::CrmStatus => self
                .decision
                .and_then(|d| borrowed(d.crm_status.as_deref())),
            FieldRef::CrmOwner => self.decision.and_then(|d| borrowed(d.crm_owner.as_deref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Consent, Lead};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
    }

    fn envelope(n: u128, secs: i64, edit: impl FnOnce(&mut Lead)) -> LeadEnvelope {
        let mut lead = Lead::with_email(Email::parse("joao@exemplo.com").unwrap());
        edit(&mut lead);
        LeadEnvelope::new(
            LeadId::new(at(secs), n),
            format!("k{n}"),
            at(secs),
            None,
            lead,
        )
    }

    fn consent(granted: bool, secs: i64) -> Option<Consent> {
        Some(Consent {
            granted,
            at: Some(at(secs)),
            text: Some("v1".into()),
        })
    }

    #[test]
    fn a_field_takes_the_latest_non_empty_value() {
        let first = envelope(1, 0, |l| {
            l.company = Some("Empresa X".into());
            l.name = Some("João".into());
        });
        let second = envelope(2, 10, |l| l.company = Some("Empresa Y".into()));
        let mut profile = Profile::new(&first, at(0));
        profile.merge(&second, at(10));
        assert_eq!(profile.field("company"), Some("Empresa Y"));
        assert_eq!(
            profile.field("name"),
            Some("João"),
            "an empty value never erases a known one"
        );
    }

    #[test]
    fn an_older_submission_arriving_late_does_not_overwrite_newer_values() {
        let newer = envelope(2, 10, |l| l.company = Some("New".into()));
        let older = envelope(1, 0, |l| l.company = Some("Old".into()));
        let mut profile = Profile::new(&newer, at(10));
        profile.merge(&older, at(11));
        assert_eq!(profile.field("company"), Some("New"));
        assert_eq!(profile.first_touch.lead_id, older.lead_id);
        assert_eq!(profile.last_touch.lead_id, newer.lead_id);
    }

    #[test]
    fn every_submission_is_kept_with_first_and_last_touch_attribution() {
        let first = envelope(1, 0, |l| l.utm.source = Some("google".into()));
        let second = envelope(2, 60, |l| l.utm.source = Some("facebook".into()));
        let mut profile = Profile::new(&first, at(0));
        profile.merge(&second, at(60));
        assert_eq!(profile.submissions.len(), 2);
        assert_eq!(profile.first_touch.utm.source.as_deref(), Some("google"));
        assert_eq!(profile.last_touch.utm.source.as_deref(), Some("facebook"));
    }

    #[test]
    fn merging_the_same_submission_twice_changes_nothing() {
        let first = envelope(1, 0, |_| {});
        let mut profile = Profile::new(&first, at(0));
        let before = profile.clone();
        assert_eq!(profile.merge(&first, at(5)), Merge::AlreadyMerged);
        assert_eq!(profile, before);
    }

    #[test]
    fn a_submission_without_consent_leaves_a_refusal_in_place() {
        let refused = envelope(1, 0, |l| l.consent = consent(false, 0));
        let silent = envelope(2, 10, |_| {});
        let mut profile = Profile::new(&refused, at(0));
        profile.merge(&silent, at(10));
        assert!(!profile.has_marketing_consent());
        assert_eq!(profile.consent_history.len(), 1);
    }

    #[test]
    fn only_an_explicit_new_grant_records_a_grant() {
        let refused = envelope(1, 0, |l| l.consent = consent(false, 0));
        let granted = envelope(2, 10, |l| l.consent = consent(true, 10));
        let mut profile = Profile::new(&refused, at(0));
        profile.merge(&granted, at(10));
        assert!(profile.has_marketing_consent());
        assert_eq!(
            profile.consent_history.len(),
            2,
            "the refusal stays in the history"
        );
    }

    #[test]
    fn a_late_arriving_old_grant_does_not_override_a_newer_refusal() {
        let refused = envelope(2, 10, |l| l.consent = consent(false, 10));
        let old_grant = envelope(1, 0, |l| l.consent = consent(true, 0));
        let mut profile = Profile::new(&refused, at(10));
        profile.merge(&old_grant, at(11));
        assert!(!profile.has_marketing_consent());
    }

    #[test]
    fn submissions_are_bounded_but_the_first_touch_is_kept() {
        let first = envelope(0, 0, |_| {});
        let mut profile = Profile::new(&first, at(0));
        for n in 1..=(MAX_SUBMISSIONS as u128 + 10) {
            profile.merge(&envelope(n, n as i64, |_| {}), at(n as i64));
        }
        assert_eq!(profile.submissions.len(), MAX_SUBMISSIONS);
        assert_eq!(profile.submissions[0].lead_id, first.lead_id);
        assert_eq!(profile.first_touch.lead_id, first.lead_id);
    }

    /// A hostile post for a victim's email: every field at the receiver's limits, 50 new custom fields.
    fn hostile(n: u128) -> LeadEnvelope {
        envelope(n, n as i64, |l| {
            l.company = Some("x".repeat(200));
            l.page_url = Some(format!("https://evil.example/{}", "p".repeat(2000)));
            l.gclid = Some("g".repeat(512));
            l.fbclid = Some("f".repeat(512));
            l.utm.source = Some("s".repeat(200));
            l.utm.campaign = Some("c".repeat(200));
            l.consent = Some(Consent {
                granted: n.is_multiple_of(2),
                at: Some(at(n as i64)),
                text: Some("t".repeat(2000)),
            });
            for k in 0..50 {
                l.custom.insert(format!("h{n}_{k}"), "v".repeat(1000));
            }
        })
    }

    #[test]
    fn hostile_submissions_leave_a_bounded_profile_that_still_takes_a_genuine_lead() {
        let mut profile = Profile::new(&hostile(1), at(1));
        for n in 2..=1_000u128 {
            assert_eq!(profile.merge(&hostile(n), at(n as i64)), Merge::Added);
            if n.is_multiple_of(50) {
                let size = serde_json::to_vec(&profile).unwrap().len();
                assert!(
                    size <= MAX_PROFILE_BYTES,
                    "{size} bytes after {n} hostile posts"
                );
            }
        }
        assert!(
            profile
                .fields
                .keys()
                .filter(|k| k.starts_with("custom."))
                .count()
                <= MAX_CUSTOM_FIELDS
        );
        assert!(profile.consent_history.len() <= MAX_CONSENT_EVENTS);
        assert_eq!(
            profile.first_touch.lead_id,
            hostile(1).lead_id,
            "first touch is kept"
        );

        let genuine = envelope(5_000, 5_000, |l| {
            l.interest = Some("Software A".into());
            l.custom.insert("cargo".into(), "CTO".into());
        });
        profile.merge(&genuine, at(5_000));
        assert_eq!(profile.last_touch.lead_id, genuine.lead_id);
        assert_eq!(profile.field("interest"), Some("Software A"));
        assert_eq!(
            profile.field("custom.cargo"),
            Some("CTO"),
            "the genuine lead's own fields are kept"
        );
        assert!(serde_json::to_vec(&profile).unwrap().len() <= MAX_PROFILE_BYTES);
    }

    #[test]
    fn custom_fields_beyond_the_cap_make_way_for_the_newest() {
        let first = envelope(1, 0, |l| {
            for k in 0..MAX_CUSTOM_FIELDS {
                l.custom.insert(format!("old{k}"), "v".into());
            }
        });
        let second = envelope(2, 10, |l| {
            l.custom.insert("new".into(), "v".into());
        });
        let mut profile = Profile::new(&first, at(0));
        profile.merge(&second, at(10));
        let custom = profile
            .fields
            .keys()
            .filter(|k| k.starts_with("custom."))
            .count();
        assert_eq!(custom, MAX_CUSTOM_FIELDS);
        assert_eq!(profile.field("custom.new"), Some("v"));
    }

    #[test]
    fn an_oversized_value_is_cut_on_a_character_boundary() {
        let first = envelope(1, 0, |l| l.company = Some("é".repeat(MAX_FIELD_CHARS + 10)));
        let profile = Profile::new(&first, at(0));
        assert_eq!(
            profile.field("company").unwrap().chars().count(),
            MAX_FIELD_CHARS
        );
    }

    #[test]
    fn a_crm_failure_reason_is_bounded() {
        let record = CrmRecord {
            connector: "hubspot".into(),
            lead_id: LeadId::new(at(0), 1),
            at: at(0),
            state: CRM_PERMANENT_FAILURE.into(),
            contact_id: None,
            reason: Some("ü".repeat(5_000)),
            request: None,
        };
        assert!(record.is_permanent_failure());
        let bounded = record.bounded();
        assert_eq!(
            bounded.reason.unwrap().chars().count(),
            MAX_CRM_REASON_CHARS
        );
    }

    #[test]
    fn custom_fields_are_merged_under_their_prefix() {
        let first = envelope(1, 0, |l| {
            l.custom.insert("cargo".into(), "CTO".into());
        });
        let profile = Profile::new(&first, at(0));
        let view = RoutingView {
            profile: &profile,
            submission: &profile.last_touch,
            decision: None,
        };
        assert_eq!(
            view.get(&FieldRef::Custom("cargo".into())).as_deref(),
            Some("CTO")
        );
    }
}
