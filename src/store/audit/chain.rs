//! The hash chain the blocks are sealed into: each block's place (`chain_pos`) and `hash` =
//! SHA-256 over the previous block's hash, its place and its body, so that a block edited,
//! removed or moved breaks the chain where it was; `verify` walks it, and also checks what
//! finds a block (its time span and postings), which the hash does not cover but a search
//! relies on. Removing the newest blocks is only found against a head hash kept elsewhere,
//! which `verify` prints for that.

use super::Entry;
use super::block::{self, Block};
use crate::fhir::resource::Micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::audit_blocks as b;
use diesel::prelude::*;

/// The hash of the block at `pos` after `previous`: each part followed by a unit separator.
pub(super) fn digest(previous: &str, pos: i64, body: &str) -> String {
    let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [previous, &pos.to_string(), body] {
        d.update(part.as_bytes());
        d.update(b"\x1f");
    }
    hex::encode(d.finish().as_ref())
}

/// The chain's last place and hash (0 and empty before the first block).
pub(super) fn head(conn: &mut DbConnection) -> Result<(i64, String), StoreError> {
    let last: Option<i64> = b::table
        .select(diesel::dsl::max(b::chain_pos))
        .get_result(conn)?;
    let Some(pos) = last else {
        return Ok((0, String::new()));
    };
    let hash: Option<String> = b::table
        .filter(b::chain_pos.eq(pos))
        .select(b::hash)
        .get_result(conn)?;
    Ok((pos, hash.unwrap_or_default()))
}

/// What `verify` found.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// Blocks sealed and checked.
    pub blocks: i64,
    /// Their entries (AuditEvents).
    pub rows: i64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The last block's hash: kept elsewhere, it shows later that no newest block was removed.
    pub head: Option<String>,
    /// Blocks not sealed yet (written since the last flush).
    pub unsealed: i64,
    /// Each break found (the first 50), by place.
    pub problems: Vec<String>,
}

/// Walk the chain from its first kept block (retention removes the oldest: the first kept
/// block's predecessor is taken as its hash says) to its head.
pub fn verify(conn: &mut DbConnection) -> Result<Verified, StoreError> {
    let mut out = Verified {
        unsealed: b::table
            .filter(b::chain_pos.is_null())
            .count()
            .get_result(conn)?,
        ..Verified::default()
    };
    let mut previous: Option<(i64, String)> = None;
    let mut after = i64::MIN;
    type Sealed = (
        i64,
        i64,
        i64,
        i32,
        String,
        Option<i64>,
        Option<String>,
        bool,
    );
    loop {
        let page: Vec<Sealed> = b::table
            .filter(b::chain_pos.gt(after))
            .order(b::chain_pos.asc())
            .limit(500)
            .select((
                b::seq,
                b::first_at,
                b::last_at,
                b::entries,
                b::body,
                b::chain_pos,
                b::hash,
                b::posted,
            ))
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.5.unwrap_or(i64::MAX);
        for (seq, first_at, last_at, entries, body, pos, hash, posted) in page {
            let (pos, stored) = (pos.unwrap_or_default(), hash.unwrap_or_default());
            out.blocks += 1;
            out.first.get_or_insert(pos);
            if let Some((p, h)) = &previous {
                if pos != p + 1 {
                    problem(
                        &mut out,
                        format!("blocks {} to {} are missing", p + 1, pos - 1),
                    );
                }
                if digest(h, pos, &body) != stored {
                    problem(
                        &mut out,
                        format!(
                            "block {pos} (seq {seq}) does not match its hash: edited, or its predecessor was"
                        ),
                    );
                }
            }
            // (the oldest kept block has nothing before it to check it against)
            match serde_json::from_str::<Vec<Entry>>(&body) {
                Ok(list) => {
                    out.rows += list.len() as i64;
                    let block = Block::of(&list);
                    if (block.first_at, block.last_at, block.entries)
                        != (first_at, last_at, entries)
                    {
                        problem(
                            &mut out,
                            format!(
                                "block {pos} (seq {seq}): its time span or count was changed: searches by date miss it"
                            ),
                        );
                    }
                    // (a block not posted yet is read whole by searches: nothing to miss)
                    let found = match posted {
                        true => block::posted(conn, seq, &block.terms)?,
                        false => block.terms.len(),
                    };
                    if found < block.terms.len() {
                        problem(
                            &mut out,
                            format!(
                                "block {pos} (seq {seq}): {} of its {} index terms are missing: searches miss its entries",
                                block.terms.len() - found,
                                block.terms.len()
                            ),
                        );
                    }
                }
                Err(e) => problem(
                    &mut out,
                    format!("block {pos} (seq {seq}) does not read: {e}"),
                ),
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

/// Blocks whose entries were all recorded before `cutoff` removed (retention), oldest first,
/// `limit` blocks at most; how many blocks and entries went. The chain's head block is never
/// removed: the chain goes on from it, where it would start again from nothing.
pub fn forget_before(
    conn: &mut DbConnection,
    cutoff: Micros,
    limit: i64,
) -> Result<(usize, usize), StoreError> {
    let (head, _) = head(conn)?;
    let old: Vec<(i64, String)> = b::table
        .filter(b::last_at.lt(cutoff))
        .filter(b::chain_pos.lt(head))
        .order(b::chain_pos.asc())
        .select((b::seq, b::body))
        .limit(limit)
        .load(conn)?;
    let (blocks, mut gone) = (old.len(), 0);
    for (seq, body) in old {
        // its postings are found by their terms, read from the body
        let entries: Vec<Entry> = serde_json::from_str(&body).unwrap_or_default();
        block::remove(conn, seq, &Block::of(&entries).terms)?;
        gone += entries.len();
    }
    Ok((blocks, gone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_covers_the_body_its_place_and_the_predecessor() {
        let h = digest("", 1, "[]");
        assert_eq!(h.len(), 64);
        assert_ne!(digest("x", 1, "[]"), h);
        assert_ne!(digest("", 2, "[]"), h);
        assert_ne!(digest("", 1, "[ ]"), h);
        // the separators keep the parts apart
        assert_ne!(digest("1", 1, "[]"), digest("", 11, "[]"));
    }
}
