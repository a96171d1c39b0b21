//! The index itself: each Patient filed under its blocking keys, in the database, in the
//! Patient's write transaction, so that a Patient is a candidate for matching exactly when it
//! is committed. Keys are stored as SHA-256 digests: the table holds no names or dates in clear.

use super::blocking::{self, MAX_BLOCK};
use super::person::Person;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use std::collections::BTreeSet;

diesel::table! {
    mpi_keys (key, patient_id) {
        key -> Text,
        patient_id -> Text,
    }
}

diesel::table! {
    mpi_people (patient_id) {
        patient_id -> Text,
        person -> Text,
    }
}

/// The most candidates one lookup returns: those sharing the most keys with the person come
/// first, so a record that says little (a common name, no birth date) costs a write no more
/// than this many comparisons.
pub const MAX_CANDIDATES: i64 = 30;

/// A key as stored: the first 128 bits of its SHA-256, in hex.
pub fn digest(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// File the Patient `id` (whose demographics are `person`) under its blocking keys, in place
/// of what it was filed under (nothing, when `first`: its first version), with what the
/// matcher compares of it.
pub fn file(
    conn: &mut DbConnection,
    id: &str,
    person: &Person,
    first: bool,
) -> Result<(), StoreError> {
    use mpi_keys::dsl as k;
    let new: BTreeSet<String> = blocking::keys(person)
        .iter()
        .map(|key| digest(key))
        .collect();
    let old: BTreeSet<String> = match first {
        true => BTreeSet::new(),
        false => k::mpi_keys
            .filter(k::patient_id.eq(id))
            .select(k::key)
            .load::<String>(conn)?
            .into_iter()
            .collect(),
    };
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
    use mpi_people::dsl as p;
    let text = serde_json::to_string(person).unwrap_or_default();
    if !first {
        diesel::delete(p::mpi_people.find(id)).execute(conn)?;
    }
    diesel::insert_into(p::mpi_people)
        .values((p::patient_id.eq(id), p::person.eq(text)))
        .execute(conn)?;
    Ok(())
}

/// Take the Patient `id` out of the index (it was deleted): no longer a candidate.
pub fn unfile(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    diesel::delete(mpi_keys::table.filter(mpi_keys::patient_id.eq(id))).execute(conn)?;
    diesel::delete(mpi_people::table.find(id)).execute(conn)?;
    Ok(())
}

/// What the matcher compares of each of `ids` that is filed, as (id, person).
pub fn people(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<(String, Person)>, StoreError> {
    use mpi_people::dsl as p;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(300) {
        let rows: Vec<(String, String)> = p::mpi_people
            .filter(p::patient_id.eq_any(chunk))
            .select((p::patient_id, p::person))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .filter_map(|(id, text)| Some((id, serde_json::from_str(&text).ok()?))),
        );
    }
    Ok(out)
}

/// The Patients filed under any of `keys`, `except` one, each once, those sharing the most keys
/// first, at most `MAX_CANDIDATES`; a key whose block holds more than `MAX_BLOCK` Patients is
/// passed over (the other keys find its pairs).
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
    // those sharing the most keys first
    let ranked: Vec<(String, i64)> = k::mpi_keys
        .filter(k::key.eq_any(&small))
        .filter(k::patient_id.ne(except.unwrap_or("")))
        .group_by(k::patient_id)
        .select((k::patient_id, diesel::dsl::count_star()))
        .order((diesel::dsl::count_star().desc(), k::patient_id))
        .limit(MAX_CANDIDATES)
        .load(conn)?;
    let ids: Vec<String> = ranked.into_iter().map(|(id, _)| id).collect();
    Ok(ids)
}

/// How many Patients are filed.
pub fn size(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(mpi_people::table.count().get_result(conn)?)
}
