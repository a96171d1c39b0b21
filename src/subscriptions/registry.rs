//! Each subscription's runtime state, beside its resource: the authorization it was created
//! under, its write-only headers, its status and its numbered event queue. Rows change in the
//! same transaction as the Subscription resource they belong to.

use super::subscription::{Payload, parse};
use super::write_rules::Rules;
use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::rules::Recorded;
use crate::store::schema::{subscription_events, subscriptions};
use crate::store::seal::{Seal, is_sealed};
use diesel::prelude::*;

/// Subscription status, as the IG names it.
pub mod status {
    pub const REQUESTED: &str = "requested";
    pub const ACTIVE: &str = "active";
    pub const ERROR: &str = "error";
    pub const OFF: &str = "off";
}

/// One subscription's row.
/// What channel headers are sealed as (bound into their seal).
pub const HEADERS_SEALED_AS: &str = "subscription channel headers";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct Subscriber {
    pub id: String,
    pub topic: String,
    pub filters: String,
    pub status: String,
    pub channel: String,
    pub endpoint: Option<String>,
    pub headers: String,
    pub payload: String,
    pub content_type: String,
    pub heartbeat_secs: Option<i64>,
    pub timeout_secs: i64,
    pub max_count: i64,
    pub scope: String,
    pub patient: Option<String>,
    pub actor: String,
    pub events_since_start: i64,
    pub delivered_through: i64,
    pub handshake_done: bool,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_sent_at: i64,
    pub lease_until: i64,
    pub lease_owner: Option<String>,
    /// The outbox position this subscription starts after: earlier changes are not its.
    pub starts_after: i64,
}

impl Subscriber {
    pub fn payload(&self) -> Payload {
        Payload::parse(&self.payload).unwrap_or(Payload::Empty)
    }

    /// The channel headers, opened with the master key they were sealed with (if any).
    pub fn headers(&self, seal: Option<&Seal>) -> Vec<String> {
        let text = match (is_sealed(&self.headers), seal) {
            (false, _) => self.headers.clone(),
            (true, Some(seal)) => match seal.open(HEADERS_SEALED_AS, &self.headers) {
                Ok(plain) => String::from_utf8(plain).unwrap_or_default(),
                Err(e) => {
                    tracing::error!(subscription = %self.id, error = %e, "channel headers do not open");
                    return Vec::new();
                }
            },
            (true, None) => {
                tracing::error!(subscription = %self.id, "channel headers are sealed and no master key was given");
                return Vec::new();
            }
        };
        serde_json::from_str(&text).unwrap_or_default()
    }

    pub fn filters(&self) -> Vec<String> {
        serde_json::from_str(&self.filters).unwrap_or_default()
    }
}

/// One queued event.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscription_events)]
pub struct Event {
    pub subscription_id: String,
    pub event_number: i64,
    pub outbox_seq: i64,
    pub resource_type: String,
    pub resource_id: String,
    pub version_id: i64,
    pub action: String,
    pub occurred_at: i64,
    pub correlation_id: String,
}

/// Keep the registry in step with a write of a Subscription (called through the writer's
/// `rules` in the write's transaction). Its `set_aside` are the channel headers taken out of
/// the resource; with a master key they are stored sealed (they carry the subscriber's
/// credentials).
pub fn on_write(change: Recorded<'_>, rules: &Rules) -> Result<(), StoreError> {
    let Recorded {
        conn,
        version,
        action,
        set_aside: headers,
        ctx,
        seal,
    } = change;
    let id = version.id.as_str();
    if action == "delete" {
        diesel::delete(
            subscription_events::table.filter(subscription_events::subscription_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(subscriptions::table.find(id)).execute(conn)?;
        return Ok(());
    }
    if ctx.actor.is_server() {
        return Ok(());
    }
    let spec = parse(&version.json(), &rules.endpoints).map_err(StoreError::Invalid)?;
    // the headers were set aside before the resource was stored: checked here, where they are
    if let Some(h) = &headers
        && let Err(msg) = super::subscription::check_headers(h)
    {
        let issue = crate::fhir::Issue::error("value", msg).at("Subscription.channel.header");
        return Err(StoreError::Invalid(vec![issue]));
    }
    let existing: Option<String> = subscriptions::table
        .find(id)
        .select(subscriptions::headers)
        .get_result(conn)
        .optional()?;
    // write-only headers: an update that sends none keeps those set before
    let headers = match (headers.filter(|h| !h.is_empty()), existing.as_ref()) {
        (Some(h), _) => {
            let text = serde_json::to_string(&h).expect("strings serialise");
            match seal {
                Some(seal) => seal.seal(HEADERS_SEALED_AS, text.as_bytes()),
                None => text,
            }
        }
        (None, Some(old)) => old.clone(),
        (None, None) => "[]".into(),
    };
    let status = if spec.off {
        status::OFF
    } else {
        status::REQUESTED
    };
    let filters = serde_json::to_string(&spec.filters).expect("strings serialise");
    let scope = rules.grant.scope.clone();
    let patient = rules.grant.patient.clone();
    let actor = rules.grant.actor();
    // what the client asked for, and a fresh start of delivery (a new handshake is due)
    let asked = (
        subscriptions::topic.eq(&spec.topic.url),
        subscriptions::filters.eq(&filters),
        subscriptions::status.eq(status),
        subscriptions::channel.eq(&spec.channel),
        subscriptions::endpoint.eq(&spec.endpoint),
        subscriptions::headers.eq(&headers),
        subscriptions::payload.eq(spec.payload.as_str()),
        subscriptions::content_type.eq(&spec.content_type),
        subscriptions::heartbeat_secs.eq(spec.heartbeat_secs),
        subscriptions::timeout_secs.eq(spec.timeout_secs),
        subscriptions::max_count.eq(spec.max_count),
        (
            subscriptions::scope.eq(&scope),
            subscriptions::patient.eq(&patient),
            subscriptions::actor.eq(&actor),
            subscriptions::handshake_done.eq(false),
            subscriptions::attempts.eq(0),
            subscriptions::next_attempt_at.eq(0i64),
        ),
    );
    if existing.is_some() {
        // the event count and delivery cursor carry over: numbering never restarts
        diesel::update(subscriptions::table.find(id))
            .set((asked, subscriptions::last_error.eq(None::<String>)))
            .execute(conn)?;
    } else {
        // changes committed before this one are not this subscription's, even when the
        // dispatcher has not reached them yet
        let starts_after: Option<i64> = crate::store::schema::outbox::table
            .select(diesel::dsl::max(crate::store::schema::outbox::seq))
            .get_result(conn)?;
        diesel::insert_into(subscriptions::table)
            .values((
                subscriptions::starts_after.eq(starts_after.unwrap_or(0)),
                subscriptions::id.eq(id),
                asked,
                subscriptions::events_since_start.eq(0i64),
                subscriptions::delivered_through.eq(0i64),
                subscriptions::last_sent_at.eq(now_micros()),
                subscriptions::lease_until.eq(0i64),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A websocket subscriber bound a socket: it gets a handshake on it first, then what is
/// queued.
pub fn rebind(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    diesel::update(subscriptions::table.find(id))
        .set((
            subscriptions::handshake_done.eq(false),
            subscriptions::next_attempt_at.eq(0i64),
        ))
        .execute(conn)?;
    Ok(())
}

/// A value that changes whenever a subscription is added, removed, changed by its client or
/// turned off or on: how many listen, and the newest version among their resources.
pub fn fingerprint(conn: &mut DbConnection) -> Result<(i64, String), StoreError> {
    use crate::store::schema::resources;
    let listening: i64 = subscriptions::table
        .filter(subscriptions::status.ne(status::OFF))
        .count()
        .get_result(conn)?;
    let newest: Option<i64> = resources::table
        .filter(resources::resource_type.eq("Subscription"))
        .select(diesel::dsl::max(resources::last_updated))
        .get_result(conn)?;
    Ok((listening, newest.unwrap_or_default().to_string()))
}

/// The subscriptions that queue events (all but `off`).
pub fn listening(conn: &mut DbConnection) -> Result<Vec<Subscriber>, StoreError> {
    Ok(subscriptions::table
        .filter(subscriptions::status.ne(status::OFF))
        .select(Subscriber::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<Option<Subscriber>, StoreError> {
    Ok(subscriptions::table
        .find(id)
        .select(Subscriber::as_select())
        .get_result(conn)
        .optional()?)
}

/// Events `from..=to` of a subscription, in order.
pub fn events(
    conn: &mut DbConnection,
    id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Event>, StoreError> {
    Ok(subscription_events::table
        .filter(subscription_events::subscription_id.eq(id))
        .filter(subscription_events::event_number.between(from, to))
        .order(subscription_events::event_number.asc())
        .select(Event::as_select())
        .load(conn)?)
}

/// The next events of each of `subs` (leased to the caller), in one query: for each, those
/// after its `delivered_through`, at most `max_count` of them. A fan-out of one change to
/// 1,000 subscribers reads its events once, not 1,000 times.
pub fn queued(
    conn: &mut DbConnection,
    subs: &[Subscriber],
) -> Result<std::collections::HashMap<String, Vec<Event>>, StoreError> {
    use subscription_events::dsl as e;
    use subscriptions::dsl as s;
    let ids: Vec<&str> = subs
        .iter()
        .filter(|s| s.handshake_done && s.delivered_through < s.events_since_start)
        .map(|s| s.id.as_str())
        .collect();
    let mut out: std::collections::HashMap<String, Vec<Event>> = Default::default();
    for chunk in ids.chunks(500) {
        let rows: Vec<Event> = e::subscription_events
            .inner_join(s::subscriptions.on(s::id.eq(e::subscription_id)))
            .filter(s::id.eq_any(chunk))
            .filter(e::event_number.gt(s::delivered_through))
            .filter(e::event_number.le(s::delivered_through + s::max_count))
            .order((e::subscription_id, e::event_number))
            .select(Event::as_select())
            .load(conn)?;
        for ev in rows {
            out.entry(ev.subscription_id.clone()).or_default().push(ev);
        }
    }
    Ok(out)
}
