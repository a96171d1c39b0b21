//! The outbox as the publisher reads it: the changes not yet acknowledged by the broker, oldest
//! first, each with the version it made (for its patient, and its body when the payload
//! carries it); and the mark once the broker has them.

use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::outbox as o;
use crate::store::versions::{Version, versions};
use diesel::prelude::*;
use std::collections::HashMap;

/// A change waiting to be published.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub seq: i64,
    pub resource_type: String,
    pub resource_id: String,
    pub version_id: i64,
    pub action: String,
    pub correlation_id: String,
    pub created_at: i64,
    pub origin: String,
}

/// At most `limit` unpublished changes in outbox order, with the versions they made (for a
/// deletion, the version it deleted; absent when an expunge removed it since).
pub fn unpublished(
    conn: &mut DbConnection,
    limit: i64,
) -> Result<Vec<(Pending, Option<Version>)>, StoreError> {
    let pending: Vec<Pending> = o::table
        .filter(o::published_at.is_null())
        .order(o::seq.asc())
        .limit(limit)
        .select((
            o::seq,
            o::resource_type,
            o::resource_id,
            o::version_id,
            o::action,
            o::correlation_id,
            o::created_at,
            o::origin,
        ))
        .load(conn)?;
    // a deletion's version is a tombstone: the version before it says whose it was
    let keys: Vec<(&str, &str, i64)> = pending
        .iter()
        .map(|p| {
            let vid = match p.action.as_str() {
                "delete" => p.version_id - 1,
                _ => p.version_id,
            };
            (p.resource_type.as_str(), p.resource_id.as_str(), vid)
        })
        .collect();
    let mut found: HashMap<(String, String, i64), Version> = versions(conn, &keys)?
        .into_iter()
        .map(|v| ((v.resource_type.clone(), v.id.clone(), v.version_id), v))
        .collect();
    let vids: Vec<i64> = keys.iter().map(|k| k.2).collect();
    drop(keys);
    Ok(pending
        .into_iter()
        .zip(vids)
        .map(|(p, vid)| {
            let v = found.remove(&(p.resource_type.clone(), p.resource_id.clone(), vid));
            (p, v)
        })
        .collect())
}

/// Mark `seqs` published (the broker acknowledged each).
pub fn published(conn: &mut DbConnection, seqs: &[i64]) -> Result<(), StoreError> {
    let now = now_micros();
    for chunk in seqs.chunks(500) {
        diesel::update(o::table.filter(o::seq.eq_any(chunk)))
            .set(o::published_at.eq(now))
            .execute(conn)?;
    }
    Ok(())
}
