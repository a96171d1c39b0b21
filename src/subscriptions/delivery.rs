//! Delivery by REST hook: each subscription with something to send (its handshake, queued
//! events, a heartbeat) is leased to one process at a time, sent its next notification, and
//! advanced only when the endpoint answers 2xx. A failure is retried with exponential back-off
//! and jitter, for ever: after `error_after` failures the subscription shows `error`, keeps
//! queueing, and returns to `active` when the endpoint answers again. Nothing is dropped.

use super::notification::{self, About, Kind, Shown};
use super::registry::{self, Event, SERVER_ACTOR, Subscriber, status};
use super::subscription::Payload;
use super::topics;
use super::websocket::Sockets;
use crate::auth::{Grant, Interaction};
use crate::fhir::FhirId;
use crate::fhir::resource::now_micros;
use crate::fhir::search::index::references_of;
use crate::store::schema::subscriptions;
use crate::store::{Method, Store, StoreError, WriteContext, versions, write};
use diesel::prelude::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

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
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_max: Duration::from_secs(60),
            error_after: 5,
            lease_margin: Duration::from_secs(5),
            concurrency: 64,
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
}

/// What one attempt came to.
enum Outcome {
    Sent { through: i64, kind: Kind },
    Failed(String),
    Nothing,
}

impl Deliverer {
    pub fn new(
        store: Store,
        base: String,
        settings: DeliverySettings,
        sockets: Sockets,
    ) -> Deliverer {
        Deliverer {
            store,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client builds"),
            owner: uuid::Uuid::new_v4().to_string(),
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            wake: sockets.wake.clone(),
            sockets,
        }
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
                    for sub in due {
                        let permit = self
                            .slots
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.deliver(sub).await;
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

    /// Lease every subscription with something due to this process.
    fn claim_due(&self) -> Result<Vec<Subscriber>, StoreError> {
        let now = now_micros();
        let margin = self.settings.lease_margin.as_micros() as i64;
        self.store.write_rows(|c| {
            use subscriptions::dsl as s;
            // whether a heartbeat is due is decided below, per row
            let heartbeat_due = s::heartbeat_secs
                .is_not_null()
                .and(s::handshake_done.eq(true));
            let due = s::handshake_done
                .eq(false)
                .or(s::delivered_through.lt(s::events_since_start))
                .or(heartbeat_due);
            // in id order, as every writer of these rows takes them (else two processes could
            // deadlock)
            let candidates: Vec<Subscriber> = s::subscriptions
                .filter(s::status.ne(status::OFF))
                .filter(s::channel.eq_any(["rest-hook", "websocket"]))
                .filter(s::lease_until.lt(now))
                .filter(s::next_attempt_at.le(now))
                .filter(due)
                .order(s::id)
                .select(Subscriber::as_select())
                .load(c)?;
            let mut mine = Vec::new();
            for sub in candidates {
                // a websocket subscription is served by the process holding its socket
                if sub.channel == "websocket" && !self.sockets.has(&sub.id) {
                    continue;
                }
                if sub.handshake_done
                    && sub.delivered_through >= sub.events_since_start
                    && !heartbeat_is_due(&sub, now)
                {
                    continue;
                }
                // The lease is taken only if no other process took it since the read, and
                // only while the row still is as read: another process may have delivered
                // and released it in between, and this stale copy would send those events
                // again. (PostgreSQL re-tests the WHERE on the newest row when it waited.)
                let until = now + margin + sub.timeout_secs * 1_000_000;
                let took = diesel::update(
                    s::subscriptions
                        .filter(s::id.eq(&sub.id))
                        .filter(s::lease_until.lt(now))
                        .filter(s::delivered_through.eq(sub.delivered_through))
                        .filter(s::handshake_done.eq(sub.handshake_done))
                        .filter(s::attempts.eq(sub.attempts))
                        .filter(s::last_sent_at.eq(sub.last_sent_at)),
                )
                .set((s::lease_until.eq(until), s::lease_owner.eq(&self.owner)))
                .execute(c)?;
                if took == 1 {
                    mine.push(sub);
                }
            }
            Ok(mine)
        })
    }

    async fn deliver(&self, sub: Subscriber) {
        let outcome = self.attempt(&sub).await;
        // a sent notification with more queued behind it: claim again at once, not at the tick
        let more = matches!(outcome, Outcome::Sent { through, .. } if through < sub.events_since_start)
            || matches!(
                outcome,
                Outcome::Sent {
                    kind: Kind::Handshake,
                    ..
                }
            );
        let store = self.store.clone();
        let settings = self.settings.clone();
        let result =
            tokio::task::spawn_blocking(move || record_outcome(&store, &settings, &sub, outcome))
                .await;
        if more {
            self.wake.notify_one();
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record a delivery outcome"),
            Err(e) => tracing::error!(error = %e, "delivery bookkeeping task failed"),
        }
    }

    async fn attempt(&self, sub: &Subscriber) -> Outcome {
        let (kind, events) = if !sub.handshake_done {
            (Kind::Handshake, Vec::new())
        } else if sub.delivered_through < sub.events_since_start {
            let from = sub.delivered_through + 1;
            let to = (sub.delivered_through + sub.max_count).min(sub.events_since_start);
            let store = self.store.clone();
            let id = sub.id.clone();
            match tokio::task::spawn_blocking(move || {
                store.read(|c| registry::events(c, &id, from, to))
            })
            .await
            {
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
        let body = {
            let store = self.store.clone();
            let base = self.base.clone();
            let sub = sub.clone();
            match tokio::task::spawn_blocking(move || {
                notification_for(&store, &base, &sub, kind, &events)
            })
            .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Outcome::Failed(format!("building the notification: {e}")),
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        };
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
        let mut request = self
            .http
            .post(&endpoint)
            .timeout(Duration::from_secs(sub.timeout_secs.max(1) as u64))
            .header("content-type", sub.content_type.as_str())
            .body(body.to_string());
        for h in sub.headers() {
            if let Some((name, value)) = h.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Outcome::Sent { through, kind },
            Ok(r) => Outcome::Failed(format!("the endpoint answered {}", r.status())),
            Err(e) => Outcome::Failed(format!("the endpoint could not be reached: {e}")),
        }
    }
}

fn heartbeat_is_due(sub: &Subscriber, now: i64) -> bool {
    sub.heartbeat_secs
        .is_some_and(|h| sub.last_sent_at + h * 1_000_000 <= now)
}

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

/// Advance (or schedule the retry of) a subscription after an attempt, release its lease, and
/// bring its resource's status in line.
fn record_outcome(
    store: &Store,
    settings: &DeliverySettings,
    sub: &Subscriber,
    outcome: Outcome,
) -> Result<(), StoreError> {
    use subscriptions::dsl as s;
    let now = now_micros();
    let new_status = store.write_rows(|c| {
        let Some(current) = registry::get(c, &sub.id)? else {
            return Ok(None);
        };
        // a client's update since the claim restarted the subscription (a new handshake is
        // due): this attempt's outcome no longer applies
        if sub.handshake_done && !current.handshake_done {
            diesel::update(s::subscriptions.find(&sub.id))
                .set(s::lease_until.eq(0i64))
                .execute(c)?;
            return Ok(None);
        }
        let new_status = match &outcome {
            Outcome::Sent { through, kind } => {
                let handshake = *kind == Kind::Handshake;
                diesel::update(s::subscriptions.find(&sub.id))
                    .set((
                        s::delivered_through.eq(current.delivered_through.max(*through)),
                        s::handshake_done.eq(current.handshake_done || handshake),
                        s::attempts.eq(0),
                        s::next_attempt_at.eq(0i64),
                        s::last_error.eq(None::<String>),
                        s::last_sent_at.eq(now),
                        s::lease_until.eq(0i64),
                    ))
                    .execute(c)?;
                (current.status != status::ACTIVE).then_some(status::ACTIVE)
            }
            Outcome::Failed(error) => {
                let attempts = current.attempts + 1;
                let delay = backoff(attempts, settings.retry_max);
                let status = if attempts >= settings.error_after {
                    status::ERROR
                } else {
                    current.status.as_str()
                };
                diesel::update(s::subscriptions.find(&sub.id))
                    .set((
                        s::attempts.eq(attempts),
                        s::next_attempt_at.eq(now + delay.as_micros() as i64),
                        s::last_error.eq(Some(error)),
                        s::lease_until.eq(0i64),
                    ))
                    .execute(c)?;
                tracing::info!(subscription = %sub.id, attempts, %error, "notification not delivered; will retry");
                (current.status != status).then_some(status)
            }
            Outcome::Nothing => {
                diesel::update(s::subscriptions.find(&sub.id))
                    .set(s::lease_until.eq(0i64))
                    .execute(c)?;
                None
            }
        };
        if let Some(st) = new_status {
            diesel::update(s::subscriptions.find(&sub.id))
                .set(s::status.eq(st))
                .execute(c)?;
        }
        Ok(new_status.map(str::to_string))
    })?;
    if let Some(st) = new_status {
        set_resource_status(store, &sub.id, &st)?;
    }
    Ok(())
}

/// The wait before attempt `attempts + 1`: doubling from one second up to `max`, less up to
/// a quarter at random so that many subscriptions failing together do not retry together.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let doublings = (attempts - 1).clamp(0, 16) as u32;
    let exp = Duration::from_millis(1000u64 << doublings);
    let capped = exp.min(max);
    capped.mul_f64(1.0 - fastrand::f64() * 0.25)
}

/// Write `status` into the Subscription resource (a new version), so that a client reading
/// it sees what `$status` says. A concurrent client update wins (it restarts the subscription).
pub fn set_resource_status(store: &Store, id: &str, st: &str) -> Result<(), StoreError> {
    let ctx = WriteContext {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        actor: SERVER_ACTOR.into(),
        grant: Arc::new(Grant::unrestricted()),
        endpoints: Default::default(),
    };
    let result = store.write(|tx| {
        let Some(current) = versions::current(tx.conn, "Subscription", id)? else {
            return Ok(());
        };
        if current.deleted {
            return Ok(());
        }
        let mut json = current.json();
        if json["status"] == st {
            return Ok(());
        }
        json["status"] = Value::String(st.to_string());
        let fid = FhirId::parse(id).map_err(|e| StoreError::Conflict(e.to_string()))?;
        write::put(
            tx,
            "Subscription",
            &fid,
            json,
            Method::Put,
            Some(current.version_id),
            &ctx,
        )?;
        Ok::<(), StoreError>(())
    });
    match result {
        Err(StoreError::PreconditionFailed { .. } | StoreError::Conflict(_)) => Ok(()),
        other => other,
    }
}
