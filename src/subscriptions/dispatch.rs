//! From the outbox to each subscription's queue: every change not yet dispatched is tested
//! against every listening subscription's topic and filters, and each match becomes the
//! subscription's next numbered event, in the same transaction that marks the change done.
//! Several processes on one PostgreSQL dispatch one at a time (an advisory lock held by the
//! batch's transaction): two batches numbered at once could give a later change of a resource
//! a lower event number than an earlier one.

use super::registry::{self, Event};
use super::subscription::parsed_filters;
use super::topics::{self, Action, Change};
use crate::auth::Grant;
use crate::auth::access::in_compartment;
use crate::fhir::resource::now_micros;
use crate::fhir::search::index::{Entries, index_param};
use crate::fhir::search::matcher::matches_entries;
use crate::fhir::search::query::Clause;
use crate::store::db::DbConnection;
use crate::store::schema::{outbox, subscription_events, subscriptions};
use crate::store::{StoreError, versions};
use diesel::prelude::*;
use serde_json::Value;
use std::collections::HashMap;

/// The PostgreSQL advisory lock a dispatching transaction holds ("dispatch" in ASCII).
const LOCK: i64 = 0x6469_7370_6174_6368;

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
    id: String,
    /// Changes at or before this outbox position came before the subscription.
    starts_after: i64,
    topic: topics::Criteria,
    filters: Vec<(String, Vec<Clause>)>,
    grant: Grant,
}

/// Who else a Patient is (the master patient index's answer), for filters that name a Patient
/// through identity (`patient:mdm=Patient/123`): such a filter hears of every record of the
/// person.
pub trait SamePerson: Send + Sync {
    /// `patients` (Patient or golden record ids), each with every record of its person.
    fn records(
        &self,
        conn: &mut DbConnection,
        patients: &[String],
    ) -> Result<Vec<String>, StoreError>;
    /// A number that moves whenever any link changes.
    fn links_version(&self, conn: &mut DbConnection) -> Result<i64, StoreError>;
    /// When the oldest Patient written and not yet linked to its person was written (`None`:
    /// every Patient is linked). A change written at or after it may concern a record whose
    /// person is not known yet.
    fn oldest_unlinked(&self, conn: &mut DbConnection) -> Result<Option<i64>, StoreError>;
}

/// How long changes wait for the Patients written before them to be linked, while a filter
/// names a Patient through identity: the linker takes tens of milliseconds; one that is
/// failing must not hold every subscription back.
const LINK_WAIT_MICROS: i64 = 5_000_000;

/// The listening subscriptions, parsed once and kept while they do not change: each batch
/// asks only for a fingerprint of the registry (a cheap aggregate), and reloads when it moved;
/// and, while a filter names a Patient through identity, when a link changed.
#[derive(Default)]
pub struct Listeners {
    fingerprint: Option<(i64, String)>,
    listeners: Vec<Listener>,
    persons: Option<std::sync::Arc<dyn SamePerson>>,
    /// The links' version the filters were expanded at, while some filter needs it.
    links_seen: Option<i64>,
}

impl Listeners {
    /// Listeners whose filters through identity ask `persons` who else a Patient is (without,
    /// such a filter hears of the Patient it names alone).
    pub fn with_persons(persons: std::sync::Arc<dyn SamePerson>) -> Listeners {
        Listeners {
            persons: Some(persons),
            ..Listeners::default()
        }
    }

    fn listeners(&mut self, conn: &mut DbConnection) -> Result<&[Listener], StoreError> {
        let now = registry::fingerprint(conn)?;
        let links_now = match (&self.persons, self.links_seen) {
            (Some(p), Some(_)) => Some(p.links_version(conn)?),
            _ => None,
        };
        if self.fingerprint.as_ref() != Some(&now) || links_now != self.links_seen {
            let mut through_identity = false;
            let mut listeners = Vec::new();
            for sub in registry::listening(conn)? {
                let Ok(topic) = topics::resolve(&sub.topic) else {
                    continue;
                };
                let mut filters = parsed_filters(&sub.filters());
                if let Some(persons) = &self.persons {
                    for clause in filters.iter_mut().flat_map(|(_, c)| c.iter_mut()) {
                        if clause.through_identity {
                            through_identity = true;
                            let records = persons.records(conn, &clause.patients_named())?;
                            *clause = clause.naming_patients(&records);
                        }
                    }
                }
                let grant = Grant::stored(&sub.actor, &sub.scope, sub.patient.clone());
                listeners.push(Listener {
                    starts_after: sub.starts_after,
                    id: sub.id,
                    topic,
                    filters,
                    grant,
                });
            }
            self.listeners = listeners;
            self.links_seen = match (&self.persons, through_identity) {
                (Some(p), true) => Some(links_now.map_or_else(|| p.links_version(conn), Ok)?),
                _ => None,
            };
            self.fingerprint = Some(now);
        }
        Ok(&self.listeners)
    }
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
pub fn dispatch_batch(
    conn: &mut DbConnection,
    cache: &mut Listeners,
    limit: i64,
) -> Result<Dispatched, StoreError> {
    let plan = plan(conn, cache, limit)?;
    apply(conn, plan)
}

/// What a batch takes and writes: the changes dispatched, and the subscription each event
/// goes to, in commit order.
pub struct Plan {
    seqs: Vec<i64>,
    matched: Vec<(String, Pending)>,
}

/// Read up to `limit` pending changes and match them (reads only; on PostgreSQL, inside the
/// caller's transaction, which waits here for any other process's batch to commit). SQLite runs
/// this on a reader so that the one writer only does `apply`'s few statements.
pub fn plan(
    conn: &mut DbConnection,
    cache: &mut Listeners,
    limit: i64,
) -> Result<Plan, StoreError> {
    if let DbConnection::Pg(c) = conn {
        // waited for, not tried: the batch is short, and the changes this process was woken
        // for are dispatched as soon as the other's batch is done
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({LOCK})")).execute(c)?;
    }
    let pending: Vec<Pending> = outbox::table
        .filter(outbox::dispatched_at.is_null())
        .order(outbox::seq.asc())
        .limit(limit)
        .select(Pending::as_select())
        .load(conn)?;
    if pending.is_empty() {
        return Ok(Plan {
            seqs: Vec::new(),
            matched: Vec::new(),
        });
    }
    let through_identity = {
        cache.listeners(conn)?;
        cache.links_seen.is_some()
    };
    // a filter through identity hears of a record once it is linked to its person: changes
    // written since the oldest Patient not yet linked wait for the linker (a few batches of
    // this loop), in order, unless it is stuck
    let pending = match (through_identity, &cache.persons) {
        (true, Some(persons)) => match persons.oldest_unlinked(conn)? {
            Some(at) if now_micros() - at < LINK_WAIT_MICROS => {
                let before = pending.iter().take_while(|p| p.created_at < at).count();
                &pending[..before]
            }
            _ => &pending[..],
        },
        _ => &pending[..],
    };
    if pending.is_empty() {
        return Ok(Plan {
            seqs: Vec::new(),
            matched: Vec::new(),
        });
    }
    let listeners = cache.listeners(conn)?;
    // the changes some listener covers, with the versions their topics need
    let mut considered: Vec<(&Pending, Action, Vec<usize>, bool)> = Vec::new();
    for p in pending {
        // a subscription's own changes (its creation, its status) are not events of any
        // topic: a subscriber would otherwise hear of itself going active
        if p.resource_type == "Subscription" {
            continue;
        }
        let Some(action) = Action::parse(&p.action) else {
            continue;
        };
        let interested: Vec<usize> = (0..listeners.len())
            .filter(|&i| p.seq > listeners[i].starts_after)
            .filter(|&i| listeners[i].topic.covers(&p.resource_type))
            .collect();
        if interested.is_empty() {
            continue;
        }
        let needs_previous = interested
            .iter()
            .any(|&i| listeners[i].topic.needs_previous(&p.resource_type));
        considered.push((p, action, interested, needs_previous));
    }
    let read = VersionsRead::load(conn, &considered)?;
    // which listeners each change fires, in commit order
    let mut matched: Vec<(usize, &Pending)> = Vec::new();
    for (p, action, interested, needs_previous) in considered {
        let (previous, current) = read.of(p, action, needs_previous);
        let change = Change {
            rtype: &p.resource_type,
            action,
            previous,
            current,
        };
        // each filter parameter's values are computed once per change, whatever the number
        // of subscriptions filtering by it
        let mut entries: HashMap<&str, Entries> = HashMap::new();
        for i in interested {
            let l = &listeners[i];
            if l.topic.fires(&change) && passes(l, &change, &p.resource_id, &mut entries) {
                matched.push((i, p));
            }
        }
    }
    Ok(Plan {
        seqs: pending.iter().map(|p| p.seq).collect(),
        matched: matched
            .into_iter()
            .map(|(i, p)| (listeners[i].id.clone(), p.clone()))
            .collect(),
    })
}

/// Write a plan: number its events, queue them, and mark its changes dispatched.
pub fn apply(conn: &mut DbConnection, plan: Plan) -> Result<Dispatched, StoreError> {
    if plan.seqs.is_empty() {
        return Ok(Dispatched::default());
    }
    let matched = &plan.matched;
    // each subscription's numbers, taken atomically: concurrent dispatchers (other processes
    // on PostgreSQL) never hand out the same number twice. One statement per distinct count
    // (most often one), not one per subscription: a change fanned out to 1,000 subscribers
    // is numbered in a round trip or two.
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for (id, _) in matched {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let mut by_count: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
    for (id, k) in &counts {
        by_count.entry(*k).or_default().push(id);
    }
    if let DbConnection::Pg(c) = conn
        && !counts.is_empty()
    {
        // locked in id order first: two dispatchers (or a dispatcher and a deliverer) locking
        // the same subscriptions in different orders would deadlock
        let ids: Vec<&str> = counts.keys().copied().collect();
        let _: Vec<String> = subscriptions::table
            .filter(subscriptions::id.eq_any(&ids))
            .order(subscriptions::id)
            .select(subscriptions::id)
            .for_update()
            .load(c)?;
    }
    let mut next: HashMap<String, i64> = HashMap::new();
    for (k, ids) in by_count {
        let ends: Vec<(String, i64)> =
            diesel::update(subscriptions::table.filter(subscriptions::id.eq_any(&ids)))
                .set(subscriptions::events_since_start.eq(subscriptions::events_since_start + k))
                .returning((subscriptions::id, subscriptions::events_since_start))
                .get_results(conn)?;
        next.extend(ends.into_iter().map(|(id, end)| (id, end - k)));
    }
    // a subscription deleted since the plan was made gets nothing
    let events: Vec<Event> = matched
        .iter()
        .filter_map(|(id, p)| {
            let n = next.get_mut(id.as_str())?;
            *n += 1;
            Some(Event {
                subscription_id: id.clone(),
                event_number: *n,
                outbox_seq: p.seq,
                resource_type: p.resource_type.clone(),
                resource_id: p.resource_id.clone(),
                version_id: p.version_id,
                action: p.action.clone(),
                occurred_at: p.created_at,
                correlation_id: p.correlation_id.clone(),
            })
        })
        .collect();
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
    diesel::update(outbox::table.filter(outbox::seq.eq_any(&plan.seqs)))
        .set(outbox::dispatched_at.eq(now_micros()))
        .execute(conn)?;
    Ok(Dispatched {
        changes: plan.seqs.len(),
        events: events.len(),
    })
}

/// The versions a batch of changes needs, read in one query: for each change its new version
/// (none for a delete) and, when a topic compares, the one before.
struct VersionsRead(HashMap<(String, String, i64), Value>);

impl VersionsRead {
    fn load(
        conn: &mut DbConnection,
        changes: &[(&Pending, Action, Vec<usize>, bool)],
    ) -> Result<VersionsRead, StoreError> {
        let mut keys: Vec<(&str, &str, i64)> = Vec::new();
        for (p, action, _, needs_previous) in changes {
            let (t, id, v) = (
                p.resource_type.as_str(),
                p.resource_id.as_str(),
                p.version_id,
            );
            if *action != Action::Delete {
                keys.push((t, id, v));
            }
            if (*action == Action::Delete || *needs_previous) && v > 1 {
                keys.push((t, id, v - 1));
            }
        }
        let found = versions::versions(conn, &keys)?;
        Ok(VersionsRead(
            found
                .into_iter()
                .filter(|v| !v.deleted)
                .map(|v| {
                    (
                        (v.resource_type.clone(), v.id.clone(), v.version_id),
                        v.json(),
                    )
                })
                .collect(),
        ))
    }

    /// (previous, current) of one change.
    fn of(
        &self,
        p: &Pending,
        action: Action,
        needs_previous: bool,
    ) -> (Option<&Value>, Option<&Value>) {
        let take = |v: i64| {
            self.0
                .get(&(p.resource_type.clone(), p.resource_id.clone(), v))
        };
        match action {
            Action::Create => (None, take(p.version_id)),
            Action::Update if needs_previous => (take(p.version_id - 1), take(p.version_id)),
            Action::Update => (None, take(p.version_id)),
            Action::Delete => (take(p.version_id - 1), None),
        }
    }
}

/// The subscriber's filters for the change's type, and its authorization: a subscriber whose
/// token was confined to one patient hears of that patient's changes only.
fn passes(
    l: &Listener,
    change: &Change,
    id: &str,
    entries: &mut HashMap<&'static str, Entries>,
) -> bool {
    let Some(focus) = change.current.or(change.previous) else {
        return false;
    };
    if !filters_pass(&l.filters, change, entries) {
        return false;
    }
    match l.grant.confinement(change.rtype) {
        Some(p) => in_compartment(&p, change.rtype, id, focus),
        None => true,
    }
}

/// Whether `change` passes `filters` (those of its type; each filter's clauses all hold).
/// `entries` keeps each parameter's values of the change, computed once for all who filter.
pub fn filters_pass(
    filters: &[(String, Vec<Clause>)],
    change: &Change,
    entries: &mut HashMap<&'static str, Entries>,
) -> bool {
    let Some(focus) = change.current.or(change.previous) else {
        return false;
    };
    filters
        .iter()
        .filter(|(t, _)| t == change.rtype)
        .all(|(_, clauses)| {
            clauses.iter().all(|c| {
                let e = entries
                    .entry(c.param.code.as_str())
                    .or_insert_with(|| index_param(focus, c.param));
                matches_entries(e, c)
            })
        })
}
