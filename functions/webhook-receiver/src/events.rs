//! `POST /events`: e-commerce events (product views, completed orders) validated, stored and queued for
//! email-trigger the same way leads are (store -> queue -> mark queued; the sweep queues what a request
//! could not). No HTTP here: `web.rs` turns requests into [`Inbound`] and [`EventAnswer`]s into responses.

use chrono::{DateTime, Duration, Utc};
use fluxo::domain::intake::FieldProblem;
use fluxo::domain::{Email, LeadId};
use fluxo::email::Product;
use fluxo::email::messages::{CommerceEvent, EVENT_NAMES, ORDER_COMPLETED, PRODUCT_VIEWED};
use fluxo::idempotency::key_of;
use fluxo::observability;
use fluxo::ports::{
    Clock, EventCreated, EventRecord, EventStore, ExistingEvent, IntakeStatus, IntakeStore,
    LeadQueue, MessageQueue, OutboundMessage, PendingIntake, QueueError, Randomness, StoreError,
};
use fluxo::sources::ports::{NoticeInbox, ReplayGuard};
use http::StatusCode;
use serde_json::{Map, Value};

use crate::body::{self, BodyError, Kind};
use crate::intake::{Answer, FUNCTION, Inbound, NAMESPACE, Receiver};

/// Most products one `order_completed` event may carry.
pub const MAX_PRODUCTS: usize = 50;
/// Longest product id, customer id or client event id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest product name or category, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest product or image URL, in bytes once parsed.
pub const MAX_URL_LEN: usize = 2048;
/// How far in the future `occurred_at` may be (clock skew between the shop and AWS).
pub const FUTURE_TOLERANCE_SECS: i64 = 5 * 60;
/// How old an event may be: older views say nothing about what the person wants now.
pub const MAX_AGE_DAYS: i64 = 7;
/// Most unqueued events one sweep re-queues; the next sweep takes the rest, oldest first.
const SWEEP_BATCH: usize = 100;
/// SQS's limit on one message, less room for attributes.
const SQS_MESSAGE_LIMIT: usize = 256 * 1024 - 4 * 1024;

/// The fields an event body may carry; anything else is refused by name.
const EVENT_FIELDS: [&str; 7] = [
    "event",
    "email",
    "customer_id",
    "event_id",
    "occurred_at",
    "product",
    "products",
];
/// The fields a product may carry.
const PRODUCT_FIELDS: [&str; 7] = [
    "id",
    "name",
    "url",
    "image_url",
    "price",
    "currency",
    "category",
];

/// The store and the email queue the events go to. `NoEvents` for both when none is wired (unit tests
/// of the lead intake): every event is then answered `503`, nothing stored.
pub struct EventPorts<St, Mq> {
    pub(crate) store: St,
    pub(crate) queue: Mq,
}

/// No event store or queue wired: creating fails (nothing is stored), the sweep finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventStore for NoEvents {
    async fn create(&self, _: &EventRecord, _: DateTime<Utc>) -> Result<EventCreated, StoreError> {
        Err(StoreError::Rejected("no event store is wired".into()))
    }
    async fn load(&self, _: &str) -> Result<Option<ExistingEvent>, StoreError> {
        Ok(None)
    }
    async fn unqueued(&self, _: usize) -> Result<Vec<PendingIntake>, StoreError> {
        Ok(Vec::new())
    }
    async fn claim(&self, _: &str, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn mark_queued(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn release_claim(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MessageQueue for NoEvents {
    async fn send_batch(&self, _: &[OutboundMessage]) -> Result<Vec<String>, QueueError> {
        Err(QueueError::Rejected("no email queue is wired".into()))
    }
}

/// A valid event, before it gets its intake id.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// [`PRODUCT_VIEWED`] or [`ORDER_COMPLETED`].
    pub kind: &'static str,
    pub email: Option<Email>,
    pub customer_id: Option<String>,
    /// The client's own id for the event, if it sent one: it names the event for idempotency.
    pub client_event_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub products: Vec<Product>,
}

impl ValidEvent {
    /// The hash of what the client sent (its `occurred_at` as sent, not the default), so that a key
    /// reused for other content is told apart from a retry.
    fn content_hash(&self) -> String {
        let canonical = serde_json::json!({
            "kind": self.kind,
            "email": self.email,
            "customer_id": self.customer_id,
            "event_id": self.client_event_id,
            "occurred_at": self.occurred_at.map(|t| t.timestamp_millis()),
            "products": self.products,
        });
        key_of("fluxo.event.content.v1", &[&canonical.to_string()])
    }
}

/// How an event request ended, before it becomes a response.
#[derive(Debug)]
pub(crate) enum EventAnswer {
    Accepted {
        event_id: String,
        replayed: bool,
    },
    /// A `4xx` or the `503` of [`Answer`].
    Refused(Answer),
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A field name fit to be named in an answer: short and plain. Others are named `(unknown field)`, so
/// the answer never carries arbitrary input.
fn nameable(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn unknown_fields(map: &Map<String, Value>, known: &[&str], at: &str, out: &mut Vec<FieldProblem>) {
    for name in map.keys().filter(|k| !known.contains(&k.as_str())) {
        let field = if nameable(name) {
            format!("{at}{name}")
        } else {
            format!("{at}(unknown field)")
        };
        out.push(problem(field, "is not a known field"));
    }
}

/// Text with no control characters, trimmed, `1..=max` characters. `null` and absent are `None`.
fn text(
    map: &Map<String, Value>,
    name: &str,
    at: &str,
    max: usize,
    out: &mut Vec<FieldProblem>,
) -> Option<String> {
    let field = || format!("{at}{name}");
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                out.push(problem(field(), "must not be empty"));
                None
            } else if t.chars().count() > max {
                out.push(problem(field(), format!("is longer than {max} characters")));
                None
            } else if t.chars().any(char::is_control) {
                out.push(problem(field(), "must not contain control characters"));
                None
            } else {
                Some(t.to_string())
            }
        }
        Some(_) => {
            out.push(problem(field(), "must be a string"));
            None
        }
    }
}

/// An absolute http(s) URL with a host, at most [`MAX_URL_LEN`] bytes, as the `url` crate serializes it.
fn web_url(
    map: &Map<String, Value>,
    name: &str,
    at: &str,
    out: &mut Vec<FieldProblem>,
) -> Option<String> {
    let raw = text(map, name, at, MAX_URL_LEN, out)?;
    let parsed = url::Url::parse(&raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    match parsed {
        Some(u) if u.as_str().len() <= MAX_URL_LEN => Some(u.into()),
        Some(_) => {
            out.push(problem(
                format!("{at}{name}"),
                format!("is longer than {MAX_URL_LEN} characters"),
            ));
            None
        }
        None => {
            out.push(problem(
                format!("{at}{name}"),
                "must be an absolute http or https URL",
            ));
            None
        }
    }
}

/// One product: `id` and `name` required, the rest optional and checked.
fn product(value: &Value, at: &str, out: &mut Vec<FieldProblem>) -> Option<Product> {
    let Value::Object(map) = value else {
        out.push(problem(at.trim_end_matches('.'), "must be an object"));
        return None;
    };
    let before = out.len();
    unknown_fields(map, &PRODUCT_FIELDS, at, out);
    let id = text(map, "id", at, MAX_ID_CHARS, out);
    if !who_sent_field(map, "id") {
        out.push(problem(format!("{at}id"), "is required"));
    }
    let name = text(map, "name", at, MAX_NAME_CHARS, out);
    if !who_sent_field(map, "name") {
        out.push(problem(format!("{at}name"), "is required"));
    }
    let url = web_url(map, "url", at, out);
    let image_url = web_url(map, "image_url", at, out);
    let price = match map.get("price") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(p) if p.is_finite() && p >= 0.0 => Some(p),
            _ => {
                out.push(problem(
                    format!("{at}price"),
                    "must be a number of at least 0",
                ));
                None
            }
        },
        Some(_) => {
            out.push(problem(format!("{at}price"), "must be a number"));
            None
        }
    };
    let currency = text(map, "currency", at, 3, out);
    if let Some(c) = &currency
        && !(c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()))
    {
        out.push(problem(
            format!("{at}currency"),
            "must be an ISO 4217 code: 3 uppercase letters, such as BRL",
        ));
    }
    let category = text(map, "category", at, MAX_NAME_CHARS, out);
    if out.len() > before {
        return None;
    }
    Some(Product {
        id: id?,
        name: name?,
        url,
        image_url,
        price,
        currency,
        category,
    })
}

/// Validates an event body (already parsed as JSON) received at `now`: every problem, by field.
pub fn validate(value: &Value, now: DateTime<Utc>) -> Result<ValidEvent, Vec<FieldProblem>> {
    let Value::Object(map) = value else {
        return Err(vec![problem("(body)", "must be a JSON object")]);
    };
    let mut out = Vec::new();
    unknown_fields(map, &EVENT_FIELDS, "", &mut out);

    let names = EVENT_NAMES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    let kind = match map.get("event") {
        Some(Value::String(name)) => {
            let found = EVENT_NAMES
                .iter()
                .find(|(n, _)| *n == name.trim())
                .map(|(_, kind)| *kind);
            if found.is_none() {
                out.push(problem("event", format!("must be one of {names}")));
            }
            found
        }
        None | Some(Value::Null) => {
            out.push(problem("event", format!("is required: one of {names}")));
            None
        }
        Some(_) => {
            out.push(problem("event", "must be a string"));
            None
        }
    };

    let email = text(map, "email", "", Email::MAX_LEN, &mut out).and_then(|raw| {
        Email::parse(&raw)
            .map_err(|e| out.push(problem("email", e.to_string())))
            .ok()
    });
    let customer_id = text(map, "customer_id", "", MAX_ID_CHARS, &mut out);
    if !who_sent_field(map, "email") && !who_sent_field(map, "customer_id") {
        out.push(problem(
            "email",
            "an email or a customer_id is required: who the event is about",
        ));
    }
    let client_event_id = text(map, "event_id", "", MAX_ID_CHARS, &mut out);

    let occurred_at = match map.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                if t > now + Duration::seconds(FUTURE_TOLERANCE_SECS) {
                    out.push(problem(
                        "occurred_at",
                        format!(
                            "is more than {} minutes in the future",
                            FUTURE_TOLERANCE_SECS / 60
                        ),
                    ));
                    None
                } else if t < now - Duration::days(MAX_AGE_DAYS) {
                    out.push(problem(
                        "occurred_at",
                        format!("is older than {MAX_AGE_DAYS} days"),
                    ));
                    None
                } else {
                    Some(t)
                }
            }
            Err(_) => {
                out.push(problem(
                    "occurred_at",
                    "must be an RFC 3339 date-time, such as 2026-11-28T10:00:00Z",
                ));
                None
            }
        },
        Some(_) => {
            out.push(problem("occurred_at", "must be a string"));
            None
        }
    };

    let products = match kind {
        Some(PRODUCT_VIEWED) => {
            if who_sent_field(map, "products") {
                out.push(problem(
                    "products",
                    "is for order_completed; product_viewed takes one product",
                ));
            }
            match map.get("product") {
                None | Some(Value::Null) => {
                    out.push(problem("product", "is required"));
                    Vec::new()
                }
                Some(p) => product(p, "product.", &mut out).into_iter().collect(),
            }
        }
        Some(ORDER_COMPLETED) => {
            if who_sent_field(map, "product") {
                out.push(problem(
                    "product",
                    "is for product_viewed; order_completed takes products",
                ));
            }
            match map.get("products") {
                None | Some(Value::Null) => {
                    out.push(problem("products", "is required"));
                    Vec::new()
                }
                Some(Value::Array(list)) if (1..=MAX_PRODUCTS).contains(&list.len()) => list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| product(p, &format!("products[{i}]."), &mut out))
                    .collect(),
                Some(Value::Array(_)) => {
                    out.push(problem(
                        "products",
                        format!("must list 1 to {MAX_PRODUCTS} products"),
                    ));
                    Vec::new()
                }
                Some(_) => {
                    out.push(problem("products", "must be a list of products"));
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };

    match kind {
        Some(kind) if out.is_empty() => Ok(ValidEvent {
            kind,
            email,
            customer_id,
            client_event_id,
            occurred_at,
            products,
        }),
        _ => Err(out),
    }
}

fn who_sent_field(map: &Map<String, Value>, name: &str) -> bool {
    !matches!(map.get(name), None | Some(Value::Null))
}

/// Reads an event body: JSON only (`415` otherwise), then every problem by field (`400`).
pub(crate) fn parse(
    content_type: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<ValidEvent, Answer> {
    match body::kind_of(content_type) {
        Ok(Kind::Json) => {}
        Ok(_) | Err(_) => {
            return Err(Answer::rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported Content-Type: send application/json",
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Answer::rejected(
            StatusCode::BAD_REQUEST,
            BodyError::Empty.to_string(),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let error = if e.classify() == serde_json::error::Category::Io {
            BodyError::InvalidUtf8
        } else {
            BodyError::MalformedJson {
                line: e.line(),
                column: e.column(),
            }
        };
        Answer::rejected(StatusCode::BAD_REQUEST, error.to_string())
    })?;
    validate(&value, now).map_err(|fields| Answer::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: "invalid event".into(),
        fields,
    })
}

/// The record key: the `Idempotency-Key` header, else the client's `event_id`, else the intake id
/// (a post of its own). Namespaced, so a header and an event id with the same text never meet.
fn event_key(
    header: Option<&str>,
    client_event_id: Option<&str>,
    event_id: &str,
) -> (String, bool) {
    match (header, client_event_id) {
        (Some(h), _) => (key_of("fluxo.event.header.v1", &[h.trim()]), true),
        (None, Some(id)) => (key_of("fluxo.event.client_id.v1", &[id]), true),
        (None, None) => (key_of("fluxo.event.own.v1", &[event_id]), false),
    }
}

impl<S, Q, C, R, P, ES, EQ> Receiver<S, Q, C, R, P, EventPorts<ES, EQ>>
where
    S: IntakeStore,
    Q: LeadQueue,
    P: ReplayGuard + NoticeInbox,
    C: Clock,
    R: Randomness,
    ES: EventStore,
    EQ: MessageQueue,
{
    /// `POST /events`: size, media type and validation, then store -> queue -> mark queued. A failure
    /// before the answer leaves nothing stored (`503`); a queue failure after storing is a `202`, and the
    /// sweep queues the event.
    pub(crate) async fn post_event(&self, inbound: &Inbound<'_>) -> EventAnswer {
        if inbound.body.len() > self.settings.max_body_bytes {
            return EventAnswer::Refused(self.too_large());
        }
        let received_at = self.clock.now();
        let event = match parse(inbound.content_type, inbound.body, received_at) {
            Ok(event) => event,
            Err(answer) => return EventAnswer::Refused(answer),
        };
        if inbound.idempotency_key.is_some_and(|k| k.len() > 255) {
            return EventAnswer::Refused(Answer::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "invalid Idempotency-Key".into(),
                fields: vec![problem("Idempotency-Key", "is longer than 255 characters")],
            });
        }
        // A ULID, as lead ids are: sortable by arrival, unique without coordination.
        let event_id = LeadId::new(received_at, self.random.random_u128())
            .as_str()
            .to_string();
        let (key, keyed) = event_key(
            inbound.idempotency_key,
            event.client_event_id.as_deref(),
            &event_id,
        );
        let content_hash = event.content_hash();
        let email_fp = event.email.as_ref().map(Email::fingerprint);
        let message = CommerceEvent {
            version: CommerceEvent::VERSION,
            kind: event.kind.to_string(),
            event_id: event_id.clone(),
            email: event.email,
            customer_id: event.customer_id,
            products: event.products,
            occurred_at: event.occurred_at.unwrap_or(received_at),
        };
        let span = tracing::info_span!("event", event_id = %event_id, kind = message.kind, email_fp = email_fp.as_deref().unwrap_or("-"));
        let _entered = span.enter();
        let message = match serde_json::to_string(&message) {
            Ok(json) if json.len() <= SQS_MESSAGE_LIMIT => json,
            _ => {
                return EventAnswer::Refused(Answer::rejected(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the event is too large to queue",
                ));
            }
        };
        let record = EventRecord {
            key: key.clone(),
            event_id: event_id.clone(),
            content_hash: content_hash.clone(),
            message,
            email_fp,
            received_at,
            expires_at: (received_at + Duration::days(i64::from(self.settings.raw_retention_days)))
                .timestamp(),
        };
        let claim_until =
            received_at + Duration::seconds(i64::from(self.settings.enqueue_claim_secs));
        match self.events.store.create(&record, claim_until).await {
            Ok(EventCreated::Created) => {
                self.enqueue_event(&key, &event_id, &record.message, false)
                    .await
            }
            Ok(EventCreated::Exists(existing)) => {
                if keyed && existing.content_hash != content_hash {
                    return EventAnswer::Refused(Answer::rejected(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the Idempotency-Key or event_id was already used for a different event",
                    ));
                }
                let replay = EventAnswer::Accepted {
                    event_id: existing.event_id.clone(),
                    replayed: true,
                };
                match existing.status {
                    IntakeStatus::Queued => {
                        observability::count(NAMESPACE, FUNCTION, "EventReplayed", 1);
                        replay
                    }
                    IntakeStatus::Stored => {
                        // Stored is durable: whoever holds the claim, or the sweep, queues it.
                        match self
                            .events
                            .store
                            .claim(&key, received_at, claim_until)
                            .await
                        {
                            Ok(true) => {
                                self.enqueue_event(
                                    &key,
                                    &existing.event_id,
                                    &existing.message,
                                    true,
                                )
                                .await
                            }
                            Ok(false) => replay,
                            Err(e) => {
                                tracing::warn!(error = %e, "claiming a stored event failed; the sweep queues it");
                                replay
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = fluxo::Retryable::is_retryable(&e), "storing the event failed; nothing was stored");
                EventAnswer::Refused(Answer::Unavailable)
            }
        }
    }

    /// Sends one stored message to the email queue. `Ok(())` when SQS took it.
    async fn send_event(&self, event_id: &str, message: &str) -> Result<(), QueueError> {
        let failed = self
            .events
            .queue
            .send_batch(&[OutboundMessage {
                id: "event".into(),
                body: message.to_string(),
            }])
            .await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(format!(
                "SQS did not take event {event_id}"
            )))
        }
    }

    /// Queues a stored event and marks it queued; on a queue failure the claim is dropped and the answer
    /// is still `202` (the event is durable, and the sweep queues it).
    async fn enqueue_event(
        &self,
        key: &str,
        event_id: &str,
        message: &str,
        replayed: bool,
    ) -> EventAnswer {
        let accepted = EventAnswer::Accepted {
            event_id: event_id.to_string(),
            replayed,
        };
        if let Err(e) = self.send_event(event_id, message).await {
            observability::count(NAMESPACE, FUNCTION, "QueueSendFailed", 1);
            tracing::error!(error = %e, "queueing the event failed; the sweep queues the stored event");
            if let Err(e) = self.events.store.release_claim(key).await {
                tracing::warn!(error = %e, "releasing the enqueue claim failed; it expires on its own");
            }
            return accepted;
        }
        if let Err(e) = self.events.store.mark_queued(key).await {
            // Queued; a later replay may queue it again, and email-trigger counts an event id once.
            tracing::warn!(error = %e, "marking the event as queued failed");
        }
        observability::count(NAMESPACE, FUNCTION, "EventAccepted", 1);
        tracing::info!(replayed, "event stored and queued");
        accepted
    }

    /// Queues every stored event its request could not queue: `(found, queued, overdue)`, where overdue
    /// counts those still waiting that were received at or before `overdue_since`.
    pub(crate) async fn sweep_events(
        &self,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        overdue_since: DateTime<Utc>,
    ) -> Result<(usize, usize, usize), StoreError> {
        let store = &self.events.store;
        let pending = store.unqueued(SWEEP_BATCH).await?;
        let found = pending.len();
        let mut queued = 0;
        for event in &pending {
            match self.requeue_event(&event.key, now, claim_until).await {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "re-queueing a stored event failed"),
            }
        }
        let overdue = if found > queued {
            store
                .unqueued(SWEEP_BATCH)
                .await?
                .iter()
                .filter(|e| e.received_at <= overdue_since)
                .count()
        } else {
            0
        };
        Ok((found, queued, overdue))
    }

    /// Queues one stored event if nobody else holds its claim. `Ok(true)` when it is on the queue.
    async fn requeue_event(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let store = &self.events.store;
        if !store.claim(key, now, claim_until).await? {
            return Ok(false);
        }
        let Some(existing) = store.load(key).await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("event", event_id = %existing.event_id);
        let _entered = span.enter();
        if let Err(e) = self.send_event(&existing.event_id, &existing.message).await {
            observability::count(NAMESPACE, FUNCTION, "QueueSendFailed", 1);
            tracing::error!(error = %e, "queueing a stored event failed; the next sweep retries");
            if let Err(e) = store.release_claim(key).await {
                tracing::warn!(error = %e, "releasing the enqueue claim failed; it expires on its own");
            }
            return Ok(false);
        }
        if let Err(e) = store.mark_queued(key).await {
            tracing::warn!(error = %e, "marking the event as queued failed; it may be queued again, and email-trigger counts an event id once");
        }
        tracing::info!("stored event queued by the sweep");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn view() -> Value {
        json!({
            "event": "product_viewed",
            "email": " Ana@Example.com ",
            "customer_id": "c-1",
            "event_id": "shop-123",
            "occurred_at": "2026-11-28T11:59:00-00:00",
            "product": {"id": "sku-1", "name": "Tênis", "url": "https://loja.example/p/sku-1",
                        "image_url": "https://loja.example/i/sku-1.jpg", "price": 199.9,
                        "currency": "BRL", "category": "tenis"}
        })
    }

    fn problems(value: &Value) -> Vec<(String, String)> {
        validate(value, now())
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field, p.problem))
            .collect()
    }

    fn fields(value: &Value) -> Vec<String> {
        problems(value).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_product_view_with_every_field_is_valid_and_normalized() {
        let event = validate(&view(), now()).unwrap();
        assert_eq!(event.kind, PRODUCT_VIEWED);
        assert_eq!(event.email.unwrap().as_str(), "ana@example.com");
        assert_eq!(event.customer_id.as_deref(), Some("c-1"));
        assert_eq!(event.client_event_id.as_deref(), Some("shop-123"));
        assert_eq!(event.occurred_at, Some(now() - Duration::seconds(60)));
        assert_eq!(event.products.len(), 1);
        let p = &event.products[0];
        assert_eq!((p.id.as_str(), p.name.as_str()), ("sku-1", "Tênis"));
        assert_eq!(p.price, Some(199.9));
        assert_eq!(p.currency.as_deref(), Some("BRL"));
    }

    #[test]
    fn a_customer_id_alone_names_the_person() {
        let mut v = view();
        v.as_object_mut().unwrap().remove("email");
        assert!(validate(&v, now()).unwrap().email.is_none());
    }

    #[test]
    fn an_event_about_nobody_is_refused() {
        let v = json!({"event": "product_viewed", "product": {"id": "a", "name": "A"}});
        assert_eq!(fields(&v), ["email"]);
        let v = json!({"event": "product_viewed", "email": null, "customer_id": null,
                       "product": {"id": "a", "name": "A"}});
        assert_eq!(fields(&v), ["email"]);
    }

    #[test]
    fn an_unknown_event_name_or_a_missing_one_is_named() {
        let mut v = view();
        v["event"] = json!("page_viewed");
        assert_eq!(
            problems(&v),
            [(
                "event".to_string(),
                "must be one of product_viewed, order_completed".to_string()
            )]
        );
        v.as_object_mut().unwrap().remove("event");
        assert_eq!(fields(&v), ["event"]);
        v["event"] = json!(3);
        assert_eq!(fields(&v), ["event"]);
    }

    #[test]
    fn a_bad_email_is_named_without_echoing_it() {
        let mut v = view();
        v["email"] = json!("<script>@x");
        let p = problems(&v);
        assert_eq!(
            p,
            [(
                "email".to_string(),
                "is not a valid email address".to_string()
            )]
        );
    }

    #[test]
    fn a_customer_id_and_event_id_are_bounded_and_printable() {
        let mut v = view();
        v["customer_id"] = json!("x".repeat(129));
        v["event_id"] = json!("a\u{0007}b");
        assert_eq!(fields(&v), ["customer_id", "event_id"]);
        v["customer_id"] = json!("x".repeat(128));
        v["event_id"] = json!("   ");
        assert_eq!(fields(&v), ["event_id"]);
    }

    #[test]
    fn each_bad_product_field_is_named_by_its_path() {
        let mut v = view();
        v["product"] = json!({"id": "", "url": "javascript:alert(1)", "image_url": "/relative.jpg",
                              "price": -1, "currency": "brl", "category": 5, "color": "red"});
        let mut got = fields(&v);
        got.sort();
        assert_eq!(
            got,
            [
                "product.category",
                "product.color",
                "product.currency",
                "product.id",
                "product.image_url",
                "product.name",
                "product.price",
                "product.url",
            ]
        );
    }

    #[test]
    fn urls_are_absolute_http_and_bounded() {
        let mut v = view();
        v["product"]["url"] = json!(format!("https://loja.example/{}", "a".repeat(2040)));
        v["product"]["image_url"] = json!("ftp://loja.example/a.jpg");
        assert_eq!(fields(&v), ["product.url", "product.image_url"]);
        v["product"]["url"] = json!("HTTPS://Loja.Example/p/1");
        v["product"]["image_url"] = json!(null);
        let event = validate(&v, now()).unwrap();
        assert_eq!(
            event.products[0].url.as_deref(),
            Some("https://loja.example/p/1")
        );
        assert!(event.products[0].image_url.is_none());
    }

    #[test]
    fn a_price_is_a_number_of_at_least_zero() {
        let mut v = view();
        v["product"]["price"] = json!("199.90");
        assert_eq!(fields(&v), ["product.price"]);
        v["product"]["price"] = json!(0);
        assert_eq!(validate(&v, now()).unwrap().products[0].price, Some(0.0));
    }

    #[test]
    fn unknown_fields_are_refused_by_name_and_odd_names_are_not_echoed() {
        let mut v = view();
        v["emial"] = json!("ana@example.com");
        v["<img src=x onerror=alert(1)>"] = json!(1);
        let mut got = fields(&v);
        got.sort();
        assert_eq!(got, ["(unknown field)", "emial"]);
    }

    #[test]
    fn occurred_at_must_be_recent_rfc3339() {
        let mut v = view();
        v["occurred_at"] = json!("2026-11-28T12:06:00Z");
        assert_eq!(
            problems(&v),
            [(
                "occurred_at".to_string(),
                "is more than 5 minutes in the future".to_string()
            )]
        );
        v["occurred_at"] = json!("2026-11-28T12:04:00Z");
        assert!(validate(&v, now()).is_ok());
        v["occurred_at"] = json!("2026-11-21T11:59:00Z");
        assert_eq!(fields(&v), ["occurred_at"]);
        v["occurred_at"] = json!("28/11/2026");
        assert_eq!(fields(&v), ["occurred_at"]);
        v.as_object_mut().unwrap().remove("occurred_at");
        assert_eq!(validate(&v, now()).unwrap().occurred_at, None);
    }

    #[test]
    fn an_order_takes_one_to_fifty_products_each_checked() {
        let item = |i: usize| json!({"id": format!("sku-{i}"), "name": format!("P {i}")});
        let order = |n: usize| {
            json!({"event": "order_completed", "email": "ana@example.com",
                   "products": (0..n).map(item).collect::<Vec<_>>()})
        };
        let event = validate(&order(50), now()).unwrap();
        assert_eq!((event.kind, event.products.len()), (ORDER_COMPLETED, 50));
        assert_eq!(fields(&order(51)), ["products"]);
        assert_eq!(fields(&order(0)), ["products"]);
        let mut bad = order(3);
        bad["products"][2]["price"] = json!(-5);
        bad["products"][1] = json!("sku-1");
        assert_eq!(fields(&bad), ["products[1]", "products[2].price"]);
    }

    #[test]
    fn a_view_takes_product_and_an_order_takes_products() {
        let v = json!({"event": "product_viewed", "email": "ana@example.com",
                       "products": [{"id": "a", "name": "A"}]});
        assert_eq!(fields(&v), ["products", "product"]);
        let o = json!({"event": "order_completed", "email": "ana@example.com",
                       "product": {"id": "a", "name": "A"}});
        assert_eq!(fields(&o), ["product", "products"]);
    }

    #[test]
    fn only_json_is_read() {
        let err = parse(Some("application/x-www-form-urlencoded"), b"event=x", now()).unwrap_err();
        assert!(
            matches!(err, Answer::Rejected { status, .. } if status == StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        let err = parse(None, b"{}", now()).unwrap_err();
        assert!(
            matches!(err, Answer::Rejected { status, .. } if status == StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        let err = parse(Some("application/json"), b"{\"event\":", now()).unwrap_err();
        assert!(
            matches!(err, Answer::Rejected { status, .. } if status == StatusCode::BAD_REQUEST)
        );
        let err = parse(Some("application/json"), b"[1]", now()).unwrap_err();
        assert!(
            matches!(err, Answer::Rejected { status, ref fields, .. } if status == StatusCode::BAD_REQUEST && fields[0].field == "(body)")
        );
        let ok = parse(
            Some("application/json; charset=utf-8"),
            view().to_string().as_bytes(),
            now(),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn the_content_hash_ignores_whitespace_and_case_the_normalizer_removes_but_not_content() {
        let a = validate(&view(), now()).unwrap();
        let mut v = view();
        v["email"] = json!("ana@example.com");
        assert_eq!(
            a.content_hash(),
            validate(&v, now()).unwrap().content_hash()
        );
        v["product"]["price"] = json!(10);
        assert_ne!(
            a.content_hash(),
            validate(&v, now()).unwrap().content_hash()
        );
    }

    #[test]
    fn a_header_or_a_client_event_id_names_the_event_and_nothing_else_does() {
        let (by_header, keyed) = event_key(Some(" k-1 "), Some("shop-1"), "01J");
        assert!(keyed);
        assert_eq!(by_header, event_key(Some("k-1"), None, "01K").0);
        let (by_id, keyed) = event_key(None, Some("k-1"), "01J");
        assert!(keyed);
        assert_ne!(by_id, by_header);
        let (own, keyed) = event_key(None, None, "01J");
        assert!(!keyed);
        assert_ne!(own, event_key(None, None, "01K").0);
    }
}
