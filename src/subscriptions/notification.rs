//! Notification Bundles as the Backport IG shapes them for R4: a `history` Bundle whose first
//! entry is the SubscriptionStatus `Parameters` (subscription, topic, status, type, the event
//! count, one `notification-event` per event), then what the payload allows of each focus.

use super::registry::Event;
use super::subscription::Payload;
use crate::fhir::resource::instant;
use serde_json::{Value, json};

pub const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";

/// The identifier system a notification's status names a route target (sync out) under.
pub const TARGET_SYSTEM: &str = "http://emrsync.org/fhir/route-target";

/// What a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

/// The subscription a status speaks for.
pub struct About<'a> {
    pub base: &'a str,
    pub id: &'a str,
    pub topic: &'a str,
    pub status: &'a str,
    pub events_since_start: i64,
    pub error: Option<&'a str>,
    /// `id` names a route target (sync out), not a Subscription resource of this server.
    pub target: bool,
}

impl About<'_> {
    /// The status's `subscription`: this server's Subscription, or the route target by name.
    fn subscription(&self) -> Value {
        match self.target {
            false => json!({"reference": format!("{}/Subscription/{}", self.base, self.id)}),
            true => json!({
                "identifier": {"system": TARGET_SYSTEM, "value": self.id},
                "display": format!("route target {}", self.id)
            }),
        }
    }

    /// The URL the status entry stands for.
    fn status_url(&self) -> String {
        match self.target {
            false => format!("{}/Subscription/{}/$status", self.base, self.id),
            true => format!("{}?value={}", TARGET_SYSTEM, self.id),
        }
    }
}

/// One event as a notification carries it: the event, how much of it may be shown, and the
/// focus and context resources when the payload is full.
pub struct Shown<'a> {
    pub event: &'a Event,
    pub payload: Payload,
    pub focus: Option<Value>,
    pub context: Vec<Value>,
}

/// The SubscriptionStatus `Parameters`.
pub fn status(about: &About, kind: Kind, shown: &[Shown]) -> Value {
    let mut parameter = vec![
        json!({"name": "subscription", "valueReference": about.subscription()}),
        json!({"name": "topic", "valueCanonical": about.topic}),
        json!({"name": "status", "valueCode": about.status}),
        json!({"name": "type", "valueCode": kind.code()}),
        // R4 has no integer64: the IG carries event numbers as strings
        json!({"name": "events-since-subscription-start", "valueString": about.events_since_start.to_string()}),
    ];
    for s in shown {
        let e = s.event;
        let mut part = vec![
            json!({"name": "event-number", "valueString": e.event_number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(e.occurred_at)}),
        ];
        if s.payload != Payload::Empty {
            part.push(json!({"name": "focus", "valueReference": {"reference": format!("{}/{}/{}", about.base, e.resource_type, e.resource_id)}}));
            for c in &s.context {
                part.push(json!({"name": "additional-context", "valueReference": {"reference": format!(
                    "{}/{}/{}", about.base, c["resourceType"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or(""))}}));
            }
        }
        parameter.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = about.error {
        parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameter
    })
}

/// A notification Bundle (`history`): the status, then each shown event's focus and context.
pub fn bundle(about: &About, kind: Kind, shown: &[Shown]) -> Value {
    let status = status(about, kind, shown);
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
        "resource": status,
        "request": {"method": "GET", "url": about.status_url()},
        "response": {"status": "200"}
    })];
    for s in shown.iter().filter(|s| s.payload != Payload::Empty) {
        let e = s.event;
        let (method, code) = match e.action.as_str() {
            "create" => ("POST", "201"),
            "delete" => ("DELETE", "204"),
            _ => ("PUT", "200"),
        };
        let mut entry = json!({
            "fullUrl": format!("{}/{}/{}", about.base, e.resource_type, e.resource_id),
            "request": {"method": method, "url": format!("{}/{}", e.resource_type, e.resource_id)},
            "response": {"status": code}
        });
        if let (Payload::FullResource, Some(focus)) = (s.payload, &s.focus) {
            entry["resource"] = focus.clone();
        }
        entries.push(entry);
        if s.payload == Payload::FullResource {
            for c in &s.context {
                entries.push(json!({
                    "fullUrl": format!("{}/{}/{}", about.base, c["resourceType"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or("")),
                    "resource": c,
                    "request": {"method": "GET", "url": format!("{}/{}", c["resourceType"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or(""))},
                    "response": {"status": "200"}
                }));
            }
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "history",
        "timestamp": instant(crate::fhir::resource::now_micros()),
        "entry": entries
    })
}
