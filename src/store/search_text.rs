//! Writing the full-text index (`fhir::search::text`), in the caller's transaction like the
//! rest of the search index: SQLite keeps the words in an FTS5 table without content of its
//! own, keyed through `search_text_rows`; PostgreSQL in `tsvector` columns with GIN indexes
//! (every word in `search_text`, the narrative's in `search_narrative`).
//!
//! On SQLite a write's words wait in `search_text_pending` until its transaction moves them
//! into the FTS5 table, all at once, just before it commits (`flush`): FTS5 writes made inside
//! the group-commit writers' savepoints cost a tenth of a transaction Bundle's time (see
//! migration 000029). Every SQLite transaction that writes resources therefore ends with
//! `flush` (`GroupCommit` does it for the server's writes); until then a full-text search in
//! that same transaction does not see them.

use super::db::DbConnection;
use super::error::StoreError;
use crate::fhir::search::text::TextEntry;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

#[derive(QueryableByName)]
struct RowId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    resource_id: String,
}

/// Rows per statement when many resources' text is written at once (SQLite binds at most
/// 32,766 values; each row binds three).
const CHUNK: usize = 500;

/// Index the text of new current versions (none of which has text rows yet), a few statements
/// for all of them: a transaction Bundle's hundred resources cost two statements, not two
/// hundred (each statement that writes the FTS table opens a statement journal of its own).
pub fn insert(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &TextEntry)],
) -> Result<(), StoreError> {
    let owners: Vec<&(&str, &str, &TextEntry)> =
        owners.iter().filter(|(_, _, t)| !t.is_empty()).collect();
    for chunk in owners.chunks(CHUNK) {
        match conn {
            DbConnection::Pg(c) => {
                use diesel::sql_types::Array;
                let types: Vec<&str> = chunk.iter().map(|o| o.0).collect();
                let ids: Vec<&str> = chunk.iter().map(|o| o.1).collect();
                let narratives: Vec<&str> = chunk.iter().map(|o| o.2.narrative.as_str()).collect();
                let contents: Vec<&str> = chunk.iter().map(|o| o.2.content.as_str()).collect();
                // every word in `search_text`, the narrative's again in `search_narrative`
                // when there is one (migration 000031 says why apart)
                diesel::sql_query(
                    "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                     $4::text[]) AS x(t, i, n, c)), \
                     words AS (INSERT INTO search_text (resource_type, resource_id, content) \
                     SELECT t, i, to_tsvector('simple', n || ' ' || c) FROM x \
                     ON CONFLICT (resource_type, resource_id) \
                     DO UPDATE SET content = EXCLUDED.content) \
                     INSERT INTO search_narrative (resource_type, resource_id, narrative) \
                     SELECT t, i, to_tsvector('simple', n) FROM x WHERE n <> '' \
                     ON CONFLICT (resource_type, resource_id) \
                     DO UPDATE SET narrative = EXCLUDED.narrative",
                )
                .bind::<Array<Text>, _>(types)
                .bind::<Array<Text>, _>(ids)
                .bind::<Array<Text>, _>(narratives)
                .bind::<Array<Text>, _>(contents)
                .execute(c)?;
            }
            DbConnection::Sqlite(c) => {
                let values = vec!["(?, ?)"; chunk.len()].join(", ");
                let mut keys = diesel::sql_query(format!(
                    "INSERT INTO search_text_rows (resource_type, resource_id) VALUES {values} \
                     RETURNING id, resource_type, resource_id"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for (rtype, id, _) in chunk {
                    keys = keys.bind::<Text, _>(*rtype).bind::<Text, _>(*id);
                }
                let ids: std::collections::HashMap<(String, String), i64> = keys
                    .load::<KeyRow>(c)?
                    .into_iter()
                    .map(|k| ((k.resource_type, k.resource_id), k.id))
                    .collect();
                let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
                let mut text = diesel::sql_query(format!(
                    "INSERT INTO search_text_pending (id, narrative, content) VALUES {values}"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for (rtype, id, t) in chunk {
                    let key = ids
                        .get(&(rtype.to_string(), id.to_string()))
                        .copied()
                        .ok_or_else(|| {
                            StoreError::Database(format!("no text key returned for {rtype}/{id}"))
                        })?;
                    text = text
                        .bind::<BigInt, _>(key)
                        .bind::<Text, _>(t.narrative.as_str())
                        .bind::<Text, _>(t.content.as_str());
                }
                text.execute(c)?;
            }
        }
    }
    Ok(())
}

/// Move the text of `rtype/id` from `old` (what its index holds, if anything) to `new`.
pub fn replace(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    old: Option<&TextEntry>,
    new: &TextEntry,
) -> Result<(), StoreError> {
    if old == Some(new) || (old.is_none() && new.is_empty()) {
        return Ok(());
    }
    // the old words go, and the new ones are written as a new resource's are
    if old.is_some() {
        clear(conn, rtype, id)?;
    }
    insert(conn, &[(rtype, id, new)])
}

/// Remove the text of `rtype/id` (on delete).
pub fn clear(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    match conn {
        DbConnection::Pg(c) => {
            diesel::sql_query(
                "WITH narrative AS (DELETE FROM search_narrative \
                 WHERE resource_type = $1 AND resource_id = $2) \
                 DELETE FROM search_text WHERE resource_type = $1 AND resource_id = $2",
            )
            .bind::<Text, _>(rtype)
            .bind::<Text, _>(id)
            .execute(c)?;
        }
        DbConnection::Sqlite(c) => {
            let rows: Vec<RowId> = diesel::sql_query(
                "DELETE FROM search_text_rows WHERE resource_type = ?1 AND resource_id = ?2 \
                 RETURNING id",
            )
            .bind::<Text, _>(rtype)
            .bind::<Text, _>(id)
            .load(c)?;
            for row in rows {
                // words of this transaction's never reached the FTS table
                let queued = diesel::sql_query("DELETE FROM search_text_pending WHERE id = ?1")
                    .bind::<BigInt, _>(row.id)
                    .execute(c)?;
                if queued == 0 {
                    diesel::sql_query("DELETE FROM search_text WHERE rowid = ?1")
                        .bind::<BigInt, _>(row.id)
                        .execute(c)?;
                }
            }
        }
    }
    Ok(())
}

/// Move the words this transaction wrote into the SQLite FTS table: one statement for all of
/// them, to run when no savepoint is open, just before COMMIT (nothing to do on PostgreSQL).
pub fn flush(conn: &mut DbConnection) -> Result<(), StoreError> {
    if let DbConnection::Sqlite(c) = conn {
        diesel::sql_query(
            "INSERT INTO search_text (rowid, narrative, content) \
             SELECT id, narrative, content FROM search_text_pending",
        )
        .execute(c)?;
        diesel::sql_query("DELETE FROM search_text_pending").execute(c)?;
    }
    Ok(())
}

/// Index the text of every current resource written before the full-text index existed (a
/// backfill of migration 000027, `backfill`), in batches of their heads.
pub fn fill(conn: &mut DbConnection) -> Result<usize, StoreError> {
    super::search_index::each_head_batch(conn, None, |conn, heads| {
        for head in heads {
            let (rtype, id) = (head.resource_type.as_str(), head.id.as_str());
            let text = crate::fhir::search::text::entry(&head.json());
            // what an interrupted fill wrote goes first: filling twice is safe
            clear(conn, rtype, id)?;
            insert(conn, &[(rtype, id, &text)])?;
        }
        Ok(heads.len())
    })
}
