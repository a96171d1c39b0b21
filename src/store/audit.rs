//! The audit trail's rows and their hash chain. A write's rows are inserted in its own
//! transaction (`write`); every other access (a read, a search, a refusal, an HL7v2 message, a
//! delivery) is handed to `Store::audit`, which queues it for the flusher (`ops::audit`) to
//! insert in batches off the request path: a crash loses at most the flush interval's entries.
//!
//! Every row is sealed into one chain: its place (`chain_pos`) and `hash` = SHA-256 over the
//! previous row's hash, its place and its content. The flusher seals in the same transaction
//! as it inserts, taking the rows others inserted unsealed (writes) first, so the chain's order
//! is the order rows were sealed in. A row edited, removed or moved breaks the chain where it
//! was; `verify` walks it. Removing the newest rows is only found against a head hash kept
//! elsewhere, which `verify` prints for that.

use super::db::DbConnection;
use super::schema::audit_events as a;
use super::{Store, StoreError};
use crate::fhir::resource::{Micros, now_micros};
use diesel::prelude::*;

/// The PostgreSQL advisory lock a sealing transaction holds ("auditch" in ASCII): one process
/// extends the chain at a time.
const LOCK: i64 = 0x0061_7564_6974_6368;
/// Rows of others sealed per flush at most (the rest at the next).
const SEAL_BATCH: i64 = 5_000;

/// What kind of access a row records (its AuditEvent type).
pub mod kind {
    /// A FHIR REST interaction (read, search, create...).
    pub const REST: &str = "rest";
    /// A sign-in or a client's authentication.
    pub const LOGIN: &str = "login";
    /// An HL7v2 message received.
    pub const MESSAGE: &str = "hl7v2";
    /// A notification or outbound message delivered.
    pub const DELIVERY: &str = "delivery";
}

/// One access, as it is queued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub recorded_at: Micros,
    pub kind: String,
    /// The interaction or event (`read`, `search-type`, `login`, `ADT^A01`, `notification`).
    pub action: String,
    /// Who: the audit name of the client or user, the sending system.
    pub actor: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub version_id: Option<i64>,
    /// `success` or `failure`.
    pub outcome: String,
    pub correlation_id: String,
    pub detail: Option<String>,
    /// `Patient/id` the access concerned, when one did.
    pub patient: Option<String>,
    pub address: Option<String>,
    pub query: Option<String>,
    /// What the access disclosed (a search's or a history's page): the flusher gives it one
    /// row per patient those resources belong to (`per_patient`), as IHE BALP's Patient Query
    /// asks, so that "who saw this patient's record" finds a search that showed it. Not stored.
    pub shown: Vec<Shown>,
}

/// A resource an access disclosed (its content shared with the response, not copied).
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub resource_type: String,
    pub id: String,
    pub content: std::sync::Arc<str>,
}

/// Most rows one access becomes (a page holds at most 1,000 matches and their includes):
/// past that, the rest of its patients are named in the last row's detail as a count.
const MAX_PATIENTS: usize = 2_000;

impl Entry {
    /// This access as its rows: one per patient among what it disclosed (its own patient
    /// first, when its request named one), or itself alone when it disclosed none.
    pub fn per_patient(mut self) -> Vec<Entry> {
        let shown = std::mem::take(&mut self.shown);
        let mut seen = std::collections::HashSet::new();
        let mut patients: Vec<String> = Vec::new();
        let named = self.patient.take();
        let found = shown
            .iter()
            .filter_map(|s| patient_in(&s.resource_type, &s.id, &s.content));
        for p in named.into_iter().chain(found) {
            if seen.insert(p.clone()) {
                patients.push(p);
            }
        }
        if patients.is_empty() {
            return vec![self];
        }
        let left = patients.len().saturating_sub(MAX_PATIENTS);
        patients.truncate(MAX_PATIENTS);
        let mut rows: Vec<Entry> = patients
            .into_iter()
            .map(|p| Entry {
                patient: Some(p),
                ..self.clone()
            })
            .collect();
        if left > 0
            && let Some(last) = rows.last_mut()
        {
            last.detail = Some(format!("and {left} more patients not named"));
        }
        rows
    }
}

/// A stored row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = a)]
pub struct Row {
    pub seq: i64,
    pub recorded_at: i64,
    pub actor: String,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub version_id: Option<i64>,
    pub outcome: String,
    pub correlation_id: String,
    pub detail: Option<String>,
    pub kind: String,
    pub patient: Option<String>,
    pub address: Option<String>,
    pub query: Option<String>,
    pub chain_pos: Option<i64>,
    pub hash: Option<String>,
}

/// What the hash covers of a row (or of an entry about to be one).
struct Fields<'a> {
    recorded_at: i64,
    kind: &'a str,
    actor: &'a str,
    action: &'a str,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    version_id: Option<i64>,
    outcome: &'a str,
    correlation_id: &'a str,
    detail: Option<&'a str>,
    patient: Option<&'a str>,
    address: Option<&'a str>,
    query: Option<&'a str>,
}

macro_rules! fields {
    ($r:expr) => {
        Fields {
            recorded_at: $r.recorded_at,
            kind: &$r.kind,
            actor: &$r.actor,
            action: &$r.action,
            resource_type: $r.resource_type.as_deref(),
            resource_id: $r.resource_id.as_deref(),
            version_id: $r.version_id,
            outcome: &$r.outcome,
            correlation_id: &$r.correlation_id,
            detail: $r.detail.as_deref(),
            patient: $r.patient.as_deref(),
            address: $r.address.as_deref(),
            query: $r.query.as_deref(),
        }
    };
}

/// The hash of a row at `pos` after `previous`: every field, each followed by a unit
/// separator (an absent one written as a record separator), fed to SHA-256 as it is read.
fn digest(previous: &str, pos: i64, r: &Fields) -> String {
    let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut put = |field: Option<&str>| {
        d.update(field.unwrap_or("\u{1e}").as_bytes());
        d.update(b"\x1f");
    };
    let (pos, at, version) = (
        pos.to_string(),
        r.recorded_at.to_string(),
        r.version_id.map(|v| v.to_string()),
    );
    put(Some(previous));
    put(Some(&pos));
    put(Some(&at));
    put(Some(r.kind));
    put(Some(r.actor));
    put(Some(r.action));
    put(r.resource_type);
    put(r.resource_id);
    put(version.as_deref());
    put(Some(r.outcome));
    put(Some(r.correlation_id));
    put(r.detail);
    put(r.patient);
    put(r.address);
    put(r.query);
    hex::encode(d.finish().as_ref())
}

/// The chain's last place and hash (0 and empty before the first row).
fn head(conn: &mut DbConnection) -> Result<(i64, String), StoreError> {
    let last: Option<i64> = a::table
        .select(diesel::dsl::max(a::chain_pos))
        .get_result(conn)?;
    let Some(pos) = last else {
        return Ok((0, String::new()));
    };
    let hash: Option<String> = a::table
        .filter(a::chain_pos.eq(pos))
        .select(a::hash)
        .get_result(conn)?;
    Ok((pos, hash.unwrap_or_default()))
}

/// In one (write) transaction: seal the rows others inserted unsealed, then insert `entries`
/// sealed. Returns how many rows were sealed in all.
pub fn flush(conn: &mut DbConnection, entries: &[Entry]) -> Result<usize, StoreError> {
    if let DbConnection::Pg(c) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({LOCK})")).execute(c)?;
    }
    let (mut pos, mut hash) = head(conn)?;
    let unsealed: Vec<Row> = a::table
        .filter(a::chain_pos.is_null())
        .order(a::seq.asc())
        .limit(SEAL_BATCH)
        .select(Row::as_select())
        .load(conn)?;
    let mut seals = Vec::with_capacity(unsealed.len());
    for r in &unsealed {
        pos += 1;
        hash = digest(&hash, pos, &fields!(r));
        seals.push((r.seq, pos, hash.clone()));
    }
    seal_rows(conn, &seals)?;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        pos += 1;
        hash = digest(&hash, pos, &fields!(e));
        rows.push(Stored::of(e, Some((pos, hash.clone()))));
    }
    insert(conn, &rows)?;
    Ok(unsealed.len() + entries.len())
}

/// Give each row (`seq`) its place and hash. On PostgreSQL in one statement per thousand
/// rows: a statement per row is a round trip per row, and a busy server's writes leave a
/// thousand a second to seal; SQLite's statements are calls in this process.
fn seal_rows(conn: &mut DbConnection, seals: &[(i64, i64, String)]) -> Result<(), StoreError> {
    match conn {
        DbConnection::Pg(c) => {
            use diesel::sql_types::{Array, BigInt, Text};
            for chunk in seals.chunks(1000) {
                diesel::sql_query(
                    "UPDATE audit_events AS a SET chain_pos = v.pos, hash = v.hash \
                     FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS v(seq, pos, hash) \
                     WHERE a.seq = v.seq",
                )
                .bind::<Array<BigInt>, _>(chunk.iter().map(|s| s.0).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(chunk.iter().map(|s| s.1).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(chunk.iter().map(|s| s.2.as_str()).collect::<Vec<_>>())
                .execute(c)?;
            }
        }
        DbConnection::Sqlite(c) => {
            for (seq, pos, hash) in seals {
                diesel::update(a::table.find(seq))
                    .set((a::chain_pos.eq(pos), a::hash.eq(hash)))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Insert `entries` unsealed (the flusher seals them): when the queue is full or gone.
pub fn insert_unsealed(conn: &mut DbConnection, entries: &[Entry]) -> Result<(), StoreError> {
    let rows: Vec<_> = entries.iter().map(|e| Stored::of(e, None)).collect();
    insert(conn, &rows)
}

/// A row as inserted: the entry borrowed, its keys and its seal. Absent values are bound as
/// NULL rather than left out, so that every row is the same statement, prepared once.
#[derive(Insertable)]
#[diesel(table_name = a, treat_none_as_null = true)]
struct Stored<'a> {
    recorded_at: Micros,
    kind: &'a str,
    action: &'a str,
    actor: &'a str,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    version_id: Option<i64>,
    outcome: &'a str,
    correlation_id: &'a str,
    detail: Option<&'a str>,
    patient: Option<&'a str>,
    address: Option<&'a str>,
    query: Option<&'a str>,
    chain_pos: Option<i64>,
    hash: Option<String>,
    patient_key: Option<i64>,
    entity_key: Option<i64>,
}

impl<'a> Stored<'a> {
    fn of(e: &'a Entry, seal: Option<(i64, String)>) -> Stored<'a> {
        let (patient_key, entity_key) = keys(
            e.patient.as_deref(),
            (e.resource_type.as_deref(), e.resource_id.as_deref()),
        );
        let (chain_pos, hash) = seal.unzip();
        Stored {
            recorded_at: e.recorded_at,
            kind: &e.kind,
            action: &e.action,
            actor: &e.actor,
            resource_type: e.resource_type.as_deref(),
            resource_id: e.resource_id.as_deref(),
            version_id: e.version_id,
            outcome: &e.outcome,
            correlation_id: &e.correlation_id,
            detail: e.detail.as_deref(),
            patient: e.patient.as_deref(),
            address: e.address.as_deref(),
            query: e.query.as_deref(),
            chain_pos,
            hash,
            patient_key,
            entity_key,
        }
    }
}

/// Rows inserted: one prepared statement per row on SQLite (its fastest way: statements of
/// 64 rows in a fixed-size array, which diesel keeps prepared, cost the flush more CPU a row,
/// docs/performance.md), batches of 200 on PostgreSQL (one round trip each).
fn insert(conn: &mut DbConnection, rows: &[Stored]) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(a::table).values(row).execute(c)?;
            }
        }
        DbConnection::Pg(c) => {
            for chunk in rows.chunks(200) {
                diesel::insert_into(a::table).values(chunk).execute(c)?;
            }
        }
    }
    Ok(())
}

impl Entry {
    /// An entry recorded now.
    pub fn now(kind: &str, action: &str, actor: &str, correlation_id: &str) -> Entry {
        Entry {
            recorded_at: now_micros(),
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            outcome: "success".into(),
            correlation_id: correlation_id.into(),
            ..Entry::default()
        }
    }
}

/// The references a resource names its patient by (the rest of it is skipped unread).
#[derive(serde::Deserialize)]
struct PatientRefs {
    subject: Option<Reference>,
    patient: Option<Reference>,
    #[serde(default)]
    participant: Vec<Participant>,
}

#[derive(serde::Deserialize)]
struct Reference {
    reference: Option<String>,
}

/// The 64-bit key a patient or entity reference (`Patient/1`, `Observation/2`) is looked up
/// by: the first 8 bytes of its SHA-256 (an index of these costs a row about a third of one of
/// the text; a lookup checks the text as well, so keys that collide find nothing wrong).
pub fn key_of(reference: &str) -> i64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, reference.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

/// The keys of a row's patient and entity. A row whose entity is its patient (a Patient read
/// or written) has no entity key: the patient key finds it, and the entity index is spared
/// one random key on most rows (it costs the flush about a microsecond a row).
pub fn keys(
    patient: Option<&str>,
    entity: (Option<&str>, Option<&str>),
) -> (Option<i64>, Option<i64>) {
    let entity = match entity {
        (Some("Patient"), Some(id))
            if patient.and_then(|p| p.strip_prefix("Patient/")) == Some(id) =>
        {
            None
        }
        (Some(t), Some(id)) => Some(key_of(&format!("{t}/{id}"))),
        _ => None,
    };
    (patient.map(key_of), entity)
}

/// Give the rows kept before the keys existed their keys (once, right after the migration
/// that added them), in batches.
pub fn fill_keys(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let mut done = 0;
    let mut after = 0i64;
    loop {
        type Refs = (i64, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Refs> = a::table
            .filter(a::seq.gt(after))
            .order(a::seq.asc())
            .limit(10_000)
            .select((a::seq, a::patient, a::resource_type, a::resource_id))
            .load(conn)?;
        let Some(last) = rows.last() else {
            return Ok(done);
        };
        after = last.0;
        for (seq, patient, t, id) in rows {
            let (p, e) = keys(patient.as_deref(), (t.as_deref(), id.as_deref()));
            if p.is_some() || e.is_some() {
                diesel::update(a::table.find(seq))
                    .set((a::patient_key.eq(p), a::entity_key.eq(e)))
                    .execute(conn)?;
                done += 1;
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Participant {
    actor: Option<Reference>,
}

/// The patient a stored resource is about (`Patient/id`): itself, or its subject, patient or
/// participant naming a Patient. Read without building the document: only those elements are
/// kept (a read's and a write's audit row is given it on every access).
pub fn patient_in(rtype: &str, id: &str, content: &str) -> Option<String> {
    if rtype == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    let refs = serde_json::from_str::<PatientRefs>(content).ok()?;
    let participants = refs.participant.into_iter().filter_map(|p| p.actor);
    [refs.subject, refs.patient]
        .into_iter()
        .flatten()
        .chain(participants)
        .filter_map(|r| r.reference)
        .find(|r| r.starts_with("Patient/"))
}

/// The patients accesses were about, so that "who saw this patient's record" finds them:
/// reads of resources other than Patients are given the patient of the resource (the current
/// version's, from the cache the read filled; a resource read and deleted since is left
/// without), and a search or history becomes one row per patient its page showed.
pub fn name_patients(store: &Store, batch: Vec<Entry>) -> Vec<Entry> {
    let mut rows = Vec::with_capacity(batch.len());
    for mut e in batch {
        if !e.shown.is_empty() {
            rows.extend(e.per_patient());
            continue;
        }
        let a_read = e.patient.is_none()
            && e.kind == kind::REST
            && e.outcome == "success"
            && matches!(e.action.as_str(), "read" | "vread" | "history-instance");
        if let (true, Some(t), Some(id)) = (a_read, &e.resource_type, &e.resource_id)
            && let Ok(v) = store.current(t, id)
        {
            e.patient = patient_in(t, id, &v.content);
        }
        rows.push(e);
    }
    rows
}

/// What `verify` found.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub rows: i64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The last row's hash: kept elsewhere, it shows later that no newest row was removed.
    pub head: Option<String>,
    /// Rows not sealed yet (written since the last flush).
    pub unsealed: i64,
    /// Each break found (the first 50), by place.
    pub problems: Vec<String>,
}

/// Walk the chain from its first kept row (retention removes the oldest: the first kept
/// row's predecessor is taken as its hash says) to its head.
pub fn verify(conn: &mut DbConnection) -> Result<Verified, StoreError> {
    let mut out = Verified {
        unsealed: a::table
            .filter(a::chain_pos.is_null())
            .count()
            .get_result(conn)?,
        ..Verified::default()
    };
    let mut previous: Option<(i64, String)> = None;
    let mut after = i64::MIN;
    loop {
        let page: Vec<Row> = a::table
            .filter(a::chain_pos.gt(after))
            .order(a::chain_pos.asc())
            .limit(10_000)
            .select(Row::as_select())
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.chain_pos.unwrap_or(i64::MAX);
        for r in &page {
            let pos = r.chain_pos.unwrap_or_default();
            let stored = r.hash.clone().unwrap_or_default();
            out.rows += 1;
            out.first.get_or_insert(pos);
            match &previous {
                None => {} // the oldest kept row: nothing before it to check it against
                Some((p, h)) => {
                    if pos != p + 1 {
                        problem(
                            &mut out,
                            format!("rows {} to {} are missing", p + 1, pos - 1),
                        );
                    }
                    if digest(h, pos, &fields!(r)) != stored {
                        problem(
                            &mut out,
                            format!(
                                "row {pos} (seq {}) does not match its hash: edited, or its predecessor was",
                                r.seq
                            ),
                        );
                    }
                }
            }
            previous = Some((pos, stored));
        }
    }
    if let Some((pos, hash)) = previous {
        out.last = Some(pos);
        out.head = Some(hash);
    }
    Ok(out)
}

fn problem(out: &mut Verified, what: String) {
    if out.problems.len() < 50 {
        out.problems.push(what);
    }
}

/// Rows recorded before `cutoff` removed (retention), oldest first, `limit` at most.
pub fn forget_before(
    conn: &mut DbConnection,
    cutoff: Micros,
    limit: i64,
) -> Result<usize, StoreError> {
    let old: Vec<i64> = a::table
        .filter(a::recorded_at.lt(cutoff))
        .filter(a::chain_pos.is_not_null())
        .order(a::chain_pos.asc())
        .select(a::seq)
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(a::table.filter(a::seq.eq_any(&old))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_covers_every_field_and_the_predecessor() {
        let e = Entry::now(kind::REST, "read", "client a", "c1");
        let h = digest("", 1, &fields!(e));
        assert_eq!(h.len(), 64);
        assert_ne!(digest("x", 1, &fields!(e)), h);
        assert_ne!(digest("", 2, &fields!(e)), h);
        let mut changed = e.clone();
        changed.patient = Some("Patient/1".into());
        assert_ne!(digest("", 1, &fields!(changed)), h);
        let mut moved = e.clone();
        moved.query = Some(String::new());
        assert_ne!(digest("", 1, &fields!(moved)), h, "empty and absent differ");
    }

    #[test]
    fn a_search_is_one_row_per_patient_it_showed_its_own_first() {
        let shown = |t: &str, id: &str, content: &str| Shown {
            resource_type: t.into(),
            id: id.into(),
            content: content.into(),
        };
        let mut e = Entry::now(kind::REST, "search-type", "client a", "c1");
        e.patient = Some("Patient/9".into());
        e.query = Some("code=x".into());
        e.shown = vec![
            shown(
                "Observation",
                "1",
                r#"{"subject":{"reference":"Patient/2"}}"#,
            ),
            shown(
                "Observation",
                "2",
                r#"{"subject":{"reference":"Patient/9"}}"#,
            ),
            shown("Patient", "2", "{}"),
            shown("Observation", "3", r#"{"subject":{"reference":"Group/1"}}"#),
            shown("Encounter", "4", "not json"),
        ];
        let rows = e.per_patient();
        let patients: Vec<_> = rows.iter().map(|r| r.patient.as_deref()).collect();
        assert_eq!(patients, [Some("Patient/9"), Some("Patient/2")]);
        assert!(
            rows.iter()
                .all(|r| r.shown.is_empty() && r.query.as_deref() == Some("code=x"))
        );

        let mut none = Entry::now(kind::REST, "search-type", "client a", "c2");
        none.shown = vec![shown("Observation", "3", "{}")];
        let rows = none.per_patient();
        assert_eq!((rows.len(), rows[0].patient.as_deref()), (1, None));

        let mut many = Entry::now(kind::REST, "history-type", "client a", "c3");
        many.shown = (0..MAX_PATIENTS + 5)
            .map(|n| shown("Patient", &n.to_string(), "{}"))
            .collect();
        let rows = many.per_patient();
        assert_eq!(rows.len(), MAX_PATIENTS);
        assert_eq!(
            rows.last().unwrap().detail.as_deref(),
            Some("and 5 more patients not named")
        );
    }
}
