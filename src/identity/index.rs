//! The index itself: each Patient filed under its blocking keys, in the database, in the
//! Patient's write transaction, so that a Patient is a candidate for matching exactly when it
//! is committed. Keys are stored as SHA-256 digests: the table holds no names or dates in clear.

use super::blocking::MAX_BLOCK;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use std::collections::BTreeSet;

diesel::table! {
    mpi_keys (key, patient_id) {
        key -> Text,
        patient_id -> Text,
    }
}

/// The most candidates one lookup returns: with every key's block bounded, a person has at
/// most a few hundred; beyond this the record says too little to be worth scoring.
pub const MAX_CANDIDATES: i64 = 2_000;

/// A key as stored: the first 128 bits of its SHA-256, in hex.
pub fn digest(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// File the Patient `id` under `keys`, in place of what it was filed under.
pub fn file(conn: &mut DbConnection, id: &str, keys: &[String]) -> Result<(), StoreError> {
    use mpi_keys::dsl as k;
    let new: BTreeSet<String> = keys.iter().map(|key| digest(key)).collect();
    let old: BTreeSet<String> = k::mpi_keys
        .filter(k::patient_id.eq(id))
        .select(k::key)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let gone: Vec<&String> = old.difference(&new).collect();
    if !gone.is_empty() {
        diesel::delete(
            k::mpi_keys
                .filter(k::patient_id.eq(id))
                .filter(k::key.eq_any(gone)),
        )
        .execute(conn)?;
    }
    let added: Vec<_> = new
        .difference(&old)
        .map(|key| (k::key.eq(key.as_str()), k::patient_id.eq(id)))
        .collect();
    if !added.is_empty() {
        crate::store::insert_all!(conn, k::mpi_keys, added)?;
    }
    Ok(())
}

/// The Patients filed under any of `keys`, `except` one, each once; a key whose block holds
/// more than `MAX_BLOCK` Patients is passed over (the other keys find its pairs).
pub fn candidates(
    conn: &mut DbConnection,
    keys: &[String],
    except: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    use mpi_keys::dsl as k;
    let digests: Vec<String> = keys.iter().map(|key| digest(key)).collect();
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    let sizes: Vec<(String, i64)> = k::mpi_keys
        .filter(k::key.eq_any(&digests))
        .group_by(k::key)
        .select((k::key, diesel::dsl::count_star()))
        .load(conn)?;
    let small: Vec<String> = sizes
        .into_iter()
        .filter(|(_, n)| *n as usize <= MAX_BLOCK)
        .map(|(key, _)| key)
        .collect();
    if small.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = k::mpi_keys
        .filter(k::key.eq_any(&small))
        .filter(k::patient_id.ne(except.unwrap_or("")))
        .select(k::patient_id)
        .distinct()
        .limit(MAX_CANDIDATES)
        .load(conn)?;
    Ok(ids)
}

/// How many Patients are filed.
pub fn size(conn: &mut DbConnection) -> Result<i64, StoreError> {
    use mpi_keys::dsl as k;
    Ok(k::mpi_keys
        .select(diesel::dsl::count(k::patient_id).aggregate_distinct())
        .get_result(conn)?)
}
