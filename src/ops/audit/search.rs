//! `GET /fhir/AuditEvent?...`: the audit trail searched by the parameters an auditor uses
//! (`patient`, `agent`, `entity`, `date`, `type`, `subtype`, `outcome`, `action`, `address`),
//! newest first (`_sort=-date`, the one order), a page at a time (`_count`, and a cursor in
//! the `next` link). The blocks that may hold a match are found by their postings (`patient`,
//! `agent` — the whole name, or the user or the client within it —, `entity`, `type`,
//! `subtype`, `outcome`) and time span (`date`), and their entries checked against every
//! parameter; an unknown parameter is refused, never ignored.

use super::event::action_code;
use crate::fhir::search::date::DateRange;
use crate::store::StoreError;
use crate::store::audit::{Entry, Row, actor_parts, block, kind, named_term, term_of};
use crate::store::db::DbConnection;
use crate::store::schema::{audit_blocks as b, audit_postings as p};
use diesel::prelude::*;

/// The search parameters the trail answers (the capability statement names these).
pub const PARAMS: [&str; 9] = [
    "patient", "agent", "entity", "date", "type", "subtype", "outcome", "action", "address",
];

type Blocks<'a> = b::BoxedQuery<'a, crate::store::db::MultiBackend>;

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
    /// C, R, U, D or E (`event::action_code`).
    actions: Vec<&'static str>,
    /// The agent's network address.
    addresses: Vec<String>,
    pub count: i64,
    /// Only entries before this one, `(block, place)` (the next page's cursor).
    cursor: Option<(i64, usize)>,
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
                "action" => {
                    for v in values() {
                        s.actions.push(match code(v) {
                            "C" => "C",
                            "R" => "R",
                            "U" => "U",
                            "D" => "D",
                            "E" => "E",
                            other => return Err(format!("action '{other}': C, R, U, D or E")),
                        });
                    }
                }
                "address" => s.addresses.extend(values().map(str::to_string)),
                // the trail's one order: newest first
                "_sort" if value == "-date" => {}
                "_sort" => {
                    return Err(format!(
                        "_sort '{value}': the trail is given newest first only (_sort=-date)"
                    ));
                }
                "_count" => {
                    s.count = value
                        .parse::<i64>()
                        .map_err(|_| format!("_count '{value}' is not a number"))?
                        .clamp(1, MAX_COUNT)
                }
                "_before" => {
                    s.cursor = Some(
                        value
                            .split_once('-')
                            .and_then(|(b, n)| Some((b.parse().ok()?, n.parse().ok()?)))
                            .ok_or("_before: an AuditEvent id (block-place)".to_string())?,
                    )
                }
                "_format" | "_pretty" => {}
                other => {
                    return Err(format!(
                        "AuditEvent search parameter '{other}' is not supported here (patient, agent, entity, date, type, subtype, outcome, action, address, _count, _sort=-date)"
                    ));
                }
            }
        }
        Ok(s)
    }

    /// The terms a matching block must have posted: one of each group.
    fn term_groups(&self) -> Vec<Vec<i64>> {
        let mut groups = Vec::new();
        let mut group = |terms: Vec<i64>| {
            if !terms.is_empty() {
                groups.push(terms)
            }
        };
        // a write's entries name the Patient they changed as their entity: the same term
        group(self.patient.iter().map(|p| term_of(p)).collect());
        for (t, id) in &self.entity {
            group(vec![term_of(&format!("{t}/{id}"))]);
        }
        let named = |name: &str, values: &[&str]| -> Vec<i64> {
            values.iter().map(|v| named_term(name, v)).collect()
        };
        let agents: Vec<&str> = self.agent.iter().map(String::as_str).collect();
        group(named("agent", &agents));
        group(named("type", &self.kinds));
        let subtypes: Vec<&str> = self.subtypes.iter().map(String::as_str).collect();
        group(named("subtype", &subtypes));
        group(named("outcome", &self.outcomes));
        groups
    }

    /// Whether `e` matches every parameter (what the postings found may not: keys collide,
    /// and a block holds other entries).
    fn matches(&self, e: &Entry) -> bool {
        let patient_ok = self.patient.is_empty()
            || e.patient.as_ref().is_some_and(|p| self.patient.contains(p))
            || (e.resource_type.as_deref() == Some("Patient")
                && e.resource_id.as_ref().is_some_and(|id| {
                    self.patient
                        .iter()
                        .any(|p| p.strip_prefix("Patient/") == Some(id))
                }));
        let entity_ok = self.entity.iter().all(|(t, id)| {
            e.resource_type.as_ref() == Some(t) && e.resource_id.as_ref() == Some(id)
        });
        patient_ok
            && entity_ok
            && (self.agent.is_empty()
                || std::iter::once(e.actor.as_str())
                    .chain(actor_parts(&e.actor))
                    .any(|a| self.agent.iter().any(|w| w == a)))
            && (self.actions.is_empty() || self.actions.contains(&action_code(e)))
            && (self.addresses.is_empty()
                || e.address
                    .as_ref()
                    .is_some_and(|a| self.addresses.contains(a)))
            && self.after.iter().all(|low| e.recorded_at >= *low)
            && self.before.iter().all(|high| e.recorded_at <= *high)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind.as_str()))
            && (self.subtypes.is_empty() || self.subtypes.contains(&e.action))
            && (self.outcomes.is_empty() || self.outcomes.contains(&e.outcome.as_str()))
    }

    /// One page, newest first (blocks by seq, a block's entries last to first), and whether
    /// there is more.
    pub fn run(&self, conn: &mut DbConnection) -> Result<(Vec<Row>, bool), StoreError> {
        let want = self.count as usize + 1;
        let groups = self.term_groups();
        let (mut below, mut place) = self.cursor.unwrap_or((i64::MAX, usize::MAX));
        // blocks not posted yet are candidates whatever their terms; read before the postings
        // (a block posted in between is then found twice, never missed)
        let unposted: Vec<i64> = match groups.is_empty() {
            true => Vec::new(),
            false => self
                .in_time(b::table.filter(diesel::dsl::not(b::posted)).into_boxed())
                .filter(b::seq.le(below))
                .select(b::seq)
                .load(conn)?,
        };
        let mut rows = Vec::new();
        'blocks: loop {
            let mut q = self.in_time(b::table.filter(b::seq.le(below)).into_boxed());
            for g in &groups {
                let posted = p::table.filter(p::term.eq_any(g.clone())).select(p::block);
                q = q.filter(b::seq.eq_any(posted));
            }
            let mut seqs: Vec<i64> = q.select(b::seq).order(b::seq.desc()).limit(16).load(conn)?;
            seqs.extend(unposted.iter().filter(|s| **s <= below));
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.dedup();
            seqs.truncate(16);
            if seqs.is_empty() {
                break;
            }
            let blocks: Vec<block::Loaded> = b::table
                .filter(b::seq.eq_any(&seqs))
                .order(b::seq.desc())
                .select(block::loaded())
                .load(conn)?;
            for loaded in blocks {
                let seq = loaded.0;
                let entries = block::rows(loaded);
                let until = if seq == below { place } else { usize::MAX };
                for r in entries.into_iter().take(until).rev() {
                    if self.matches(&r.entry) {
                        rows.push(r);
                        if rows.len() == want {
                            break 'blocks;
                        }
                    }
                }
                (below, place) = (seq - 1, usize::MAX);
            }
        }
        let more = rows.len() == want;
        rows.truncate(self.count as usize);
        Ok((rows, more))
    }

    /// `q` narrowed to the blocks whose time span meets the `date` bounds.
    fn in_time<'a>(&self, mut q: Blocks<'a>) -> Blocks<'a> {
        for low in &self.after {
            q = q.filter(b::last_at.ge(*low));
        }
        for high in &self.before {
            q = q.filter(b::first_at.le(*high));
        }
        q
    }

    /// One entry by its id (`<block>-<place>`).
    pub fn one(conn: &mut DbConnection, id: &str) -> Result<Option<Row>, StoreError> {
        block::one(conn, id)
    }
}
