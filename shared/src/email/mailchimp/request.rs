//! Builds Mailchimp Marketing API calls and reads its `application/problem+json` errors: pure, no I/O.

use serde_json::{Map, Value, json};

use super::config::{JourneyStep, MailchimpSequence, NewStatus};
use crate::email::{Call, Contact, Job, Operation, Product, subscriber_hash};

/// `title` of the 400 Mailchimp answers when a member already exists (a create, not an upsert).
pub const MEMBER_EXISTS: &str = "Member Exists";
/// `title` of the 400 for an address that was permanently deleted: the API may not re-add it.
pub const FORGOTTEN: &str = "Forgotten Email Not Subscribed";

fn member_url(base: &str, list_id: &str, contact: &Contact) -> String {
    format!(
        "{base}/lists/{list_id}/members/{}",
        subscriber_hash(&contact.email)
    )
}

/// `PUT /lists/{list_id}/members/{subscriber_hash}`: the idempotent upsert, with `status_if_new` and the
/// FNAME/LNAME merge fields. A transactional sequence (`marketing = false`) creates a transactional
/// member; an existing member's status is left alone.
pub fn upsert(
    base: &str,
    list_id: &str,
    contact: &Contact,
    status: NewStatus,
    marketing: bool,
) -> Call {
    let mut merge = Map::new();
    if let Some(f) = &contact.first_name {
        merge.insert("FNAME".into(), Value::String(f.clone()));
    }
    if let Some(l) = &contact.last_name {
        merge.insert("LNAME".into(), Value::String(l.clone()));
    }
    let status_if_new = if marketing {
        status.as_str()
    } else {
        "transactional"
    };
    let mut body = json!({
        "email_address": contact.email.as_str(),
        "status_if_new": status_if_new,
    });
    if !merge.is_empty() {
        body["merge_fields"] = Value::Object(merge);
    }
    Call::json(
        "PUT",
        member_url(base, list_id, contact),
        body,
        "upsert member",
    )
}

/// `POST /lists/{list_id}/members/{hash}/tags`: activates the tags (unknown names are created).
pub fn tags(base: &str, list_id: &str, contact: &Contact, tags: &[String]) -> Call {
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| json!({"name": t, "status": "active"}))
        .collect();
    Call::json(
        "POST",
        format!("{}/tags", member_url(base, list_id, contact)),
        json!({ "tags": tags }),
        "apply tags",
    )
}

/// `POST /customer-journeys/journeys/{journey_id}/steps/{step_id}/actions/trigger`.
pub fn journey(base: &str, step: JourneyStep, contact: &Contact) -> Call {
    Call::json(
        "POST",
        format!(
            "{base}/customer-journeys/journeys/{}/steps/{}/actions/trigger",
            step.journey_id, step.step_id
        ),
        json!({ "email_address": contact.email.as_str() }),
        "trigger journey step",
    )
}

/// `PATCH /lists/{list_id}/members/{hash}` to `unsubscribed`. A 404 (not a member) is fine.
pub fn unsubscribe(base: &str, list_id: &str, contact: &Contact) -> Call {
    Call::json(
        "PATCH",
        member_url(base, list_id, contact),
        json!({ "status": "unsubscribed" }),
        "unsubscribe member",
    )
}

/// `POST /lists/{list_id}/members/{hash}/actions/delete-permanent`: GDPR erasure. A 404 is fine.
pub fn delete_permanent(base: &str, list_id: &str, contact: &Contact) -> Call {
    Call {
        method: "POST",
        url: format!(
            "{}/actions/delete-permanent",
            member_url(base, list_id, contact)
        ),
        headers: Vec::new(),
        body: None,
        purpose: "delete member permanently",
    }
}

/// `POST /lists/{list_id}/members/{hash}/events`: a member event whose properties carry the products
/// (flattened to strings: `product_1_name`, ...), most recent first.
pub fn event(
    base: &str,
    list_id: &str,
    contact: &Contact,
    name: &str,
    products: &[Product],
) -> Call {
    let mut properties = Map::new();
    properties.insert(
        "products_count".into(),
        Value::String(products.len().to_string()),
    );
    for (i, p) in products.iter().enumerate() {
        let n = i + 1;
        let mut put = |field: &str, value: Option<String>| {
            if let Some(v) = value {
                properties.insert(format!("product_{n}_{field}"), Value::String(v));
            }
        };
        put("id", Some(p.id.clone()));
        put("name", Some(p.name.clone()));
        put("url", p.url.clone());
        put("image_url", p.image_url.clone());
        put("price", p.price.map(|v| format!("{v:.2}")));
        put("currency", p.currency.clone());
        put("category", p.category.clone());
    }
    Call::json(
        "POST",
        format!("{}/events", member_url(base, list_id, contact)),
        json!({ "name": name, "properties": properties }),
        "member event",
    )
}

/// Where Mailchimp calls go: the base URL, the new-member status, every audience Fluxo uses (for
/// unsubscribes and erasures) and the audience of recommendation events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub base: String,
    pub status_if_new: NewStatus,
    pub lists: Vec<String>,
    pub events_list: Option<String>,
}

/// The calls of one job, in order. `sequence` is the sequence's Mailchimp action (enrollments only).
pub fn plan(
    target: &Target,
    job: &Job,
    sequence: Option<&MailchimpSequence>,
    marketing: bool,
) -> Result<Vec<Call>, String> {
    let base = target.base.as_str();
    let c = &job.contact;
    match &job.operation {
        Operation::Enroll { .. } => {
            let s = sequence.ok_or("the sequence has no Mailchimp action")?;
            let mut calls = vec![upsert(base, &s.list_id, c, target.status_if_new, marketing)];
            if !s.tags.is_empty() {
                calls.push(tags(base, &s.list_id, c, &s.tags));
            }
            // Last: a journey trigger is not idempotent, so nothing after it may fail and repeat it.
            if let Some(step) = s.journey {
                calls.push(journey(base, step, c));
            }
            Ok(calls)
        }
        Operation::Unsubscribe { .. } => Ok(target
            .lists
            .iter()
            .map(|l| unsubscribe(base, l, c))
            .collect()),
        Operation::Erase => Ok(target
            .lists
            .iter()
            .map(|l| delete_permanent(base, l, c))
            .collect()),
        Operation::Recommend {
            event_name,
            products,
            ..
        } => {
            let list = target
                .events_list
                .as_deref()
                .ok_or("email_trigger.mailchimp.list_id is not set")?;
            Ok(vec![event(base, list, c, event_name, products)])
        }
    }
}

/// The `title` of a problem+json error body.
pub fn problem_title(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("title").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn ana() -> Contact {
        Contact {
            email: Email::parse("Ana.Silva@exemplo.com").unwrap(),
            first_name: Some("Ana".into()),
            last_name: Some("Silva".into()),
        }
    }

    #[test]
    fn the_upsert_is_a_put_by_subscriber_hash_with_status_if_new_and_merge_fields() {
        let call = upsert(
            "https://us21.api.mailchimp.com/3.0",
            "a1b2",
            &ana(),
            NewStatus::Pending,
            true,
        );
        assert_eq!(call.method, "PUT");
        assert_eq!(
            call.url,
            format!(
                "https://us21.api.mailchimp.com/3.0/lists/a1b2/members/{}",
                subscriber_hash(&ana().email)
            )
        );
        assert_eq!(
            call.body.unwrap(),
            json!({"email_address": "ana.silva@exemplo.com", "status_if_new": "pending",
                   "merge_fields": {"FNAME": "Ana", "LNAME": "Silva"}})
        );
    }

    #[test]
    fn a_transactional_sequence_creates_a_transactional_member() {
        let call = upsert("b", "l", &ana(), NewStatus::Subscribed, false);
        assert_eq!(call.body.unwrap()["status_if_new"], "transactional");
    }

    #[test]
    fn tags_journeys_and_events_have_the_documented_shapes() {
        let t = tags("b", "l", &ana(), &["software_a".into()]);
        assert!(t.url.ends_with("/tags"));
        assert_eq!(
            t.body.unwrap(),
            json!({"tags": [{"name": "software_a", "status": "active"}]})
        );
        let j = journey(
            "b",
            JourneyStep {
                journey_id: 12,
                step_id: 34,
            },
            &ana(),
        );
        assert_eq!(
            j.url,
            "b/customer-journeys/journeys/12/steps/34/actions/trigger"
        );
        assert_eq!(
            j.body.unwrap(),
            json!({"email_address": "ana.silva@exemplo.com"})
        );
        let p = Product {
            id: "sku-1".into(),
            name: "Tênis".into(),
            url: Some("https://loja.example/p/1".into()),
            image_url: None,
            price: Some(199.9),
            currency: Some("BRL".into()),
            category: None,
        };
        let e = event("b", "l", &ana(), "product_recommendation", &[p]);
        let body = e.body.unwrap();
        assert_eq!(body["name"], "product_recommendation");
        assert_eq!(body["properties"]["product_1_name"], "Tênis");
        assert_eq!(body["properties"]["product_1_price"], "199.90");
        assert!(
            body["properties"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string)
        );
    }

    #[test]
    fn problem_titles_are_read() {
        assert_eq!(
            problem_title(r#"{"type":"x","title":"Member Exists","status":400,"detail":"d"}"#)
                .as_deref(),
            Some(MEMBER_EXISTS)
        );
        assert_eq!(problem_title("not json"), None);
    }
}
