//! Blocks: the entries one flush (or one write transaction) records, stored as one row of
//! `audit_blocks` whose body is their JSON array, and the postings that find it: one per
//! patient, entity, agent, type, subtype and outcome its entries name.

use super::{Entry, chain, key_of, postings};
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::{audit_blocks as b, audit_postings as p};
use diesel::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

/// Entries a block holds at most: a search or a read of one AuditEvent decodes its whole
/// block, and a bigger block saves little (its own row, link and postings are shared).
const BLOCK_ENTRIES: usize = 512;
/// Blocks of others (writes') sealed per flush at most (the rest at the next).
const SEAL_BATCH: i64 = 1_000;
/// The PostgreSQL advisory lock a sealing transaction holds ("auditch" in ASCII): one process
/// extends the chain at a time.
const LOCK: i64 = 0x0061_7564_6974_6368;

/// An entry as searches and exports see it.
#[derive(Debug, Clone)]
pub struct Row {
    /// `<block>-<place in the block>`: its AuditEvent's id.
    pub id: String,
    pub entry: Entry,
    /// Its block's place in the chain and hash (none until the block is sealed).
    pub seal: Option<(i64, String)>,
}

/// A block about to be stored: its body and terms made before the write transaction (the
/// flusher makes them on its own thread: the one SQLite writer is held only to store them).
pub struct Block {
    pub(super) first_at: i64,
    pub(super) last_at: i64,
    pub(super) entries: i32,
    pub(super) body: String,
    pub(super) terms: BTreeSet<i64>,
}

impl Block {
    pub(super) fn of(entries: &[Entry]) -> Block {
        Block {
            first_at: entries.iter().map(|e| e.recorded_at).min().unwrap_or(0),
            last_at: entries.iter().map(|e| e.recorded_at).max().unwrap_or(0),
            entries: entries.len() as i32,
            body: serde_json::to_string(entries).expect("an entry always serialises"),
            terms: terms(entries),
        }
    }
}

/// The term a patient or entity reference (`Patient/1`, `Observation/2`) is found by.
pub fn term_of(reference: &str) -> i64 {
    key_of(reference)
}

/// The term of an agent, type, subtype or outcome (`name` those words) and its value.
pub fn named_term(name: &str, value: &str) -> i64 {
    key_of(&format!("{name}|{value}"))
}

/// Every term the entries are found by, each once (sorted: the postings go into their index
/// in order).
pub(super) fn terms<'a>(entries: &'a [Entry]) -> BTreeSet<i64> {
    let mut refs: HashSet<Cow<str>> = HashSet::new();
    // a block's agents, types, subtypes and outcomes are few: a list, not a hash set, each
    // entry compared with the last one first
    let mut named: Vec<(&str, &str)> = Vec::new();
    let mut name = |n: &'static str, v: &'a str| {
        if !named.iter().rev().any(|&(m, w)| m == n && w == v) {
            named.push((n, v));
        }
    };
    for e in entries {
        if let Some(patient) = &e.patient {
            refs.insert(Cow::Borrowed(patient));
        }
        if let (Some(t), Some(id)) = (&e.resource_type, &e.resource_id) {
            // a Patient's own access is found by its patient term already
            let its_patient = t == "Patient"
                && e.patient
                    .as_deref()
                    .and_then(|p| p.strip_prefix("Patient/"))
                    == Some(id);
            if !its_patient {
                refs.insert(Cow::Owned(format!("{t}/{id}")));
            }
        }
        name("agent", &e.actor);
        // a user through a client: found by either too
        for part in super::actor_parts(&e.actor) {
            name("agent", part);
        }
        name("type", &e.kind);
        name("subtype", &e.action);
        name("outcome", &e.outcome);
    }
    let refs = refs.iter().map(|r| term_of(r));
    refs.chain(named.into_iter().map(|(n, v)| named_term(n, v)))
        .collect()
}

/// Store `block` (sealed at `seal`, or for the flusher to seal), with its postings when `post`
/// (else they are owed: `postings`); its seq.
fn store(
    conn: &mut DbConnection,
    block: &Block,
    seal: Option<(i64, String)>,
    post: bool,
) -> Result<i64, StoreError> {
    let (chain_pos, hash) = seal.unzip();
    let values = (
        b::first_at.eq(block.first_at),
        b::last_at.eq(block.last_at),
        b::entries.eq(block.entries),
        b::body.eq(&block.body),
        b::chain_pos.eq(chain_pos),
        b::hash.eq(hash),
        b::posted.eq(post),
    );
    let insert = diesel::insert_into(b::table).values(values);
    let seq: i64 = match conn {
        DbConnection::Pg(pg) => insert.returning(b::seq).get_result(pg)?,
        // (SQLite runs INSERT ... RETURNING through a temporary b-tree: the rowid is cheaper)
        DbConnection::Sqlite(lite) => {
            insert.execute(lite)?;
            diesel::select(crate::store::write::last_insert_rowid()).get_result(lite)?
        }
    };
    if !post {
        return Ok(seq);
    }
    // a write's few terms by one prepared statement each; more (a block a write could not
    // queue) as `postings` writes a run's
    if block.terms.len() <= 16 {
        for term in &block.terms {
            diesel::insert_into(p::table)
                .values((p::term.eq(term), p::block.eq(seq)))
                .execute(conn)?;
        }
    } else {
        postings::insert(conn, block.terms.iter().map(|t| (*t, seq)).collect())?;
    }
    Ok(seq)
}

/// Store `entries` as blocks for the flusher to seal: a write's, in the write's transaction,
/// and an access the queue could not take.
pub fn insert_unsealed(conn: &mut DbConnection, entries: &[Entry]) -> Result<(), StoreError> {
    for chunk in entries.chunks(BLOCK_ENTRIES) {
        store(conn, &Block::of(chunk), None, true)?;
    }
    Ok(())
}

/// `entries` as the blocks `flush` stores.
pub fn blocks_of(entries: &[Entry]) -> Vec<Block> {
    entries.chunks(BLOCK_ENTRIES).map(Block::of).collect()
}

/// In one (write) transaction: seal the blocks others stored unsealed, then store `blocks`,
/// sealed and not yet posted (`postings::Owed` posts them). Returns their seqs.
pub fn flush(conn: &mut DbConnection, blocks: &[Block]) -> Result<Vec<i64>, StoreError> {
    if let DbConnection::Pg(c) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({LOCK})")).execute(c)?;
    }
    let (mut pos, mut hash) = chain::head(conn)?;
    let unsealed: Vec<(i64, String)> = b::table
        .filter(b::chain_pos.is_null())
        .order(b::seq.asc())
        .limit(SEAL_BATCH)
        .select((b::seq, b::body))
        .load(conn)?;
    for (seq, body) in &unsealed {
        pos += 1;
        hash = chain::digest(&hash, pos, body);
        diesel::update(b::table.find(seq))
            .set((b::chain_pos.eq(pos), b::hash.eq(&hash)))
            .execute(conn)?;
    }
    let mut seqs = Vec::with_capacity(blocks.len());
    for block in blocks {
        pos += 1;
        hash = chain::digest(&hash, pos, &block.body);
        seqs.push(store(conn, block, Some((pos, hash.clone())), false)?);
    }
    Ok(seqs)
}

/// A stored block's entries as rows; none (and a warning) when its body does not read, which
/// `verify` reports.
pub(crate) fn rows_of(seq: i64, body: &str, seal: Option<(i64, String)>) -> Vec<Row> {
    match serde_json::from_str::<Vec<Entry>>(body) {
        Ok(entries) => entries
            .into_iter()
            .enumerate()
            .map(|(n, entry)| Row {
                id: format!("{seq}-{n}"),
                entry,
                seal: seal.clone(),
            })
            .collect(),
        Err(e) => {
            tracing::warn!(block = seq, error = %e, "an audit block does not read: run `emrsync audit verify`");
            Vec::new()
        }
    }
}

/// A block's columns as searches load them.
pub type Loaded = (i64, String, Option<i64>, Option<String>);

/// The columns `Loaded` reads.
pub fn loaded() -> (b::seq, b::body, b::chain_pos, b::hash) {
    (b::seq, b::body, b::chain_pos, b::hash)
}

/// A loaded block's rows.
pub fn rows((seq, body, pos, hash): Loaded) -> Vec<Row> {
    rows_of(seq, &body, pos.zip(hash))
}

/// One entry by its id (`<block>-<place>`).
pub fn one(conn: &mut DbConnection, id: &str) -> Result<Option<Row>, StoreError> {
    let Some((block, n)) = id
        .split_once('-')
        .and_then(|(b, n)| Some((b.parse::<i64>().ok()?, n.parse::<usize>().ok()?)))
    else {
        return Ok(None);
    };
    let found: Option<Loaded> = b::table
        .find(block)
        .select(loaded())
        .get_result(conn)
        .optional()?;
    Ok(found.and_then(|l| rows(l).into_iter().nth(n)))
}

/// Every entry kept, oldest block first (tests, small trails).
pub fn all(conn: &mut DbConnection) -> Result<Vec<Entry>, StoreError> {
    let blocks: Vec<Loaded> = b::table.order(b::seq.asc()).select(loaded()).load(conn)?;
    Ok(blocks.into_iter().flat_map(rows).map(|r| r.entry).collect())
}

/// The postings of `block` that exist, out of `terms`.
pub(super) fn posted(
    conn: &mut DbConnection,
    block: i64,
    terms: &BTreeSet<i64>,
) -> Result<usize, StoreError> {
    let terms: Vec<i64> = terms.iter().copied().collect();
    let mut found = 0;
    for chunk in terms.chunks(500) {
        let n: i64 = p::table
            .filter(p::block.eq(block))
            .filter(p::term.eq_any(chunk))
            .count()
            .get_result(conn)?;
        found += n as usize;
    }
    Ok(found)
}

/// Remove `block` and its postings (`terms`).
pub(super) fn remove(
    conn: &mut DbConnection,
    block: i64,
    terms: &BTreeSet<i64>,
) -> Result<(), StoreError> {
    let terms: Vec<i64> = terms.iter().copied().collect();
    for chunk in terms.chunks(500) {
        diesel::delete(
            p::table
                .filter(p::block.eq(block))
                .filter(p::term.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    diesel::delete(b::table.find(block)).execute(conn)?;
    Ok(())
}
