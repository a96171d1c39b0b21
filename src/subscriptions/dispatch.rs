//! From the outbox to each subscription's queue: every change not yet dispatched is tested
//! against every listening subscription's topic and filters, and each match becomes the
//! subscription's next numbered event, in the same transaction that marks the change done.
//! Several processes on one PostgreSQL claim disjoint batches (`FOR UPDATE SKIP LOCKED`).

use super::registry::{self, Event, Subscriber};
use super::subscription::parsed_filters;
use super::topics::{self, Action, Change};
use crate::auth::Grant;
use crate::auth::access::in_compartment;
use crate::fhir::resource::now_micros;
use crate::fhir::search::matcher::matches_all;
use crate::fhir::search::query::Clause;
use crate::store::db::DbConnection;
use crate::store::schema::{outbox, subscription_events, subscriptions};
use crate::store::{StoreError, versions};
use diesel::prelude::*;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
struct Pending {
    seq: i64,
    resource_type: String,
    resource_id: String,
    version_id: i64,
    action: String,
    correlation_id: String,
    created_at: i64,
}

/// A listening subscription, ready to test changes against.
struct Listener {
    sub: Subscriber,
    topic: topics::Criteria,
    filters: Vec<(String, Vec<Clause>)>,
    grant: Grant,
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Dispatched {
    /// Outbox rows consumed.
    pub changes: usize,
    /// Events queued.
    pub events: usize,
}

/// Dispatch up to `limit` pending changes, oldest first. Run in a write transaction.
pub fn dispatch_batch(conn: &mut DbConnection, limit: i64) -> Result<Dispatched, StoreError> {
    macro_rules! q {
        () => {
            outbox::table
                .filter(outbox::dispatched_at.is_null())
                .order(outbox::seq.asc())
                .limit(limit)
                .select(Pending::as_select())
        };
    }
    let pending: Vec<Pending> = match conn {
        // another process's batch is skipped, not waited for
        DbConnection::Pg(c) => q!().for_update().skip_locked().load(c)?,
        DbConnection::Sqlite(c) => q!().load(c)?,
    };
    if pending.is_empty() {
        return Ok(Dispatched::default());
    }
    let listeners: Vec<Listener> = registry::listening(conn)?
        .into_iter()
        .filter_map(|sub| {
            let topic = topics::resolve(&sub.topic).ok()?;
            let filters = parsed_filters(&sub.filters());
            let grant = Grant::stored(&sub.actor, &sub.scope, sub.patient.clone());
            Some(Listener {
                sub,
                topic,
                filters,
                grant,
            })
        })
        .collect();
    let mut next: HashMap<String, i64> = listeners
        .iter()
        .map(|l| (l.sub.id.clone(), l.sub.events_since_start))
        .collect();
    let mut events = Vec::new();
    if !listeners.is_empty() {
        for p in &pending {
            // a subscription's own changes (its creation, its status) are not events of any
            // topic: a subscriber would otherwise hear of itself going active
            if p.resource_type == "Subscription" {
                continue;
            }
            let Some(action) = Action::parse(&p.action) else {
                continue;
            };
            let (previous, current) = versions_of(conn, p, action)?;
            let change = Change {
                rtype: &p.resource_type,
                action,
                previous: previous.as_ref(),
                current: current.as_ref(),
            };
            for l in &listeners {
                if !l.topic.fires(&change) || !passes(l, &change, &p.resource_id) {
                    continue;
                }
                let n = next
                    .get_mut(&l.sub.id)
                    .expect("every listener has a counter");
                *n += 1;
                events.push(Event {
                    subscription_id: l.sub.id.clone(),
                    event_number: *n,
                    outbox_seq: p.seq,
                    resource_type: p.resource_type.clone(),
                    resource_id: p.resource_id.clone(),
                    version_id: p.version_id,
                    action: p.action.clone(),
                    occurred_at: p.created_at,
                    correlation_id: p.correlation_id.clone(),
                });
            }
        }
    }
    for chunk in events.chunks(500) {
        match conn {
            DbConnection::Pg(c) => {
                diesel::insert_into(subscription_events::table)
                    .values(chunk)
                    .execute(c)?;
            }
            DbConnection::Sqlite(c) => {
                for e in chunk {
                    diesel::insert_into(subscription_events::table)
                        .values(e)
                        .execute(c)?;
                }
            }
        }
    }
    for l in &listeners {
        let n = next[&l.sub.id];
        if n != l.sub.events_since_start {
            diesel::update(subscriptions::table.find(&l.sub.id))
                .set(subscriptions::events_since_start.eq(n))
                .execute(conn)?;
        }
    }
    let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
    diesel::update(outbox::table.filter(outbox::seq.eq_any(&seqs)))
        .set(outbox::dispatched_at.eq(now_micros()))
        .execute(conn)?;
    Ok(Dispatched {
        changes: pending.len(),
        events: events.len(),
    })
}

/// The versions before and after a change, as JSON.
fn versions_of(
    conn: &mut DbConnection,
    p: &Pending,
    action: Action,
) -> Result<(Option<Value>, Option<Value>), StoreError> {
    let mut read = |v: i64| -> Result<Option<Value>, StoreError> {
        if v < 1 {
            return Ok(None);
        }
        Ok(
            versions::version(conn, &p.resource_type, &p.resource_id, v)?
                .filter(|v| !v.deleted)
                .map(|v| v.json()),
        )
    };
    Ok(match action {
        Action::Create => (None, read(p.version_id)?),
        Action::Update => (read(p.version_id - 1)?, read(p.version_id)?),
        Action::Delete => (read(p.version_id - 1)?, None),
    })
}

/// The subscriber's filters for the change's type, and its authorization: a subscriber whose
/// token was confined to one patient hears of that patient's changes only.
fn passes(l: &Listener, change: &Change, id: &str) -> bool {
    let Some(focus) = change.current.or(change.previous) else {
        return false;
    };
    let filtered = l
        .filters
        .iter()
        .filter(|(t, _)| t == change.rtype)
        .all(|(_, clauses)| matches_all(focus, clauses));
    if !filtered {
        return false;
    }
    match l.grant.confinement(change.rtype) {
        Some(p) => in_compartment(&p, change.rtype, id, focus),
        None => true,
    }
}
