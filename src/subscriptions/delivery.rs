//! Delivery by REST hook: each subscription with something to send (its handshake, queued
//! events, a heartbeat) is leased to one process at a time, sent its next notification, and
//! advanced only when the endpoint answers 2xx. A failure is retried with exponential back-off
//! and jitter, for ever: after `error_after` failures the subscription shows `error`, keeps
//! queueing, and returns to `active` when the endpoint answers again. Nothing is dropped.

use super::endpoint::{EndpointPolicy, Resolver};
use super::lease;
use super::notification::{self, About, Kind, Shown};
use super::outcome::{Outcome, Recorder, Recording};
use super::registry::{self, Event, Subscriber, status};
use super::subscription::Payload;
use super::topics;
use super::websocket::Sockets;
use crate::auth::{Grant, Interaction};
use crate::fhir::resource::now_micros;
use crate::fhir::search::index::references_of;
use crate::store::{Store, StoreError, versions};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// A subscription leased to this process, with its next events when they were read with
/// the claim.
type Claimed = (Subscriber, Option<Vec<Event>>);

/// How long one lease may go on sending a subscriber the notifications queued behind each
/// other before its progress is recorded (well within the lease: its margin plus the timeout).
const STREAM_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// Notifications of one stream read and built at a time.
const READ_AHEAD: i64 = 32;

/// How delivery retries and shares work.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// Failures in a row after which the subscription shows `error`.
    pub error_after: i32,
    /// How long one process holds a subscription beyond the endpoint's timeout while it sends:
    /// a process that dies mid-delivery blocks that subscription no longer than this.
    pub lease_margin: Duration,
    /// Notifications in flight at once, over all subscriptions.
    pub concurrency: usize,
    /// Where notifications may go: checked again on every address a delivery connects to.
    pub endpoints: Arc<EndpointPolicy>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_max: Duration::from_secs(60),
            error_after: 5,
            lease_margin: Duration::from_secs(5),
            concurrency: 64,
            endpoints: Arc::default(),
        }
    }
}

pub struct Deliverer {
    pub store: Store,
    pub base: String,
    pub settings: DeliverySettings,
    http: reqwest::Client,
    owner: String,
    slots: Arc<Semaphore>,
    /// Wakes the claim loop: a dispatch queued events, a delivery left more to send, a
    /// websocket bound.
    wake: Arc<Notify>,
    sockets: Sockets,
    recorder: Recorder,
}

impl Deliverer {
    /// The deliverer, with the task that writes its outcomes (for the caller to run).
    pub fn new(
        store: Store,
        base: String,
        settings: DeliverySettings,
        sockets: Sockets,
    ) -> (Deliverer, Recording) {
        let (recorder, recording) =
            Recorder::new(store.clone(), settings.clone(), sockets.wake.clone());
        let deliverer = Deliverer {
            store,
            base,
            // no redirects (a redirect could lead anywhere), and every address a name
            // resolves to is checked against the policy when the connection is made
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(Resolver {
                    policy: settings.endpoints.clone(),
                }))
                .build()
                .expect("an HTTP client builds"),
            owner: uuid::Uuid::new_v4().to_string(),
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            wake: sockets.wake.clone(),
            recorder,
            sockets,
        };
        (deliverer, recording)
    }

    /// Deliver until the process ends: at each wake-up (a dispatch queued events) and at least
    /// every `tick`, to catch retries and heartbeats that come due.
    pub async fn run(self: Arc<Self>, tick: Duration) {
        loop {
            let claimed = {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.claim_due()).await
            };
            match claimed {
                Ok(Ok(due)) => {
                    for (sub, queued) in due {
                        let permit = self
                            .slots
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.deliver(sub, queued).await;
                            drop(permit);
                        });
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not claim subscriptions to deliver")
                }
                Err(e) => tracing::error!(error = %e, "delivery claim task failed"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Lease every subscription with something due to this process (up to a limit), each
    /// with its next events read (`None` when that read failed: the attempt reads them).
    fn claim_due(&self) -> Result<Vec<Claimed>, StoreError> {
        let margin = self.settings.lease_margin.as_micros() as i64;
        let taken = lease::claim(
            &self.store,
            &self.owner,
            now_micros(),
            margin,
            &self.sockets.ids(),
        )?;
        if taken.len() as i64 == lease::CLAIM_LIMIT {
            // more may be due: claim again once these are under way
            self.wake.notify_one();
        }
        let mut queued = match self.store.read(|c| registry::queued(c, &taken)) {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %e, "could not read queued events; each attempt reads its own");
                None
            }
        };
        Ok(taken
            .into_iter()
            .map(|sub| {
                let events = queued
                    .as_mut()
                    .map(|q| q.remove(&sub.id).unwrap_or_default());
                (sub, events)
            })
            .collect())
    }

    /// Send `sub` its next notification, and while more events are queued behind it (a busy
    /// feed to one subscriber), the next ones too, under the same lease: a notification then
    /// costs its POST, not a lease and an outcome of its own, and the notifications behind it
    /// are read and built a batch at a time (`read_ahead`). The progress is recorded once, at
    /// the end (a process that dies in between sends those events again, which at-least-once
    /// allows). A failure after some were sent records what was sent; the next claim tries
    /// again at once and counts the failure then.
    async fn deliver(&self, mut sub: Subscriber, queued: Option<Vec<Event>>) {
        let started = std::time::Instant::now();
        let mut outcome = self.attempt(&sub, queued).await;
        let mut sent: Option<i64> = None;
        let mut ahead = std::collections::VecDeque::new();
        // one notification per turn, the next from `ahead`, refilled when it runs dry
        while let Outcome::Sent {
            through,
            kind: Kind::EventNotification,
        } = outcome
        {
            sent = Some(through);
            sub.delivered_through = through;
            if started.elapsed() >= STREAM_FOR {
                break;
            }
            if ahead.is_empty() {
                let Some((events_since_start, next)) = self.read_ahead(&sub, through).await else {
                    break;
                };
                sub.events_since_start = events_since_start;
                ahead.extend(next);
            }
            let Some((through, oldest, body, events)) = ahead.pop_front() else {
                break;
            };
            outcome = self
                .send(
                    &sub,
                    (through, oldest),
                    Kind::EventNotification,
                    body,
                    &events,
                )
                .await;
        }
        // what was sent counts even if the last attempt failed
        let outcome = match (outcome, sent) {
            (o @ Outcome::Sent { .. }, _) => o,
            (_, Some(through)) => Outcome::Sent {
                through,
                kind: Kind::EventNotification,
            },
            (o, None) => o,
        };
        self.recorder.record(sub, outcome);
    }

    /// The notifications queued behind event `through`, up to `READ_AHEAD` of them (of
    /// `maxCount` events each), read and built in one blocking visit to the store: one
    /// subscriber's busy feed is then bound by its endpoint's answers, not by a database round
    /// trip per notification. With the subscription's event count now; `None` when nothing
    /// more is queued, or the row changed under the lease (a client's update, lease lost, off).
    async fn read_ahead(&self, sub: &Subscriber, through: i64) -> Option<(i64, Vec<Ahead>)> {
        let (store, base, owner) = (self.store.clone(), self.base.clone(), self.owner.clone());
        let id = sub.id.clone();
        let mut sub = sub.clone();
        let from = through + 1;
        let read = tokio::task::spawn_blocking(move || {
            let queued = store.read(|c| {
                let Some(fresh) = registry::get(c, &sub.id)? else {
                    return Ok(None);
                };
                let unchanged = fresh.lease_owner.as_deref() == Some(owner.as_str())
                    && fresh.handshake_done
                    && fresh.status != status::OFF;
                if !unchanged || from > fresh.events_since_start {
                    return Ok(None);
                }
                let to = (from + sub.max_count * READ_AHEAD - 1).min(fresh.events_since_start);
                let events = registry::events(c, &sub.id, from, to)?;
                Ok(Some((fresh.events_since_start, events)))
            })?;
            let Some((events_since_start, events)) = queued else {
                return Ok(None);
            };
            sub.events_since_start = events_since_start;
            let per = usize::try_from(sub.max_count.max(1)).unwrap_or(usize::MAX);
            let bodies = events
                .chunks(per)
                .map(|chunk| {
                    let through = chunk.last().map(|e| e.event_number).unwrap_or(through);
                    let oldest = chunk.first().map(|e| e.occurred_at);
                    notification_for(&store, &base, &sub, Kind::EventNotification, chunk)
                        .map(|body| (through, oldest, body, chunk.to_vec()))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok::<_, StoreError>(Some((events_since_start, bodies)))
        })
        .await;
        match read {
            Ok(Ok(Some((since, bodies)))) if !bodies.is_empty() => Some((since, bodies)),
            Ok(Err(e)) => {
                tracing::warn!(subscription = %id, error = %e, "reading ahead failed; the next claim goes on");
                None
            }
            Err(e) => {
                tracing::error!(subscription = %id, error = %e, "reading ahead panicked; the next claim goes on");
                None
            }
            Ok(Ok(_)) => None,
        }
    }

    /// One notification for `sub`: its handshake, its next events (`queued`, when read with
    /// the claim), or a heartbeat.
    async fn attempt(&self, sub: &Subscriber, queued: Option<Vec<Event>>) -> Outcome {
        let (kind, events) = if !sub.handshake_done {
            (Kind::Handshake, Vec::new())
        } else if sub.delivered_through < sub.events_since_start {
            let from = sub.delivered_through + 1;
            let to = (sub.delivered_through + sub.max_count).min(sub.events_since_start);
            let store = self.store.clone();
            let id = sub.id.clone();
            let read = match queued {
                // events queued since the lease was taken wait for the next notification,
                // whose status will count them
                Some(q) => Ok(Ok(q.into_iter().filter(|e| e.event_number <= to).collect())),
                None => {
                    tokio::task::spawn_blocking(move || {
                        store.read(|c| registry::events(c, &id, from, to))
                    })
                    .await
                }
            };
            match read {
                Ok(Ok(events)) if !events.is_empty() => (Kind::EventNotification, events),
                Ok(Ok(_)) => {
                    tracing::warn!(subscription = %sub.id, from, to, "queued events missing");
                    return Outcome::Nothing;
                }
                Ok(Err(e)) => return Outcome::Failed(format!("reading the queue: {e}")),
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        } else {
            (Kind::Heartbeat, Vec::new())
        };
        let through = events
            .last()
            .map(|e| e.event_number)
            .unwrap_or(sub.delivered_through);
        let oldest = events.first().map(|e| e.occurred_at);
        let (body, events) = {
            let store = self.store.clone();
            let base = self.base.clone();
            let sub = sub.clone();
            match tokio::task::spawn_blocking(move || {
                notification_for(&store, &base, &sub, kind, &events).map(|b| (b, events))
            })
            .await
            {
                Ok(Ok(built)) => built,
                Ok(Err(e)) => return Outcome::Failed(format!("building the notification: {e}")),
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        };
        self.send(sub, (through, oldest), kind, body, &events).await
    }

    /// Send one built notification (`through`: its last event; `events`: what it tells of) by
    /// the subscription's channel.
    async fn send(
        &self,
        sub: &Subscriber,
        (through, oldest): (i64, Option<i64>),
        kind: Kind,
        body: Value,
        events: &[Event],
    ) -> Outcome {
        let outcome = self.send_now(sub, through, kind, body).await;
        let result = match &outcome {
            Outcome::Sent { .. } => "sent",
            Outcome::Nothing => "waiting",
            _ => "failed",
        };
        metrics::counter!("emrsync_deliveries_total",
            "kind" => "subscription", "name" => sub.id.clone(), "outcome" => result)
        .increment(1);
        if result != "waiting" {
            // a notification sent or refused, in the audit trail (a socket not open is neither)
            use crate::store::audit::{Entry, kind as audit_kind};
            let what = match kind {
                Kind::EventNotification => "event-notification",
                Kind::Handshake => "handshake",
                Kind::Heartbeat => "heartbeat",
                _ => "notification",
            };
            let mut e = Entry::now(
                audit_kind::DELIVERY,
                what,
                &format!("subscription {}", sub.id),
                &crate::store::new_correlation_id(),
            );
            e.resource_type = Some("Subscription".into());
            e.resource_id = Some(sub.id.clone());
            e.patient = sub.patient.as_ref().map(|p| format!("Patient/{p}"));
            e.outcome = if result == "sent" {
                "success"
            } else {
                "failure"
            }
            .into();
            e.detail = Some(match &outcome {
                Outcome::Failed(why) => why.clone(),
                _ => format!("through event {through} by {}", sub.channel),
            });
            // one entry per change told of, under the change's correlation id and naming its
            // resource (the flusher names its patient): "where did this result go" finds it
            for ev in events {
                let mut told = e.clone();
                told.resource_type = Some(ev.resource_type.clone());
                told.resource_id = Some(ev.resource_id.clone());
                told.version_id = Some(ev.version_id);
                told.correlation_id = ev.correlation_id.clone();
                // (a refusal keeps its reason)
                if !matches!(outcome, Outcome::Failed(_)) {
                    told.detail = Some(format!(
                        "event {} of Subscription/{} ({}) by {}",
                        ev.event_number, sub.id, ev.action, sub.channel
                    ));
                }
                self.store.audit(told);
            }
            if events.is_empty() {
                self.store.audit(e);
            }
        }
        if let (Outcome::Sent { .. }, Some(at)) = (&outcome, oldest) {
            metrics::histogram!("emrsync_delivery_latency_seconds",
                "kind" => "subscription", "name" => sub.id.clone())
            .record(crate::fhir::resource::seconds_since(at));
        }
        outcome
    }

    async fn send_now(&self, sub: &Subscriber, through: i64, kind: Kind, body: Value) -> Outcome {
        if sub.channel == "websocket" {
            // no socket open (any more): the events wait for the next binding
            return match self.sockets.send(&sub.id, &body.to_string()).await {
                true => Outcome::Sent { through, kind },
                false => Outcome::Nothing,
            };
        }
        let Some(endpoint) = sub.endpoint.clone() else {
            return Outcome::Nothing;
        };
        // an address literal is not resolved: checked here, under today's settings
        if let Err(why) = self.settings.endpoints.check(&endpoint) {
            return Outcome::Failed(why);
        }
        let mut request = self
            .http
            .post(&endpoint)
            .timeout(Duration::from_secs(sub.timeout_secs.max(1) as u64))
            .header("content-type", sub.content_type.as_str())
            .body(body.to_string());
        for h in sub.headers(self.store.seal()) {
            if let Some((name, value)) = h.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Outcome::Sent { through, kind },
            Ok(r) => Outcome::Failed(format!("the endpoint answered {}", r.status())),
            Err(e) => Outcome::Failed(format!("the endpoint could not be reached: {}", causes(&e))),
        }
    }
}

/// An error with the causes under it (reqwest's own text leaves out why: a refused address, a
/// timeout, a certificate), as a subscriber's `$status` shows it.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A notification read ahead: its last event, its first event's commit time, its body, its
/// events.
type Ahead = (i64, Option<i64>, Value, Vec<Event>);

/// The notification Bundle for `events` (or a handshake or heartbeat), with what the
/// subscriber's authorization lets it see of each focus.
pub fn notification_for(
    store: &Store,
    base: &str,
    sub: &Subscriber,
    kind: Kind,
    events: &[Event],
) -> Result<Value, StoreError> {
    let grant = Grant::stored(&sub.actor, &sub.scope, sub.patient.clone());
    let shown: Vec<Shown> = events
        .iter()
        .map(|e| shown(store, &grant, sub, sub.payload(), e))
        .collect::<Result<_, _>>()?;
    let about = About {
        base,
        id: &sub.id,
        topic: &sub.topic,
        status: if kind == Kind::Handshake || sub.status == status::ERROR {
            status::ACTIVE
        } else {
            &sub.status
        },
        events_since_start: sub.events_since_start,
        error: None,
        target: false,
    };
    Ok(notification::bundle(&about, kind, &shown))
}

/// One event as `grant` may see it: the focus only if the grant may read it (else the
/// payload is downgraded to `empty`), and of the topic's context only what it may read.
/// A failure to read is an error, never a downgrade: the attempt is retried.
pub fn shown<'a>(
    store: &Store,
    grant: &Grant,
    sub: &Subscriber,
    payload: Payload,
    e: &'a Event,
) -> Result<Shown<'a>, StoreError> {
    let mut out = Shown {
        event: e,
        payload,
        focus: None,
        context: Vec::new(),
    };
    if payload == Payload::Empty {
        return Ok(out);
    }
    // the version the event is about; for a delete, the one deleted
    let vid = if e.action == "delete" {
        e.version_id - 1
    } else {
        e.version_id
    };
    // the current version is most often the one (and is cached: a change fanned out to many
    // subscribers is read once, not once each)
    let focus = match store.current(&e.resource_type, &e.resource_id) {
        Ok(v) if v.version_id == vid => Some(v.json()),
        _ => store
            .read(|c| versions::version(c, &e.resource_type, &e.resource_id, vid))?
            .filter(|v| !v.deleted)
            .map(|v| v.json()),
    };
    let readable = focus.as_ref().is_some_and(|f| {
        grant
            .check(Interaction::Read, &e.resource_type, &e.resource_id, || f)
            .is_ok()
    });
    if !readable {
        out.payload = Payload::Empty;
        return Ok(out);
    }
    if payload == Payload::FullResource && e.action != "delete" {
        let focus = focus.expect("readable means present");
        out.context = context(store, grant, sub, &e.resource_type, &focus)?;
        out.focus = Some(focus);
    }
    Ok(out)
}

/// The topic's notification shape for the focus's type: the resources its includes point at,
/// those the grant may read.
fn context(
    store: &Store,
    grant: &Grant,
    sub: &Subscriber,
    rtype: &str,
    focus: &Value,
) -> Result<Vec<Value>, StoreError> {
    let Some(topic) = topics::find(&sub.topic) else {
        return Ok(Vec::new());
    };
    let params: Vec<String> = topic
        .shapes
        .iter()
        .filter(|(t, _)| t == rtype)
        .flat_map(|(_, includes)| includes.iter())
        .filter_map(|inc| inc.split_once(':').map(|(_, p)| p.to_string()))
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for r in references_of(focus, &params) {
        let (Some(t), Some(id)) = (r.target_type, r.target_id) else {
            continue;
        };
        if out
            .iter()
            .any(|v| v["resourceType"] == t.as_str() && v["id"] == id.as_str())
        {
            continue;
        }
        let v = match store.current(&t, &id) {
            Ok(v) => v,
            // a reference to nothing (or to what was deleted) adds nothing
            Err(StoreError::NotFound { .. } | StoreError::Gone { .. }) => continue,
            Err(e) => return Err(e),
        };
        let json = v.json();
        if grant.check(Interaction::Read, &t, &id, || &json).is_ok() {
            out.push(json);
        }
    }
    Ok(out)
}
