//! A queued message for a REST-hook target: the Subscriptions Backport notification Bundle a
//! rest-hook Subscription would be sent, one `notification-event` per change the message
//! carries (a write's Patient and Encounter together, in commit order). The target is no
//! Subscription resource: the status names it by an identifier, and its event numbers are
//! the queue's positions (increasing, not contiguous: the queue, not the numbers, keeps the
//! order, and what was not taken is in the outbound exception queue).

use super::config::{Content, Target};
use super::queue::Queued;
use super::render::{Rendered, Rendering, Versions};
use crate::store::db::DbConnection;
use crate::subscriptions::notification::{self, About, Kind, Shown};
use crate::subscriptions::registry::Event;
use crate::subscriptions::subscription::Payload;
use crate::subscriptions::topics;

/// The notification Bundle of `q` for `target`.
pub fn notification(
    conn: &mut DbConnection,
    (q, v): (&Queued, &Versions),
    target: &Target,
    (base, content): (&str, Content),
) -> Rendering {
    let payload = match content {
        Content::Empty => Payload::Empty,
        Content::IdOnly => Payload::IdOnly,
        Content::FullResource => Payload::FullResource,
    };
    // each resource once, as the message left it, in the order the write made them
    let lasts: Vec<_> = v
        .changes
        .iter()
        .filter(|c| v.of(&c.rtype).any(|last| std::ptr::eq(last, *c)))
        .collect();
    let events: Vec<Event> = lasts
        .iter()
        .map(|c| Event {
            subscription_id: target.name.clone(),
            event_number: q.seq,
            outbox_seq: q.outbox_seq,
            resource_type: c.rtype.clone(),
            resource_id: c.id.clone(),
            version_id: c.version,
            action: c.action.clone(),
            occurred_at: q.created_at,
            correlation_id: q.correlation_id.clone(),
        })
        .collect();
    let mut shown = Vec::with_capacity(events.len());
    for (e, c) in events.iter().zip(&lasts) {
        let focus = match (payload, e.action.as_str()) {
            (Payload::FullResource, "delete") | (Payload::Empty | Payload::IdOnly, _) => None,
            (Payload::FullResource, _) => v.at(conn, c, c.version)?,
        };
        shown.push(Shown {
            event: e,
            payload,
            focus,
            context: Vec::new(),
        });
    }
    // the topic: the first of the target's events that covers what the message is about
    let focus_type = v.changes.first().map(|c| c.rtype.as_str()).unwrap_or("");
    let topic = target
        .events
        .iter()
        .find(|e| topics::resolve(&e.criteria).is_ok_and(|t| t.covers(focus_type)))
        .or(target.events.first())
        .map(|e| e.criteria.as_str())
        .unwrap_or("");
    let about = About {
        base,
        id: &target.name,
        topic,
        status: "active",
        events_since_start: q.seq,
        error: None,
        target: true,
    };
    let bundle = notification::bundle(&about, Kind::EventNotification, &shown);
    Ok(Ok(Rendered::Message {
        kind: "notification".into(),
        text: bundle.to_string(),
    }))
}
