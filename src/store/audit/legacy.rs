//! The audit trail as it was kept until migration 000040: a row of `audit_events` per access,
//! each sealed into a chain of its own. Those rows become blocks once (`convert`, the
//! `audit_blocks` backfill), their old chain checked first and what was found recorded in the
//! trail itself: the new chain starts from rows whose old seals were verified or named broken.

use super::Entry;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::audit_events as a;
use diesel::prelude::*;

/// Rows converted per transaction (and per block).
const BATCH: i64 = 512;

/// A row of the old trail.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = a)]
struct Row {
    seq: i64,
    recorded_at: i64,
    actor: String,
    action: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    version_id: Option<i64>,
    outcome: String,
    correlation_id: String,
    detail: Option<String>,
    kind: String,
    patient: Option<String>,
    address: Option<String>,
    query: Option<String>,
    chain_pos: Option<i64>,
    hash: Option<String>,
}

impl Row {
    fn entry(self) -> Entry {
        Entry {
            recorded_at: self.recorded_at,
            kind: self.kind,
            action: self.action,
            actor: self.actor,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            version_id: self.version_id,
            outcome: self.outcome,
            correlation_id: self.correlation_id,
            detail: self.detail,
            patient: self.patient,
            address: self.address,
            query: self.query,
            shown: Vec::new(),
        }
    }
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

/// Turn the old rows into blocks, sealed rows in their chain's order then unsealed ones,
/// checking the old chain as they go (from the first row left: a conversion cut short by a
/// crash resumes unchecked where it stopped); each batch in one transaction that also deletes
/// its rows. Returns how many rows were converted.
pub fn convert(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let mut converted = 0;
    let mut previous: Option<(i64, String)> = None;
    let mut breaks: Vec<String> = Vec::new();
    for sealed in [true, false] {
        loop {
            let n = conn.transaction(|c| {
                let mut q = a::table.into_boxed();
                q = match sealed {
                    true => q
                        .filter(a::chain_pos.is_not_null())
                        .order(a::chain_pos.asc()),
                    false => q.filter(a::chain_pos.is_null()).order(a::seq.asc()),
                };
                let rows: Vec<Row> = q.limit(BATCH).select(Row::as_select()).load(c)?;
                for r in rows.iter().filter(|r| r.chain_pos.is_some()) {
                    let pos = r.chain_pos.unwrap_or_default();
                    let stored = r.hash.clone().unwrap_or_default();
                    if let Some((p, h)) = &previous {
                        if pos != p + 1 {
                            breaks.push(format!("rows {} to {} were missing", p + 1, pos - 1));
                        }
                        if digest(h, pos, &fields!(r)) != stored {
                            breaks.push(format!("row {pos} did not match its hash"));
                        }
                    }
                    previous = Some((pos, stored));
                }
                let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                let entries: Vec<Entry> = rows.into_iter().map(Row::entry).collect();
                super::insert_unsealed(c, &entries)?;
                diesel::delete(a::table.filter(a::seq.eq_any(&seqs))).execute(c)?;
                Ok::<_, StoreError>(entries.len())
            })?;
            if n == 0 {
                break;
            }
            converted += n;
        }
    }
    if converted > 0 {
        let mut note = Entry::now(
            super::kind::REST,
            "audit-convert",
            "emrsync",
            "audit-blocks",
        );
        let head = previous
            .map(|(p, h)| format!("{p}:{h}"))
            .unwrap_or_default();
        note.detail = Some(match breaks.is_empty() {
            true => format!(
                "{converted} rows of the per-row trail kept as blocks; their chain verified, its head was {head}"
            ),
            false => format!(
                "{converted} rows of the per-row trail kept as blocks; their chain was broken in {} places ({}); its head was {head}",
                breaks.len(),
                breaks
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
        if !breaks.is_empty() {
            tracing::error!(
                breaks = breaks.len(),
                "the old audit chain was broken before its rows became blocks: see the trail's audit-convert entry"
            );
        }
        super::insert_unsealed(conn, &[note])?;
    }
    Ok(converted)
}
