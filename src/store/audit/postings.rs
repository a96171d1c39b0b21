//! Postings owed: a flush stores its blocks at once (sealed into the chain, durable within the
//! flush interval) and posts them later, a run of blocks together, their postings sorted by
//! term. A patient read in every flush then has its index page written once a run instead of
//! once a flush: those pages were most of what an audited read cost the SQLite writer
//! (docs/performance.md, fifteenth session). Until it is posted a block's `posted` is false
//! and searches read it whole. A block whose flusher stopped before posting it (a crash,
//! another node's) is posted from its body by the next run that finds it (`Owed::post`).

use super::Block;
use super::block::terms;
use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::audit_blocks as b;
use diesel::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// A run: this many blocks owed, or the oldest owed this long, and the next flush posts them.
/// Bounded so that a search, which reads the unposted blocks whole, reads few.
const RUN_BLOCKS: usize = 32;
const RUN_AGE: Duration = Duration::from_secs(2);
/// An unposted block that nobody here owes, last written to this long ago (µs), was left by a
/// flusher that stopped: a run posts it.
const LOST_AFTER: i64 = 60_000_000;
/// Lost blocks one run posts at most (the rest in the next runs).
const LOST_PER_RUN: usize = 256;

/// The blocks this flusher stored and has not posted yet.
#[derive(Default)]
pub struct Owed {
    blocks: Vec<(i64, BTreeSet<i64>)>,
    since: Option<Instant>,
    /// Whether a run was posted since the start: the first takes every block left unposted.
    ran: bool,
}

impl Owed {
    /// Whether this flush posts the run: it is long or old enough, the flusher is stopping, or
    /// none has run since the start.
    pub fn due(&self, stopping: bool) -> bool {
        stopping
            || !self.ran
            || self.blocks.len() >= RUN_BLOCKS
            || self.since.is_some_and(|t| t.elapsed() >= RUN_AGE)
    }

    /// In the transaction of a flush that stored `blocks` as `fresh` (their seqs): post them,
    /// every block owed and the lost ones found, in one sorted insert. `self` is left as it
    /// is until `flushed` (a transaction that fails is tried again).
    pub fn post(
        &self,
        conn: &mut DbConnection,
        fresh: &[i64],
        blocks: &[Block],
    ) -> Result<(), StoreError> {
        let known: HashSet<i64> = self
            .blocks
            .iter()
            .map(|(seq, _)| *seq)
            .chain(fresh.iter().copied())
            .collect();
        let cutoff = match self.ran {
            true => now_micros() - LOST_AFTER,
            false => i64::MAX,
        };
        let lost = lost(conn, &known, cutoff)?;
        let owed = self.blocks.iter().map(|(seq, t)| (*seq, t));
        let fresh = fresh.iter().copied().zip(blocks.iter().map(|b| &b.terms));
        let lost_ones = lost.iter().map(|(seq, t)| (*seq, t));
        let mut seqs = Vec::new();
        let mut pairs = Vec::new();
        for (seq, terms) in owed.chain(fresh).chain(lost_ones) {
            seqs.push(seq);
            pairs.extend(terms.iter().map(|t| (*t, seq)));
        }
        if !lost.is_empty() {
            tracing::info!(
                blocks = lost.len(),
                "audit blocks a stopped flusher left unposted are posted"
            );
        }
        // in the index's order: each of its pages is written once
        pairs.sort_unstable();
        insert(conn, pairs)?;
        for chunk in seqs.chunks(500) {
            diesel::update(b::table.filter(b::seq.eq_any(chunk)))
                .set(b::posted.eq(true))
                .execute(conn)?;
        }
        Ok(())
    }

    /// After the flush's transaction committed: `blocks` (stored as `fresh`) are owed, or with
    /// every other owed, posted.
    pub fn flushed(&mut self, fresh: Vec<i64>, blocks: Vec<Block>, posted: bool) {
        if posted {
            *self = Owed {
                ran: true,
                ..Owed::default()
            };
            return;
        }
        if !fresh.is_empty() {
            self.since.get_or_insert_with(Instant::now);
        }
        let terms = blocks.into_iter().map(|b| b.terms);
        self.blocks.extend(fresh.into_iter().zip(terms));
    }
}

/// Unposted blocks not `known` here and last written to before `cutoff`, with their terms
/// read from their bodies.
fn lost(
    conn: &mut DbConnection,
    known: &HashSet<i64>,
    cutoff: i64,
) -> Result<Vec<(i64, BTreeSet<i64>)>, StoreError> {
    let unposted: Vec<i64> = b::table
        .filter(diesel::dsl::not(b::posted))
        .filter(b::last_at.lt(cutoff))
        .order(b::seq.asc())
        .select(b::seq)
        .load(conn)?;
    let lost: Vec<i64> = unposted
        .into_iter()
        .filter(|s| !known.contains(s))
        .take(LOST_PER_RUN)
        .collect();
    let mut out = Vec::with_capacity(lost.len());
    for chunk in lost.chunks(64) {
        let bodies: Vec<(i64, String)> = b::table
            .filter(b::seq.eq_any(chunk))
            .select((b::seq, b::body))
            .load(conn)?;
        for (seq, body) in bodies {
            // a body that does not read has nothing to post (`verify` reports it)
            let entries: Vec<super::Entry> = serde_json::from_str(&body).unwrap_or_default();
            out.push((seq, terms(&entries)));
        }
    }
    Ok(out)
}

/// Every posted block's postings written again from its body, those missing added (a
/// backfill for terms added since the blocks were posted: a user and a client within an
/// agent, migration 000042); how many blocks were read.
pub fn post_again(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let mut after = 0i64;
    let mut read = 0;
    loop {
        let page: Vec<(i64, String)> = b::table
            .filter(b::posted)
            .filter(b::seq.gt(after))
            .order(b::seq.asc())
            .limit(128)
            .select((b::seq, b::body))
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        read += page.len();
        let mut pairs = Vec::new();
        for (seq, body) in page {
            let entries: Vec<super::Entry> = serde_json::from_str(&body).unwrap_or_default();
            pairs.extend(terms(&entries).into_iter().map(|t| (t, seq)));
        }
        pairs.sort_unstable();
        insert(conn, pairs)?;
    }
    Ok(read)
}

/// Insert `(term, block)` postings, in statements of a few hundred rows (integers: nothing to
/// escape), each parsed once; one already there is left as it is (a lost block two runs
/// found).
pub(super) fn insert(conn: &mut DbConnection, pairs: Vec<(i64, i64)>) -> Result<(), StoreError> {
    for chunk in pairs.chunks(400) {
        let mut sql = String::with_capacity(80 + chunk.len() * 32);
        sql.push_str("INSERT INTO audit_postings (term, block) VALUES ");
        for (n, (term, block)) in chunk.iter().enumerate() {
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({term},{block})"));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        diesel::sql_query(sql).execute(conn)?;
    }
    Ok(())
}
