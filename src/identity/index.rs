//! The index itself: each Patient filed under its blocking keys, in the database, in the
//! Patient's write transaction, so that a Patient is a candidate for matching exactly when it
//! is committed, and marked pending for the linker (`linker`), which links it right after.
//! Keys are stored as the first 64 bits of their SHA-256: the table holds no names or dates in
//! clear, and one small B-tree of integers is what a write adds to (every key row dirties a
//! page of it; the write's cost is mostly those pages).

use super::blocking::{self, MAX_BLOCK};
use super::person::Person;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use std::collections::BTreeSet;

diesel::table! {
    mpi_keys (key, patient_id) {
        key -> BigInt,
        patient_id -> Text,
    }
}

diesel::table! {
    mpi_people (patient_id) {
        patient_id -> Text,
        person -> Text,
        pending -> Nullable<BigInt>,
        filed_by -> Text,
    }
}

/// The most candidates one lookup returns: those sharing the most keys with the person come
/// first, so a record that says little (a common name, no birth date) costs a write no more
/// than this many comparisons.
pub const MAX_CANDIDATES: i64 = 30;

/// A key as stored: the first 64 bits of its SHA-256.
pub fn digest(key: &str) -> i64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(first)
}

/// The keys `person` is filed under here: all but those the search index already holds.
fn digests(person: &Person) -> BTreeSet<i64> {
    blocking::keys(person)
        .iter()
        .filter(|k| searched(k).is_none())
        .map(|k| digest(k))
        .collect()
}

/// A key the store's search index answers: the Patients with an identifier, or born on a day.
/// Every Patient write puts those rows there anyway; filing them again here was a third of the
/// index's rows, each a page of a random B-tree for the one writer to dirty.
enum Searched {
    Identifier { system: String, value: String },
    Born(crate::fhir::search::date::DateRange),
}

fn searched(key: &str) -> Option<Searched> {
    if let Some(id) = key.strip_prefix("id:") {
        let (system, value) = id.split_once('|')?;
        return Some(Searched::Identifier {
            system: system.into(),
            value: value.into(),
        });
    }
    let day = key.strip_prefix("bd:")?;
    let iso = format!("{}-{}-{}", day.get(..4)?, day.get(4..6)?, day.get(6..8)?);
    crate::fhir::search::date::DateRange::parse(&iso).map(Searched::Born)
}

/// The current Patients the search index holds under `key`, read only as far as `block` does
/// (and, like it, with the bound in the statement's text). Each statement must stay answered
/// from its lookup index alone: with a `DISTINCT`, or a condition on a column that index lacks,
/// SQLite (with no statistics) walks every Patient's rows instead.
fn searched_block(conn: &mut DbConnection, key: &Searched) -> Result<Vec<String>, StoreError> {
    use diesel::sql_types::{BigInt, Text};
    static SQL: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
        let token = |at: [&str; 2]| {
            format!(
                "SELECT resource_id AS patient_id FROM search_token WHERE resource_type = \
                 'Patient' AND param = 'identifier' AND code = {} AND system = {} LIMIT {}",
                at[0],
                at[1],
                MAX_BLOCK + 1
            )
        };
        // born that day (a birth date known to the month starts that day too: a candidate
        // more, which the comparison of birth dates weighs)
        let date = |at: &str| {
            format!(
                "SELECT resource_id AS patient_id FROM search_date WHERE resource_type = \
                 'Patient' AND param = 'birthdate' AND low = {at} LIMIT {}",
                MAX_BLOCK + 1
            )
        };
        [
            token(["?", "?"]),
            token(["$1", "$2"]),
            date("?"),
            date("$1"),
        ]
    });
    let rows: Vec<Member> = match (key, conn) {
        (Searched::Identifier { system, value }, DbConnection::Sqlite(c)) => {
            diesel::sql_query(SQL[0].as_str())
                .bind::<Text, _>(value)
                .bind::<Text, _>(system)
                .load(c)?
        }
        (Searched::Identifier { system, value }, DbConnection::Pg(c)) => {
            diesel::sql_query(SQL[1].as_str())
                .bind::<Text, _>(value)
                .bind::<Text, _>(system)
                .load(c)?
        }
        (Searched::Born(day), DbConnection::Sqlite(c)) => diesel::sql_query(SQL[2].as_str())
            .bind::<BigInt, _>(day.low)
            .load(c)?,
        (Searched::Born(day), DbConnection::Pg(c)) => diesel::sql_query(SQL[3].as_str())
            .bind::<BigInt, _>(day.low)
            .load(c)?,
    };
    // a Patient with the same identifier twice is one member
    let mut ids: Vec<String> = rows.into_iter().map(|m| m.patient_id).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// What the index holds of the Patient `id`: what the matcher compares of it.
pub fn filed(conn: &mut DbConnection, id: &str) -> Result<Option<Person>, StoreError> {
    use mpi_people::dsl as p;
    let text: Option<String> = p::mpi_people
        .find(id)
        .select(p::person)
        .get_result(conn)
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// File the Patient `id` (whose demographics are `person`) under its blocking keys, in place
/// of what it was filed under (nothing, when `first`: its first version), with what the
/// matcher compares of it, pending for the linker since `at`; `by` is the source that wrote it.
pub fn file(
    conn: &mut DbConnection,
    id: &str,
    person: &Person,
    first: bool,
    (at, by): (i64, &str),
) -> Result<(), StoreError> {
    use mpi_keys::dsl as k;
    use mpi_people::dsl as p;
    let new = digests(person);
    let text = serde_json::to_string(person).unwrap_or_default();
    if first && let DbConnection::Pg(c) = conn {
        return file_first_pg(c, id, &new, &text, (at, by));
    }
    // the keys it was filed under are those of what it was filed with
    let old = match first {
        true => None,
        false => filed(conn, id)?,
    };
    let old_keys = old.as_ref().map(digests).unwrap_or_default();
    let gone: Vec<i64> = old_keys.difference(&new).copied().collect();
    if !gone.is_empty() {
        diesel::delete(
            k::mpi_keys
                .filter(k::key.eq_any(gone))
                .filter(k::patient_id.eq(id)),
        )
        .execute(conn)?;
    }
    let added: Vec<_> = new
        .difference(&old_keys)
        .map(|key| (k::key.eq(*key), k::patient_id.eq(id)))
        .collect();
    if !added.is_empty() {
        crate::store::insert_all!(conn, k::mpi_keys, added)?;
    }
    let row = (
        p::person.eq(&text),
        p::pending.eq(Some(at)),
        p::filed_by.eq(by),
    );
    let updated = match old.is_some() {
        true => diesel::update(p::mpi_people.find(id))
            .set(row)
            .execute(conn)?,
        false => 0,
    };
    if updated == 0 {
        diesel::insert_into(p::mpi_people)
            .values((p::patient_id.eq(id), row.0, row.1, row.2))
            .execute(conn)?;
    }
    Ok(())
}

/// A Patient's first filing on PostgreSQL: its keys and its row in one statement. Each
/// statement is a round trip, and on PostgreSQL round trips are what a Patient's write costs
/// most (docs/performance.md, 2026-12-07, twelfth session); SQLite's are calls in this process.
fn file_first_pg(
    c: &mut diesel::PgConnection,
    id: &str,
    keys: &BTreeSet<i64>,
    person: &str,
    (at, by): (i64, &str),
) -> Result<(), StoreError> {
    use diesel::sql_types::{Array, BigInt, Text};
    diesel::sql_query(
        "WITH keys AS (INSERT INTO mpi_keys (key, patient_id) SELECT k, $2 FROM unnest($1::bigint[]) AS k) \
         INSERT INTO mpi_people (patient_id, person, pending, filed_by) VALUES ($2, $3, $4, $5)",
    )
    .bind::<Array<BigInt>, _>(keys.iter().copied().collect::<Vec<i64>>())
    .bind::<Text, _>(id)
    .bind::<Text, _>(person)
    .bind::<BigInt, _>(at)
    .bind::<Text, _>(by)
    .execute(c)?;
    Ok(())
}

/// Mark the filed Patient `id` pending again since `at`, as it is filed: the linker links it
/// as it sees it now (a person withdrew a decision about it). Nothing when it is not filed.
pub fn requeue(conn: &mut DbConnection, id: &str, at: i64) -> Result<(), StoreError> {
    diesel::update(mpi_people::table.find(id))
        .set(mpi_people::pending.eq(Some(at)))
        .execute(conn)?;
    Ok(())
}

/// Take the Patient `id` out of the index (it was deleted): no longer a candidate.
pub fn unfile(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    let Some(old) = filed(conn, id)? else {
        return Ok(());
    };
    let keys: Vec<i64> = digests(&old).into_iter().collect();
    diesel::delete(
        mpi_keys::table
            .filter(mpi_keys::key.eq_any(keys))
            .filter(mpi_keys::patient_id.eq(id)),
    )
    .execute(conn)?;
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

#[derive(QueryableByName)]
struct Member {
    #[diesel(sql_type = diesel::sql_types::Text)]
    patient_id: String,
}

/// The Patients filed under `key`, read only as far as too big to score (`MAX_BLOCK` + 1): a
/// common key costs no more than a rare one. The bound is in the statement's text: SQLite
/// plans a bound `LIMIT ?` again on every run (see `clippy.toml`).
fn block(conn: &mut DbConnection, key: i64) -> Result<Vec<String>, StoreError> {
    use diesel::sql_types::BigInt;
    static SQL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
        let sql = |at: &str| {
            format!(
                "SELECT patient_id FROM mpi_keys WHERE key = {at} LIMIT {}",
                MAX_BLOCK + 1
            )
        };
        (sql("?"), sql("$1"))
    });
    let rows: Vec<Member> = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(SQL.0.as_str())
            .bind::<BigInt, _>(key)
            .load(c)?,
        DbConnection::Pg(c) => diesel::sql_query(SQL.1.as_str())
            .bind::<BigInt, _>(key)
            .load(c)?,
    };
    Ok(rows.into_iter().map(|m| m.patient_id).collect())
}

/// The Patients filed under any of `keys`, `except` one, each once, those sharing the most keys
/// first, at most `MAX_CANDIDATES`; a key whose block holds more than `MAX_BLOCK` Patients is
/// passed over (the other keys find its pairs).
pub fn candidates(
    conn: &mut DbConnection,
    keys: &[String],
    except: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let blocks = blocks(conn, keys.iter())?;
    Ok(ranked(&blocks, keys, except))
}

/// `candidates` of many Patients at once, each given as (its keys, itself): the blocks of all
/// their keys read together.
pub fn candidates_many(
    conn: &mut DbConnection,
    asked: &[(Vec<String>, Option<&str>)],
) -> Result<Vec<Vec<String>>, StoreError> {
    let blocks = blocks(conn, asked.iter().flat_map(|(keys, _)| keys))?;
    Ok(asked
        .iter()
        .map(|(keys, except)| ranked(&blocks, keys, *except))
        .collect())
}

/// Each key's block: its members, as far as `MAX_BLOCK` + 1.
type Blocks = std::collections::HashMap<String, Vec<String>>;

/// The candidates `keys` find in `blocks`, ranked as `candidates` says.
fn ranked(blocks: &Blocks, keys: &[String], except: Option<&str>) -> Vec<String> {
    let mut shared: std::collections::HashMap<&str, i64> = Default::default();
    for key in keys {
        let Some(members) = blocks.get(key) else {
            continue;
        };
        if members.len() > MAX_BLOCK {
            continue;
        }
        for id in members {
            *shared.entry(id.as_str()).or_default() += 1;
        }
    }
    if let Some(except) = except {
        shared.remove(except);
    }
    // those sharing the most keys first
    let mut ranked: Vec<(&str, i64)> = shared.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked.truncate(MAX_CANDIDATES as usize);
    ranked.into_iter().map(|(id, _)| id.to_string()).collect()
}

/// The blocks of `keys`. On SQLite a statement per key: in-process, each an index search. On
/// PostgreSQL each statement is a round trip and a plan in a server process, and a Patient's
/// seven of them were most of what linking it cost there: one statement per kind of key (the
/// index's own, identifiers, birth dates) for all of them, each key still read only as far as
/// its bound.
fn blocks<'a>(
    conn: &mut DbConnection,
    keys: impl Iterator<Item = &'a String>,
) -> Result<Blocks, StoreError> {
    let keys: BTreeSet<&String> = keys.collect();
    let mut blocks = Blocks::new();
    let DbConnection::Pg(pg) = conn else {
        for key in keys {
            let members = match searched(key) {
                Some(key) => searched_block(conn, &key)?,
                None => block(conn, digest(key))?,
            };
            blocks.insert(key.clone(), members);
        }
        return Ok(blocks);
    };
    let (mut digested, mut identified, mut born) = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        match searched(key) {
            None => digested.push((key, digest(key))),
            Some(Searched::Identifier { system, value }) => identified.push((key, system, value)),
            Some(Searched::Born(day)) => born.push((key, day.low)),
        }
    }
    let mut take = |names: Vec<&String>, rows: Vec<Numbered>| {
        for name in &names {
            blocks.entry((*name).clone()).or_default();
        }
        for row in rows {
            if let Some(name) = names.get(row.n as usize - 1) {
                blocks
                    .entry((*name).clone())
                    .or_default()
                    .push(row.patient_id);
            }
        }
    };
    use diesel::sql_types::{Array, BigInt, Text};
    let bound = MAX_BLOCK + 1;
    if !digested.is_empty() {
        let sql = format!(
            "SELECT k.n AS n, m.patient_id AS patient_id FROM unnest($1::bigint[]) WITH ORDINALITY \
             AS k(key, n) CROSS JOIN LATERAL (SELECT patient_id FROM mpi_keys \
             WHERE mpi_keys.key = k.key LIMIT {bound}) m"
        );
        let values: Vec<i64> = digested.iter().map(|(_, d)| *d).collect();
        let rows = diesel::sql_query(sql)
            .bind::<Array<BigInt>, _>(values)
            .load(pg)?;
        take(digested.into_iter().map(|(k, _)| k).collect(), rows);
    }
    if !identified.is_empty() {
        let sql = format!(
            "SELECT k.n AS n, m.patient_id AS patient_id FROM unnest($1::text[], $2::text[]) \
             WITH ORDINALITY AS k(system, value, n) CROSS JOIN LATERAL (SELECT resource_id AS \
             patient_id FROM search_token WHERE resource_type = 'Patient' AND param = 'identifier' \
             AND code = k.value AND system = k.system LIMIT {bound}) m"
        );
        let systems: Vec<&str> = identified.iter().map(|(_, s, _)| s.as_str()).collect();
        let values: Vec<&str> = identified.iter().map(|(_, _, v)| v.as_str()).collect();
        let rows = diesel::sql_query(sql)
            .bind::<Array<Text>, _>(systems)
            .bind::<Array<Text>, _>(values)
            .load(pg)?;
        take(identified.iter().map(|(k, _, _)| *k).collect(), rows);
    }
    if !born.is_empty() {
        let sql = format!(
            "SELECT k.n AS n, m.patient_id AS patient_id FROM unnest($1::bigint[]) WITH ORDINALITY \
             AS k(low, n) CROSS JOIN LATERAL (SELECT resource_id AS patient_id FROM search_date \
             WHERE resource_type = 'Patient' AND param = 'birthdate' AND low = k.low \
             LIMIT {bound}) m"
        );
        let values: Vec<i64> = born.iter().map(|(_, low)| *low).collect();
        let rows = diesel::sql_query(sql)
            .bind::<Array<BigInt>, _>(values)
            .load(pg)?;
        take(born.into_iter().map(|(k, _)| k).collect(), rows);
    }
    // a Patient with the same identifier twice is one member
    for members in blocks.values_mut() {
        members.sort();
        members.dedup();
    }
    Ok(blocks)
}

#[derive(QueryableByName)]
struct Numbered {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    patient_id: String,
}

/// How many current Patients the store holds that should be filed: all but golden records.
pub fn patients(conn: &mut DbConnection) -> Result<i64, StoreError> {
    use super::golden::{TAG_CODE, TAG_SYSTEM};
    use crate::store::schema::resources::dsl as r;
    use crate::store::schema::search_token::dsl as t;
    let all: i64 = r::resources
        .filter(r::resource_type.eq("Patient"))
        .filter(r::deleted.eq(false))
        .count()
        .get_result(conn)?;
    // a deleted resource's search rows are gone with it
    let golden: i64 = t::search_token
        .filter(t::resource_type.eq("Patient"))
        .filter(t::param.eq("_tag"))
        .filter(t::code.eq(TAG_CODE))
        .filter(t::system.eq(TAG_SYSTEM))
        .count()
        .get_result(conn)?;
    Ok(all - golden)
}

/// Of the next `limit` current Patients after `after` (by id), those not filed, and the last
/// one looked at (`None`: no more Patients).
pub fn unfiled(
    conn: &mut DbConnection,
    after: &str,
    limit: i64,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    use crate::store::schema::resources::dsl as r;
    let page: Vec<String> = r::resources
        .filter(r::resource_type.eq("Patient"))
        .filter(r::deleted.eq(false))
        .filter(r::resource_id.gt(after))
        .order(r::resource_id)
        .select(r::resource_id)
        .limit(limit)
        .load(conn)?;
    let filed: BTreeSet<String> = mpi_people::table
        .filter(mpi_people::patient_id.eq_any(&page))
        .select(mpi_people::patient_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let last = page.last().cloned();
    Ok((
        page.into_iter().filter(|id| !filed.contains(id)).collect(),
        last,
    ))
}

/// About `n` filed Patients drawn at random (all, when there are fewer): what the matcher
/// compares of each.
pub fn sample(conn: &mut DbConnection, n: i64) -> Result<Vec<Person>, StoreError> {
    use diesel::sql_types::Bool;
    use mpi_people::dsl as p;
    // drawn without sorting the index: with a million records filed, `ORDER BY random()`
    // reads and sorts them all (seconds of a read connection) at every doubling
    let rows: Vec<String> = match conn {
        DbConnection::Sqlite(c) => {
            // `mpi_people` has no rowid to draw (WITHOUT ROWID): each row is kept with a
            // chance that yields about `n`, in one walk of the table and no sort, without a
            // LIMIT that would favour the first ids
            let size: i64 = p::mpi_people.count().get_result(c)?;
            if size == 0 {
                return Ok(Vec::new());
            }
            let per_billion = (1e9 * n as f64 / size as f64).min(1e9) as i64;
            p::mpi_people
                .select(p::person)
                .filter(diesel::dsl::sql::<Bool>(&format!(
                    "abs(random() % 1000000000) < {per_billion}"
                )))
                .load(c)?
        }
        DbConnection::Pg(c) => {
            let size: i64 = p::mpi_people.count().get_result(c)?;
            // each row kept with a chance that yields about twice the sample, no sort
            let percent = (200.0 * n as f64 / size.max(1) as f64).min(100.0);
            #[derive(QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                person: String,
            }
            diesel::sql_query(format!(
                "SELECT person FROM mpi_people TABLESAMPLE BERNOULLI ({percent:.6}) LIMIT {n}"
            ))
            .load::<Row>(c)?
            .into_iter()
            .map(|r| r.person)
            .collect()
        }
    };
    Ok(rows
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect())
}

/// How many Patients are filed.
pub fn size(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(mpi_people::table.count().get_result(conn)?)
}
