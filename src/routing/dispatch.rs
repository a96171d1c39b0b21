//! From the outbox to each target's queue. The changes of one write (one correlation id) that
//! concern one patient travel together: an HL7v2 admission's Patient and Encounter become one
//! ADT message, not two. Each such group is tested against every enabled target's events; a
//! target that hears it gets one queued message, in commit order, unless the group came from
//! the target itself (echo suppression). The outbox rows are marked routed in the same
//! transaction. On PostgreSQL one process routes at a time (an advisory lock), so a target's
//! queue is in commit order whatever the number of processes.

use super::config::{Routes, Target};
use crate::fhir::resource::{is_golden_record, now_micros};
use crate::fhir::search::index::Entries;
use crate::fhir::search::query::Clause;
use crate::store::db::DbConnection;
use crate::store::schema::{outbox, route_messages};
use crate::store::{StoreError, versions};
use crate::subscriptions::dispatch::filters_pass;
use crate::subscriptions::subscription::parsed_filters;
use crate::subscriptions::topics::{self, Action, Change};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The PostgreSQL advisory lock the router holds while it routes ("routing" in ASCII).
const LOCK: i64 = 0x0072_6f75_7469_6e67;

/// One change as a queued message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    #[serde(rename = "type")]
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub action: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
struct Pending {
    seq: i64,
    resource_type: String,
    resource_id: String,
    version_id: i64,
    action: String,
    correlation_id: String,
    origin: String,
}

/// Filters parsed for matching: per filter its type and clauses.
type Filters = Vec<(String, Vec<Clause>)>;

/// A target's events, parsed for matching.
struct Listening {
    name: String,
    origins: Vec<String>,
    events: Vec<(topics::Criteria, Filters)>,
}

/// The changes of one write that concern one patient (`None`: no patient), in commit order.
type Group<'a> = ((&'a str, Option<String>), Vec<&'a Pending>);

/// The routes in force, parsed once per configuration version.
#[derive(Default)]
pub struct Compiled {
    version: i64,
    targets: Vec<Listening>,
}

impl Compiled {
    pub fn new(version: i64, routes: &Routes) -> Compiled {
        let targets = routes
            .targets
            .iter()
            .filter(|t| t.enabled)
            .map(|t: &Target| Listening {
                name: t.name.clone(),
                origins: t.origins.clone(),
                events: t
                    .events
                    .iter()
                    // checked when recorded: an event that no longer resolves hears nothing
                    .filter_map(|e| {
                        Some((
                            topics::resolve(&e.criteria).ok()?,
                            parsed_filters(&e.filters),
                        ))
                    })
                    .collect(),
            })
            .collect();
        Compiled { version, targets }
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// The names of the targets that listen.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }
}

/// Route up to `limit` changes, oldest first, in one write transaction: returns how many
/// changes were taken and how many messages queued.
pub fn route_batch(
    conn: &mut DbConnection,
    routes: &Compiled,
    limit: i64,
) -> Result<(usize, usize), StoreError> {
    if let DbConnection::Pg(c) = conn {
        let got: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "pg_try_advisory_xact_lock({LOCK})"
        )))
        .get_result(c)?;
        if !got {
            return Ok((0, 0));
        }
    }
    let mut pending: Vec<Pending> = outbox::table
        .filter(outbox::routed_at.is_null())
        .order(outbox::seq.asc())
        .limit(limit)
        .select(Pending::as_select())
        .load(conn)?;
    if pending.is_empty() {
        return Ok((0, 0));
    }
    // a full batch may end inside a write: its last changes wait for the next batch, whole
    if pending.len() as i64 == limit
        && let Some(last) = pending.last().map(|p| p.correlation_id.clone())
    {
        let keep = pending.iter().rposition(|p| p.correlation_id != last);
        if let Some(k) = keep {
            pending.truncate(k + 1);
        }
    }
    let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
    let queued = match routes.targets.is_empty() {
        true => 0,
        false => queue(conn, routes, &pending)?,
    };
    diesel::update(outbox::table.filter(outbox::seq.eq_any(&seqs)))
        .set(outbox::routed_at.eq(now_micros()))
        .execute(conn)?;
    Ok((seqs.len(), queued))
}

/// Group `pending` by write and patient, match each group against the targets, and queue.
fn queue(
    conn: &mut DbConnection,
    routes: &Compiled,
    pending: &[Pending],
) -> Result<usize, StoreError> {
    let considered: Vec<&Pending> = pending
        .iter()
        .filter(|p| !matches!(p.resource_type.as_str(), "Subscription" | "Basic"))
        .collect();
    let mut keys: Vec<(&str, &str, i64)> = Vec::new();
    for p in &considered {
        keys.push((&p.resource_type, &p.resource_id, p.version_id));
        if p.version_id > 1 {
            keys.push((&p.resource_type, &p.resource_id, p.version_id - 1));
        }
    }
    let read: HashMap<(String, String, i64), Value> = versions::versions(conn, &keys)?
        .into_iter()
        .filter(|v| !v.deleted)
        .map(|v| {
            (
                (v.resource_type.clone(), v.id.clone(), v.version_id),
                v.json(),
            )
        })
        .collect();
    let take = |p: &Pending, v: i64| read.get(&(p.resource_type.clone(), p.resource_id.clone(), v));
    // the MPI's golden records are emrsync's own view of a person, not a record any target
    // keeps: targets hear of the sources' records
    let considered: Vec<&Pending> = considered
        .into_iter()
        .filter(|p| {
            take(p, p.version_id)
                .or_else(|| take(p, p.version_id - 1))
                .is_none_or(|r| !is_golden_record(r))
        })
        .collect();
    // groups in the order of their first change: (correlation, patient) -> changes
    let mut groups: Vec<Group> = Vec::new();
    for p in &considered {
        let focus = take(p, p.version_id).or_else(|| take(p, p.version_id - 1));
        let key = (
            p.correlation_id.as_str(),
            focus.and_then(|f| patient_of(&p.resource_type, &p.resource_id, f)),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    let now = now_micros();
    let mut rows = Vec::new();
    for ((correlation, patient), group) in &groups {
        for target in &routes.targets {
            // echo suppression: what the target wrote is not sent back to it
            if group
                .iter()
                .all(|p| target.origins.iter().any(|o| is_origin(o, &p.origin)))
            {
                continue;
            }
            let mut entries: HashMap<&'static str, Entries> = HashMap::new();
            let fired = group.iter().find(|p| {
                let Some(action) = Action::parse(&p.action) else {
                    return false;
                };
                let change = Change {
                    rtype: &p.resource_type,
                    action,
                    previous: match action {
                        Action::Create => None,
                        _ => take(p, p.version_id - 1),
                    },
                    current: take(p, p.version_id),
                };
                entries.clear();
                target.events.iter().any(|(topic, filters)| {
                    topic.covers(&p.resource_type)
                        && topic.fires(&change)
                        && filters_pass(filters, &change, &mut entries)
                })
            });
            let Some(first) = fired else {
                continue;
            };
            let changes: Vec<Changed> = group
                .iter()
                .map(|p| Changed {
                    rtype: p.resource_type.clone(),
                    id: p.resource_id.clone(),
                    version: p.version_id,
                    action: p.action.clone(),
                })
                .collect();
            rows.push((
                route_messages::target.eq(target.name.clone()),
                route_messages::outbox_seq.eq(first.seq),
                route_messages::correlation_id.eq(correlation.to_string()),
                route_messages::focus.eq(format!(
                    "{}/{}/_history/{}",
                    first.resource_type, first.resource_id, first.version_id
                )),
                route_messages::changes.eq(serde_json::to_string(&changes).unwrap_or_default()),
                route_messages::patient.eq(patient.clone()),
                route_messages::status.eq(super::queue::status::PENDING),
                route_messages::attempts.eq(0),
                route_messages::next_attempt_at.eq(0i64),
                route_messages::created_at.eq(now),
            ));
        }
    }
    let n = rows.len();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(500).collect();
        crate::store::insert_all!(conn, route_messages::table, chunk)?;
    }
    Ok(n)
}

/// Whether a change written by `writer` (the audit trail's name: `hl7v2 APP@FACILITY`,
/// `client X`, `Practitioner/1 via client X`) came from the system named `origin`: the same
/// name, or a user writing through that client.
fn is_origin(origin: &str, writer: &str) -> bool {
    writer == origin
        || writer
            .strip_suffix(origin)
            .is_some_and(|user| user.ends_with(" via ") && origin.starts_with("client "))
}

pub use crate::fhir::resource::patient_of;

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn a_target_is_known_by_its_writes_and_its_users_writes() {
        assert!(is_origin("hl7v2 LEGACY@GH", "hl7v2 LEGACY@GH"));
        assert!(is_origin("client emr", "client emr"));
        assert!(is_origin("client emr", "Practitioner/1 via client emr"));
        assert!(!is_origin("client emr", "Practitioner/1 via client emr2"));
        assert!(!is_origin("client emr", "client emr2"));
        assert!(!is_origin("hl7v2 LEGACY@GH", "hl7v2 OTHER hl7v2 LEGACY@GH"));
    }
}
