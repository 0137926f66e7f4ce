//! Sends Mailchimp calls: HTTP Basic auth with the API key, Mailchimp's error titles classified.

use crate::connector::{Outcome, Reply, Secret};
use crate::email::Call;

use super::request::{FORGOTTEN, MEMBER_EXISTS, problem_title};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "mailchimp";

/// Adds the credentials: HTTP Basic with any user name and the key as the password.
pub fn authorize(builder: reqwest::RequestBuilder, key: &Secret) -> reqwest::RequestBuilder {
    builder.basic_auth("fluxo", Some(key.expose()))
}

/// Sorts a Mailchimp reply.
///
/// - 2xx: done.
/// - 404 on an unsubscribe or a delete: the person is not a member of that audience; nothing to do.
/// - 400 `Member Exists`: the member is there already (done).
/// - 400 `Forgotten Email Not Subscribed`: the address was permanently deleted and only the person may
///   re-subscribe (through a Mailchimp form): permanent, with that reason.
/// - 429 (over the 10 connections) and 5xx: retryable with backoff (Mailchimp sends no `Retry-After`).
/// - any other 4xx: permanent, with Mailchimp's `title` and `detail`.
pub fn classify(call: &Call, reply: &Reply) -> Outcome<Option<String>> {
    if (200..300).contains(&reply.status) {
        return Outcome::Success(None);
    }
    let title = problem_title(&reply.body);
    if reply.status == 404
        && matches!(
            call.purpose,
            "unsubscribe member" | "delete member permanently"
        )
    {
        return Outcome::Success(Some(format!("{}: not a member", call.purpose)));
    }
    if reply.status == 400 {
        match title.as_deref() {
            Some(MEMBER_EXISTS) => return Outcome::Success(Some("member exists".into())),
            Some(FORGOTTEN) => {
                return Outcome::Permanent {
                    reason: format!(
                        "{}: the address was permanently deleted; only the person can re-subscribe, through a Mailchimp form",
                        reply.summary()
                    ),
                };
            }
            _ => {}
        }
    }
    reply.failure_outcome()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Call;

    fn call(purpose: &'static str) -> Call {
        Call::json("PUT", "u".into(), serde_json::json!({}), purpose)
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
        }
    }

    #[test]
    fn member_exists_is_done_and_a_forgotten_email_is_permanent() {
        let exists =
            r#"{"title":"Member Exists","status":400,"detail":"x is already a list member."}"#;
        assert!(matches!(
            classify(&call("upsert member"), &reply(400, exists)),
            Outcome::Success(Some(_))
        ));
        let forgotten = r#"{"title":"Forgotten Email Not Subscribed","status":400,"detail":"d"}"#;
        match classify(&call("upsert member"), &reply(400, forgotten)) {
            Outcome::Permanent { reason } => assert!(reason.contains("re-subscribe"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_many_connections_is_retryable_and_not_a_member_is_fine_for_an_unsubscribe() {
        assert!(matches!(
            classify(
                &call("upsert member"),
                &reply(429, r#"{"title":"Too Many Requests"}"#)
            ),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(&call("unsubscribe member"), &reply(404, "{}")),
            Outcome::Success(Some(_))
        ));
        assert!(matches!(
            classify(&call("upsert member"), &reply(404, "{}")),
            Outcome::Permanent { .. }
        ));
    }
}
