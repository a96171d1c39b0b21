//! `GET /fhir/AuditEvent?...`: the audit trail searched by the parameters an auditor uses
//! (`patient`, `agent`, `entity`, `date`, `type`, `subtype`, `outcome`), newest first, a page
//! at a time (`_count`, and a cursor in the `next` link). Each parameter runs on an index of
//! `audit_events`; an unknown parameter is refused, never ignored.

use crate::fhir::search::date::DateRange;
use crate::store::StoreError;
use crate::store::audit::{Row, key_of, kind};
use crate::store::db::DbConnection;
use crate::store::schema::audit_events as a;
use diesel::prelude::*;

/// The default and largest page.
const DEFAULT_COUNT: i64 = 50;
const MAX_COUNT: i64 = 1_000;

/// A parsed search.
#[derive(Debug, Default)]
pub struct Search {
    patient: Vec<String>,
    agent: Vec<String>,
    entity: Vec<(String, String)>,
    /// (low, high) bounds, microseconds, each inclusive.
    after: Vec<i64>,
    before: Vec<i64>,
    kinds: Vec<&'static str>,
    subtypes: Vec<String>,
    outcomes: Vec<&'static str>,
    pub count: i64,
    /// Only rows older than this one (the next page's cursor).
    cursor: Option<i64>,
}

/// `name|code` or `code`: the code.
fn code(v: &str) -> &str {
    v.rsplit('|').next().unwrap_or(v)
}

impl Search {
    /// Read `params`; the reason when one cannot be used.
    pub fn parse(params: &[(String, String)]) -> Result<Search, String> {
        let mut s = Search {
            count: DEFAULT_COUNT,
            ..Search::default()
        };
        for (name, value) in params {
            let values = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
            match name.as_str() {
                "patient" => s.patient.extend(values().map(|v| match v.contains('/') {
                    true => v.to_string(),
                    false => format!("Patient/{v}"),
                })),
                "agent" => s.agent.extend(values().map(|v| code(v).to_string())),
                "entity" => {
                    for v in values() {
                        let (t, id) = v
                            .split_once('/')
                            .ok_or(format!("entity '{v}': a reference Type/id"))?;
                        let id = id.split('/').next().unwrap_or(id);
                        s.entity.push((t.to_string(), id.to_string()));
                    }
                }
                "date" => {
                    let (prefix, text) = match value.get(..2) {
                        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                        _ => ("eq", value.as_str()),
                    };
                    let r = DateRange::parse(text)
                        .ok_or(format!("date '{value}': a FHIR date or dateTime"))?;
                    match prefix {
                        "ge" => s.after.push(r.low),
                        "gt" => s.after.push(r.high + 1),
                        "le" => s.before.push(r.high),
                        "lt" => s.before.push(r.low - 1),
                        _ => {
                            s.after.push(r.low);
                            s.before.push(r.high);
                        }
                    }
                }
                "type" => {
                    for v in values() {
                        let k = match code(v) {
                            "rest" => kind::REST,
                            "110114" => kind::LOGIN,
                            "110107" => kind::MESSAGE,
                            "110106" => kind::DELIVERY,
                            other => {
                                return Err(format!(
                                    "type '{other}': rest, 110114 (login), 110107 (HL7v2 message), 110106 (delivery)"
                                ));
                            }
                        };
                        s.kinds.push(k);
                    }
                }
                "subtype" => s.subtypes.extend(values().map(|v| code(v).to_string())),
                "outcome" => {
                    for v in values() {
                        s.outcomes.push(match code(v) {
                            "0" => "success",
                            "4" => "failure",
                            "8" | "12" => "error",
                            other => return Err(format!("outcome '{other}': 0, 4, 8 or 12")),
                        });
                    }
                }
                "_count" => {
                    s.count = value
                        .parse::<i64>()
                        .map_err(|_| format!("_count '{value}' is not a number"))?
                        .clamp(1, MAX_COUNT)
                }
                "_before" => {
                    s.cursor = Some(value.parse().map_err(|_| "_before: a number".to_string())?)
                }
                "_format" | "_pretty" => {}
                other => {
                    return Err(format!(
                        "AuditEvent search parameter '{other}' is not supported here (patient, agent, entity, date, type, subtype, outcome, _count)"
                    ));
                }
            }
        }
        Ok(s)
    }

    /// One page, newest first, and whether there is more.
    pub fn run(&self, conn: &mut DbConnection) -> Result<(Vec<Row>, bool), StoreError> {
        let mut q = a::table.into_boxed();
        if !self.patient.is_empty() {
            // a write's rows name the Patient they changed as their entity
            let ids: Vec<&str> = self
                .patient
                .iter()
                .filter_map(|p| p.strip_prefix("Patient/"))
                .collect();
            // by the references' keys (indexed), then the references themselves
            let keys: Vec<i64> = self.patient.iter().map(|p| key_of(p)).collect();
            q = q.filter(
                (a::patient_key
                    .eq_any(keys.clone())
                    .and(a::patient.eq_any(&self.patient)))
                .or(a::entity_key.eq_any(keys).and(
                    a::resource_type
                        .eq("Patient")
                        .and(a::resource_id.eq_any(ids)),
                )),
            );
        }
        if !self.agent.is_empty() {
            q = q.filter(a::actor.eq_any(&self.agent));
        }
        for (t, id) in &self.entity {
            let reference = format!("{t}/{id}");
            let key = key_of(&reference);
            let named = a::resource_type.eq(t).and(a::resource_id.eq(id));
            // a row whose entity is its patient is keyed by the patient only (`audit::keys`)
            q = q.filter(
                a::entity_key.eq(key).and(named).or(a::patient_key
                    .eq(key)
                    .and(a::patient.eq(reference))
                    .and(named)),
            );
        }
        for low in &self.after {
            q = q.filter(a::recorded_at.ge(*low));
        }
        for high in &self.before {
            q = q.filter(a::recorded_at.le(*high));
        }
        if !self.kinds.is_empty() {
            q = q.filter(a::kind.eq_any(&self.kinds));
        }
        if !self.subtypes.is_empty() {
            q = q.filter(a::action.eq_any(&self.subtypes));
        }
        if !self.outcomes.is_empty() {
            q = q.filter(a::outcome.eq_any(&self.outcomes));
        }
        if let Some(c) = self.cursor {
            q = q.filter(a::seq.lt(c));
        }
        let mut rows: Vec<Row> = q
            .order(a::seq.desc())
            .limit(self.count + 1)
            .select(Row::as_select())
            .load(conn)?;
        let more = rows.len() as i64 > self.count;
        rows.truncate(self.count as usize);
        Ok((rows, more))
    }

    /// One row by its id (its `seq`).
    pub fn one(conn: &mut DbConnection, id: &str) -> Result<Option<Row>, StoreError> {
        let Ok(seq) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(a::table
            .find(seq)
            .select(Row::as_select())
            .get_result(conn)
            .optional()?)
    }
}
