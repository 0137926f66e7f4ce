//! Customer Match requests, built without I/O: the job, its operations (hashed identifiers and the
//! person's own consent), `:run`, the status query, and the readers of Google's answers.

use serde_json::{Value, json};

use crate::audience::normalize::{google_email, google_phone, sha256_hex};
use crate::audience::{ConsentStatus, JobStatus, Op, Person};

/// Most operations in one `addOperations` request: at most two identifiers each, under Google's
/// 100,000 identifiers per request.
pub const MAX_OPERATIONS: usize = 50_000;

/// `{endpoint}/{version}/customers/{customer}/offlineUserDataJobs:create`.
pub fn create_url(endpoint: &str, version: &str, customer_id: &str) -> String {
    format!(
        "{}/{version}/customers/{customer_id}/offlineUserDataJobs:create",
        endpoint.trim_end_matches('/')
    )
}

/// `{endpoint}/{version}/{job}:addOperations`.
pub fn add_operations_url(endpoint: &str, version: &str, job: &str) -> String {
    format!(
        "{}/{version}/{job}:addOperations",
        endpoint.trim_end_matches('/')
    )
}

/// `{endpoint}/{version}/{job}:run`.
pub fn run_url(endpoint: &str, version: &str, job: &str) -> String {
    format!("{}/{version}/{job}:run", endpoint.trim_end_matches('/'))
}

/// `{endpoint}/{version}/customers/{customer}/googleAds:search`.
pub fn search_url(endpoint: &str, version: &str, customer_id: &str) -> String {
    format!(
        "{}/{version}/customers/{customer_id}/googleAds:search",
        endpoint.trim_end_matches('/')
    )
}

/// The job name a dry run shows in its later requests (no job is created).
pub fn dry_run_job(customer_id: &str) -> String {
    format!("customers/{customer_id}/offlineUserDataJobs/DRY_RUN")
}

fn consent(status: ConsentStatus) -> Value {
    json!({ "adUserData": status.google(), "adPersonalization": status.google() })
}

/// The consent the job states: what every person in it agreed to, when they agree; none for removes
/// (Google needs none there) or when people differ (each operation carries its own).
pub fn job_consent(op: Op, people: &[&Person]) -> Option<ConsentStatus> {
    if op == Op::Remove {
        return None;
    }
    let first = people.first()?.consent;
    people.iter().all(|p| p.consent == first).then_some(first)
}

/// The `:create` body for a Customer Match job on `customers/{customer}/userLists/{list}`.
pub fn create_body(
    customer_id: &str,
    user_list_id: &str,
    job_consent: Option<ConsentStatus>,
    validate_only: bool,
) -> Value {
    let mut metadata = json!({
        "userList": format!("customers/{customer_id}/userLists/{user_list_id}"),
    });
    if let Some(c) = job_consent {
        metadata["consent"] = consent(c);
    }
    json!({
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": metadata,
        },
        "validateOnly": validate_only,
    })
}

/// A person's identifiers by Google's rules: `hashedEmail`, and `hashedPhoneNumber` (E.164 before
/// hashing) when the number has its country code. Empty when nothing can be matched.
pub fn identifiers(person: &Person) -> Vec<Value> {
    let mut ids = Vec::with_capacity(2);
    if let Some(e) = google_email(&person.email) {
        ids.push(json!({ "hashedEmail": sha256_hex(&e) }));
    }
    if let Some(p) = person.phone.as_deref().and_then(google_phone) {
        ids.push(json!({ "hashedPhoneNumber": sha256_hex(&p) }));
    }
    ids
}

/// One operation: `create` (with the person's consent) or `remove`.
pub fn operation(op: Op, person: &Person) -> Option<Value> {
    let ids = identifiers(person);
    if ids.is_empty() {
        return None;
    }
    Some(match op {
        Op::Add => {
            json!({ "create": { "userIdentifiers": ids, "consent": consent(person.consent) } })
        }
        Op::Remove => json!({ "remove": { "userIdentifiers": ids } }),
    })
}

/// The `addOperations` body, with partial failure on.
pub fn add_operations_body(operations: Vec<Value>, validate_only: bool) -> Value {
    json!({
        "enablePartialFailure": true,
        "enableWarnings": false,
        "operations": operations,
        "validateOnly": validate_only,
    })
}

/// The `:run` body.
pub fn run_body(validate_only: bool) -> Value {
    json!({ "validateOnly": validate_only })
}

/// The GAQL query that reads one job's status.
pub fn status_body(job: &str) -> Value {
    let job = job.replace('\'', "");
    json!({
        "query": format!(
            "SELECT offline_user_data_job.resource_name, offline_user_data_job.status, offline_user_data_job.failure_reason FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '{job}'"
        )
    })
}

/// The job's resource name from the `:create` answer.
pub fn parse_job(body: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    v.get("resourceName")
        .and_then(Value::as_str)
        .filter(|s| s.contains("/offlineUserDataJobs/"))
        .map(str::to_string)
        .ok_or_else(|| "no offlineUserDataJobs resourceName in the response".to_string())
}

/// The operations `partialFailureError` refused: `(index in the request, reason)`.
pub fn parse_partial_failure(body: &str) -> Vec<(usize, String)> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let Some(err) = v.get("partialFailureError").filter(|e| !e.is_null()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for detail in err
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for e in detail
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = e
                .pointer("/location/fieldPathElements")
                .and_then(Value::as_array)
                .and_then(|path| {
                    path.iter()
                        .find(|p| p.get("fieldName").and_then(Value::as_str) == Some("operations"))
                })
                .and_then(|p| p.get("index"))
                .and_then(|i| {
                    i.as_u64()
                        .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                });
            let code = e
                .get("errorCode")
                .and_then(Value::as_object)
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            if let Some(i) = index.and_then(|i| usize::try_from(i).ok()) {
                out.push((i, format!("{code}: {message}")));
            }
        }
    }
    out
}

/// The job's status from the search answer.
pub fn parse_status(body: &str) -> Result<JobStatus, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let job = v
        .pointer("/results/0/offlineUserDataJob")
        .ok_or("the job was not found")?;
    let status = job.get("status").and_then(Value::as_str).unwrap_or("");
    Ok(match status {
        "SUCCESS" => JobStatus::Succeeded,
        "FAILED" => JobStatus::Failed(
            job.get("failureReason")
                .and_then(Value::as_str)
                .unwrap_or("UNSPECIFIED")
                .to_string(),
        ),
        _ => JobStatus::Running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(consent: ConsentStatus) -> Person {
        Person {
            profile_key: "k".into(),
            email: "John.Smith@gmail.com".into(),
            phone: Some("+1 650 555 1212".into()),
            first_name: None,
            last_name: None,
            country: None,
            consent,
        }
    }

    #[test]
    fn an_add_operation_hashes_googles_forms_and_carries_the_persons_consent() {
        let op = operation(Op::Add, &person(ConsentStatus::Granted)).unwrap();
        assert_eq!(
            op,
            json!({"create": {
                "userIdentifiers": [
                    {"hashedEmail": "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586"},
                    {"hashedPhoneNumber": "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"}
                ],
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
            }})
        );
        let op = operation(Op::Remove, &person(ConsentStatus::Denied)).unwrap();
        assert!(op["remove"]["consent"].is_null());
    }

    #[test]
    fn the_job_states_consent_only_when_everyone_in_it_agrees() {
        let (a, b) = (
            person(ConsentStatus::Granted),
            person(ConsentStatus::Granted),
        );
        assert_eq!(
            job_consent(Op::Add, &[&a, &b]),
            Some(ConsentStatus::Granted)
        );
        let c = person(ConsentStatus::Unspecified);
        assert_eq!(job_consent(Op::Add, &[&a, &c]), None);
        assert_eq!(job_consent(Op::Remove, &[&a]), None);
        let body = create_body("123", "456", Some(ConsentStatus::Granted), true);
        assert_eq!(
            body,
            json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {
                "userList": "customers/123/userLists/456",
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}},
                "validateOnly": true})
        );
    }

    #[test]
    fn partial_failures_are_mapped_to_their_operation_index() {
        let body = json!({"partialFailureError": {"code": 3, "message": "x", "details": [{
            "@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
            "errors": [{"errorCode": {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                "message": "bad hash",
                "location": {"fieldPathElements": [{"fieldName": "operations", "index": 1}, {"fieldName": "create"}]}}]}]}});
        assert_eq!(
            parse_partial_failure(&body.to_string()),
            vec![(1, "INVALID_SHA256_FORMAT: bad hash".to_string())]
        );
        assert!(parse_partial_failure("{}").is_empty());
    }

    #[test]
    fn job_names_and_statuses_are_read() {
        assert_eq!(
            parse_job(r#"{"resourceName":"customers/1/offlineUserDataJobs/9"}"#).unwrap(),
            "customers/1/offlineUserDataJobs/9"
        );
        assert!(parse_job("{}").is_err());
        let failed = r#"{"results":[{"offlineUserDataJob":{"status":"FAILED","failureReason":"INSUFFICIENT_MATCHED_TRANSACTIONS"}}]}"#;
        assert_eq!(
            parse_status(failed).unwrap(),
            JobStatus::Failed("INSUFFICIENT_MATCHED_TRANSACTIONS".into())
        );
        assert_eq!(
            parse_status(r#"{"results":[{"offlineUserDataJob":{"status":"RUNNING"}}]}"#).unwrap(),
            JobStatus::Running
        );
    }
}
