//! The transaction log: every HL7v2 message received and every message or notification sent
//! on, with its timestamps, source, target and disposition, searched by MRN, control id,
//! correlation id, patient and time. It is read from the tables the messages live in (the
//! HL7v2 archive, the targets' queues, the subscriptions' event lists), so a replayed or
//! retried message shows what became of it last, not a copy made at the time.
//!
//! One change travels under one correlation id from the message that brought it to every
//! target and subscriber that got it: a search that finds a received message also returns
//! where it went ("where did this lab result go?").

use crate::fhir::resource::instant;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::{
    hl7v2_messages as inbound, route_messages as outbound, search_token, subscription_events,
    subscriptions,
};
use diesel::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;

/// At most this many entries of each kind per search.
pub const MAX_LIMIT: i64 = 1000;

/// What to look for; every criterion given must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The patient's identifier as a sender wrote it (PID-3), or any identifier of a Patient.
    pub mrn: Option<String>,
    /// MSH-10 of a received message, or of one sent to a target (`ES{n}`).
    pub control_id: Option<String>,
    pub correlation_id: Option<String>,
    /// A Patient id.
    pub patient: Option<String>,
    /// Microseconds since the epoch: received or queued at or after `since`, before `until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// `in` (received) or `out` (sent); both when `None`.
    pub direction: Option<String>,
    /// A disposition (`applied`, `failed`, `sent`, `pending`, ...).
    pub disposition: Option<String>,
    pub limit: i64,
}

/// A search as a query string has it (`?mrn=...&control-id=...&since=2026-12-01`): the JSON
/// API and the dashboard read the same words.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Params {
    pub mrn: Option<String>,
    pub control_id: Option<String>,
    pub correlation_id: Option<String>,
    pub patient: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub direction: Option<String>,
    pub disposition: Option<String>,
    pub limit: Option<i64>,
}

impl Params {
    /// The search these words ask for; what is wrong with them, in words, else. Empty fields
    /// (a form's blanks) are no criterion.
    pub fn query(&self) -> Result<Query, String> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
            given(v)
                .map(|t| {
                    crate::fhir::resource::parse_instant(&t)
                        .ok_or_else(|| format!("{name} '{t}' is not a date or an instant"))
                })
                .transpose()
        };
        let direction = given(&self.direction);
        if direction
            .as_deref()
            .is_some_and(|d| d != "in" && d != "out")
        {
            return Err("direction is 'in' or 'out'".into());
        }
        Ok(Query {
            mrn: given(&self.mrn),
            control_id: given(&self.control_id),
            correlation_id: given(&self.correlation_id),
            patient: given(&self.patient).map(|p| p.trim_start_matches("Patient/").to_string()),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            direction,
            disposition: given(&self.disposition),
            limit: self.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
        })
    }
}

/// One message received or sent.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// `in` or `out`.
    pub direction: &'static str,
    /// `hl7v2` (received over MLLP), `target` (a route target's queue), `subscription`.
    pub channel: &'static str,
    /// The archive id (in), the queue position (target) or `{subscription}/{event}`.
    pub id: String,
    pub correlation_id: String,
    pub control_id: Option<String>,
    /// Who sent it: the sending application and facility, or `emrsync`.
    pub source: String,
    /// Who it was for: `emrsync`, a target's name, `Subscription/{id}`.
    pub target: String,
    /// `ADT^A01`, the outbound kind, or the changed resource.
    pub what: String,
    pub disposition: String,
    pub ack: Option<String>,
    pub error: Option<String>,
    pub error_location: Option<String>,
    pub mrn: Option<String>,
    pub patient: Option<String>,
    #[serde(skip)]
    pub at_micros: i64,
    /// Received (in) or queued (out).
    pub at: String,
    /// Processed (in) or acknowledged by the target (out), when it was.
    pub done_at: Option<String>,
}

type InRow = (
    (String, String, String, String, String),
    (String, String, i64, i64, String, String),
    (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
);

type OutRow = (
    (i64, String, String, String, Option<String>, String),
    (
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
);

/// Entries matching `q`, newest first, at most `q.limit` of each direction.
pub fn search(conn: &mut DbConnection, q: &Query) -> Result<Vec<Entry>, StoreError> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    // an MRN names the messages that carried it and the Patients that have it
    let patients: Option<Vec<String>> = match (&q.mrn, &q.patient) {
        (Some(mrn), patient) => {
            let mut ids = patients_with_identifier(conn, mrn)?;
            if let Some(p) = patient {
                ids.retain(|id| id == p);
            }
            Some(ids)
        }
        (None, Some(p)) => Some(vec![p.clone()]),
        (None, None) => None,
    };
    let mut out = Vec::new();
    let wants = |d: &str| q.direction.as_deref().is_none_or(|w| w == d);
    let mut traced: BTreeSet<String> = BTreeSet::new();
    if wants("in") {
        for e in received(conn, q, patients.as_deref(), limit)? {
            traced.insert(e.correlation_id.clone());
            out.push(e);
        }
    }
    if wants("out") {
        // what a received message found by its control id or MRN became, wherever it went
        let follow = q.control_id.is_some() || q.mrn.is_some();
        let traced: Vec<String> = if follow {
            traced.into_iter().collect()
        } else {
            Vec::new()
        };
        out.extend(sent(conn, q, patients.as_deref(), &traced, limit)?);
        if q.patient.is_none() && q.mrn.is_none() {
            out.extend(notified(conn, q, &traced, limit)?);
        }
    }
    out.sort_by(|a, b| b.at_micros.cmp(&a.at_micros).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Ids of the Patients with an identifier of this value (any system), at most 100.
fn patients_with_identifier(
    conn: &mut DbConnection,
    value: &str,
) -> Result<Vec<String>, StoreError> {
    use search_token::dsl as t;
    Ok(t::search_token
        .filter(t::resource_type.eq("Patient"))
        .filter(t::param.eq("identifier"))
        .filter(t::code.eq(value))
        .select(t::resource_id)
        .distinct()
        .limit(100)
        .load(conn)?)
}

fn received(
    conn: &mut DbConnection,
    q: &Query,
    patients: Option<&[String]>,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    use inbound::dsl as m;
    let mut query = m::hl7v2_messages.into_boxed();
    match (&q.mrn, patients) {
        (Some(mrn), Some(ids)) if q.patient.is_none() => {
            query = query.filter(m::mrn.eq(mrn.clone()).or(m::patient.eq_any(ids.to_vec())));
        }
        (Some(mrn), _) => {
            let p = q.patient.clone().unwrap_or_default();
            query = query.filter(m::mrn.eq(mrn.clone()).and(m::patient.eq(p)));
        }
        (None, Some(ids)) => query = query.filter(m::patient.eq_any(ids.to_vec())),
        (None, None) => {}
    }
    if let Some(c) = &q.control_id {
        query = query.filter(m::control_id.eq(c.clone()));
    }
    if let Some(c) = &q.correlation_id {
        query = query.filter(m::correlation_id.eq(c.clone()));
    }
    if let Some(t) = q.since {
        query = query.filter(m::received_at.ge(t));
    }
    if let Some(t) = q.until {
        query = query.filter(m::received_at.lt(t));
    }
    if let Some(d) = &q.disposition {
        query = query.filter(m::status.eq(d.clone()));
    }
    let rows: Vec<InRow> = query
        .order(m::received_at.desc())
        .limit(limit)
        .select((
            (
                m::id,
                m::correlation_id,
                m::control_id,
                m::sending_application,
                m::sending_facility,
            ),
            (
                m::message_type,
                m::trigger_event,
                m::received_at,
                m::processed_at,
                m::status,
                m::ack_code,
            ),
            (m::error, m::error_location, m::mrn, m::patient),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |((id, corr, control, app, facility), (ty, trig, at, done, st, ack), rest)| {
                let (error, error_location, mrn, patient) = rest;
                Entry {
                    direction: "in",
                    channel: "hl7v2",
                    id,
                    correlation_id: corr,
                    control_id: Some(control),
                    source: format!("{app}@{facility}"),
                    target: "emrsync".into(),
                    what: format!("{ty}^{trig}"),
                    disposition: st,
                    ack: Some(ack),
                    error,
                    error_location,
                    mrn,
                    patient,
                    at_micros: at,
                    at: instant(at),
                    done_at: Some(instant(done)),
                }
            },
        )
        .collect())
}

fn sent(
    conn: &mut DbConnection,
    q: &Query,
    patients: Option<&[String]>,
    traced: &[String],
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    use outbound::dsl as m;
    let mut query = m::route_messages.into_boxed();
    // a control id is either ours (`ES{seq}`) or a received message's, followed by correlation
    let ours = (q.control_id.as_deref())
        .and_then(|c| c.strip_prefix("ES"))
        .and_then(|n| n.parse::<i64>().ok());
    match (ours, traced.is_empty()) {
        (Some(seq), true) => query = query.filter(m::seq.eq(seq)),
        (Some(seq), false) => {
            query = query.filter(m::seq.eq(seq).or(m::correlation_id.eq_any(traced.to_vec())))
        }
        (None, false) => {
            let by_patient = patients.unwrap_or_default().to_vec();
            query = query.filter(
                m::correlation_id
                    .eq_any(traced.to_vec())
                    .or(m::patient.eq_any(by_patient)),
            );
        }
        (None, true) if q.control_id.is_some() => return Ok(Vec::new()),
        (None, true) => {
            if let Some(ids) = patients {
                query = query.filter(m::patient.eq_any(ids.to_vec()));
            }
        }
    }
    if let Some(c) = &q.correlation_id {
        query = query.filter(m::correlation_id.eq(c.clone()));
    }
    if let Some(t) = q.since {
        query = query.filter(m::created_at.ge(t));
    }
    if let Some(t) = q.until {
        query = query.filter(m::created_at.lt(t));
    }
    if let Some(d) = &q.disposition {
        query = query.filter(m::status.eq(d.clone()));
    }
    let rows: Vec<OutRow> = query
        .order(m::created_at.desc())
        .limit(limit)
        .select((
            (
                m::seq,
                m::target,
                m::correlation_id,
                m::focus,
                m::kind,
                m::status,
            ),
            (
                m::created_at,
                m::sent_at,
                m::ack_code,
                m::last_error,
                m::patient,
            ),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |((seq, target, corr, focus, kind, st), (at, sent_at, ack, error, patient))| Entry {
                direction: "out",
                channel: "target",
                id: seq.to_string(),
                correlation_id: corr,
                control_id: Some(format!("ES{seq}")),
                source: "emrsync".into(),
                target,
                what: kind.map(|k| format!("{k} {focus}")).unwrap_or(focus),
                disposition: st,
                ack,
                error,
                error_location: None,
                mrn: None,
                patient,
                at_micros: at,
                at: instant(at),
                done_at: sent_at.map(instant),
            },
        )
        .collect())
}

/// Subscription notifications of the changes traced (by correlation id, or a search given one):
/// delivered when the subscriber has acknowledged the event, else waiting (or failing).
fn notified(
    conn: &mut DbConnection,
    q: &Query,
    traced: &[String],
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    use subscription_events::dsl as e;
    use subscriptions::dsl as s;
    let mut ids: Vec<String> = traced.to_vec();
    ids.extend(q.correlation_id.clone());
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = e::subscription_events
        .inner_join(s::subscriptions.on(s::id.eq(e::subscription_id)))
        .filter(e::correlation_id.eq_any(ids))
        .into_boxed();
    if let Some(t) = q.since {
        query = query.filter(e::occurred_at.ge(t));
    }
    if let Some(t) = q.until {
        query = query.filter(e::occurred_at.lt(t));
    }
    type Row = (
        String,
        i64,
        String,
        String,
        i64,
        String,
        i64,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = query
        .order(e::occurred_at.desc())
        .limit(limit)
        .select((
            e::subscription_id,
            e::event_number,
            e::correlation_id,
            e::resource_type,
            e::occurred_at,
            e::resource_id,
            s::delivered_through,
            s::status,
            s::last_error,
        ))
        .load(conn)?;
    let mut out = Vec::new();
    for (sub, n, corr, rtype, at, rid, through, st, last_error) in rows {
        let (disposition, error) = if n <= through {
            ("delivered", None)
        } else if st == "error" {
            ("failing", last_error)
        } else {
            ("waiting", None)
        };
        if q.disposition.as_deref().is_some_and(|d| d != disposition) {
            continue;
        }
        out.push(Entry {
            direction: "out",
            channel: "subscription",
            id: format!("{sub}/{n}"),
            correlation_id: corr,
            control_id: None,
            source: "emrsync".into(),
            target: format!("Subscription/{sub}"),
            what: format!("{rtype}/{rid}"),
            disposition: disposition.into(),
            ack: None,
            error,
            error_location: None,
            mrn: None,
            patient: None,
            at_micros: at,
            at: instant(at),
            done_at: None,
        });
    }
    Ok(out)
}
