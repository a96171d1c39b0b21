//! Writing the search index: the rows of `fhir::search::index` entries, in the caller's
//! transaction, so that a resource is findable exactly when its version is committed.

use super::db::DbConnection;
use super::error::StoreError;
use super::schema::{
    search_composite, search_date, search_number, search_quantity, search_reference, search_string,
    search_token, search_uri,
};
use crate::fhir::search::index::{Entries, Second};
use crate::fhir::search::{ParamType, contained};
use diesel::connection::TransactionManager;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// Rows per multi-row statement (PostgreSQL allows 65,535 bound values; composites bind 12).
const CHUNK: usize = 1000;

/// The index's tables, one per kind of search parameter (special parameters have none).
const TABLES: [ParamType; 8] = [
    ParamType::String,
    ParamType::Token,
    ParamType::Reference,
    ParamType::Date,
    ParamType::Number,
    ParamType::Quantity,
    ParamType::Uri,
    ParamType::Composite,
];

/// Which rows of one table an update rewrites. Rows are numbered by their place in the
/// indexer's output (`n`); a row whose entry is the same in both versions stays. From
/// `tail` on, every stored row goes and every new one is written: the two versions differ
/// in length there, and rows written under older SearchParameter definitions (more of them,
/// say) must not collide with the new ones.
#[derive(Debug, PartialEq)]
struct Rewrite {
    /// Places below `tail` whose entry changed.
    changed: Vec<i32>,
    tail: i32,
    /// Nothing changed: the table is not touched.
    same: bool,
}

impl Rewrite {
    fn of<E: PartialEq>(old: &[E], new: &[E]) -> Rewrite {
        let tail = old.len().min(new.len());
        let changed: Vec<i32> = (0..tail)
            .filter(|&n| old[n] != new[n])
            .map(|n| n as i32)
            .collect();
        Rewrite {
            same: changed.is_empty() && old.len() == new.len(),
            changed,
            tail: tail as i32,
        }
    }

    /// Whether the new entry at place `n` is written.
    fn writes(&self, n: usize) -> bool {
        n as i32 >= self.tail || self.changed.binary_search(&(n as i32)).is_ok()
    }
}

/// The rewrite of each table between two versions' entries.
fn rewrites(old: &Entries, new: &Entries) -> [(ParamType, Rewrite); 8] {
    [
        (ParamType::String, Rewrite::of(&old.strings, &new.strings)),
        (ParamType::Token, Rewrite::of(&old.tokens, &new.tokens)),
        (
            ParamType::Reference,
            Rewrite::of(&old.references, &new.references),
        ),
        (ParamType::Date, Rewrite::of(&old.dates, &new.dates)),
        (ParamType::Number, Rewrite::of(&old.numbers, &new.numbers)),
        (
            ParamType::Quantity,
            Rewrite::of(&old.quantities, &new.quantities),
        ),
        (ParamType::Uri, Rewrite::of(&old.uris, &new.uris)),
        (
            ParamType::Composite,
            Rewrite::of(&old.composites, &new.composites),
        ),
    ]
}

/// The resources whose reference parameters point at `target_type/target_id` (type, id),
/// each once: what a merge must point at the survivor instead.
pub fn referring(
    conn: &mut DbConnection,
    target_type: &str,
    target_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    use super::schema::search_reference as sr;
    let owners: Vec<(String, String)> = sr::table
        .filter(sr::target_type.eq(target_type))
        .filter(sr::target_id.eq(target_id))
        .select((sr::resource_type, sr::resource_id))
        .distinct()
        .load(conn)?;
    // a contained resource's reference is its container's to change
    let mut resources: Vec<(String, String)> = Vec::with_capacity(owners.len());
    for (rtype, id) in owners {
        let owner = match contained::split_key(&id) {
            Some((ctype, cid, _)) => (ctype.to_string(), cid.to_string()),
            None => (rtype, id),
        };
        if !resources.contains(&owner) {
            resources.push(owner);
        }
    }
    Ok(resources)
}

/// The ids of the `rtype` resources whose reference parameters point at
/// `target_type/target_id`, each once (a patient's Encounters, not its thousands of results).
pub fn referring_of(
    conn: &mut DbConnection,
    rtype: &str,
    target_type: &str,
    target_id: &str,
) -> Result<Vec<String>, StoreError> {
    use super::schema::search_reference as sr;
    Ok(sr::table
        .filter(sr::target_type.eq(target_type))
        .filter(sr::target_id.eq(target_id))
        .filter(sr::resource_type.eq(rtype))
        .select(sr::resource_id)
        .distinct()
        .load::<String>(conn)?
        .into_iter()
        // stored resources only, not resources contained in others
        .filter(|id| contained::split_key(id).is_none())
        .collect())
}

/// Index every current `rtype` resource afresh (after a new parameter for the type: the
/// server-defined `Subscription.patient`), in transactions of a few hundred.
pub fn reindex(conn: &mut DbConnection, rtype: &str) -> Result<usize, StoreError> {
    reindex_where(conn, Some(rtype), |_| true)
}

/// Index afresh every current resource that contains others (their index came with migration
/// 000030), reading every current resource once.
pub fn reindex_containers(conn: &mut DbConnection) -> Result<usize, StoreError> {
    reindex_where(conn, None, |json| {
        json.get("contained")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|c| !c.is_empty())
    })
}

/// Index afresh the current resources (of `rtype`, or all) whose content `keep` says;
/// returns how many were indexed.
fn reindex_where(
    conn: &mut DbConnection,
    rtype: Option<&str>,
    keep: fn(&serde_json::Value) -> bool,
) -> Result<usize, StoreError> {
    each_head_batch(conn, rtype, |conn, heads| {
        let mut n = 0;
        for head in heads {
            let json = head.json();
            if keep(&json) {
                let (rtype, id) = (head.resource_type.as_str(), head.id.as_str());
                let entries = crate::fhir::search::index::index(&json);
                clear(conn, rtype, id)?;
                insert(conn, &[(rtype, id, &entries)])?;
                n += 1;
            }
        }
        Ok(n)
    })
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    resource_id: String,
    #[diesel(sql_type = BigInt)]
    version_id: i64,
}

/// Run `batch` over the current versions of the resources (of `rtype`, or all) that are not
/// deleted, 500 at a time in key order, read in one query a batch, each batch in a transaction
/// of its own (one commit, one sync on SQLite, for each; the full-text words flushed before
/// it); returns the sum of what `batch` returns. For backfills, which run before the server
/// serves.
pub(super) fn each_head_batch(
    conn: &mut DbConnection,
    rtype: Option<&str>,
    mut batch: impl FnMut(&mut DbConnection, &[super::versions::Version]) -> Result<usize, StoreError>,
) -> Result<usize, StoreError> {
    use super::search::sql::{Sql, load};
    let pg = matches!(conn, DbConnection::Pg(_));
    let mut done = 0;
    let mut after = (rtype.unwrap_or_default().to_string(), String::new());
    loop {
        // a row-value comparison, which both backends answer from the primary key: written as
        // `type > a OR (type = a AND id > b)`, PostgreSQL read the index from its start each time
        let mut sql = Sql::new(pg);
        let (a, b) = (sql.text(&after.0), sql.text(&after.1));
        let of_type = rtype
            .map(|t| format!(" AND resource_type = {}", sql.text(t)))
            .unwrap_or_default();
        let next = format!(
            "SELECT resource_type, resource_id, version_id FROM resources \
             WHERE deleted = FALSE AND (resource_type, resource_id) > ({a}, {b}){of_type} \
             ORDER BY resource_type, resource_id LIMIT 500"
        );
        let heads: Vec<(String, String, i64)> = load::<Head>(conn, &next, &sql.binds)?
            .into_iter()
            .map(|h| (h.resource_type, h.resource_id, h.version_id))
            .collect();
        let Some(last) = heads.last() else {
            return Ok(done);
        };
        after = (last.0.clone(), last.1.clone());
        let keys: Vec<(&str, &str, i64)> = heads
            .iter()
            .map(|(t, id, v)| (t.as_str(), id.as_str(), *v))
            .collect();
        // the write lock from the start (BEGIN IMMEDIATE on SQLite): a transaction that reads
        // first is refused at its first write if another connection committed meanwhile
        super::group_commit::begin_immediate(conn)?;
        let outcome = super::versions::versions(conn, &keys)
            .and_then(|current| batch(conn, &current))
            .and_then(|n| super::search_text::flush(conn).map(|()| n));
        type Manager = <DbConnection as Connection>::TransactionManager;
        match outcome {
            Ok(n) => {
                Manager::commit_transaction(conn)?;
                done += n;
            }
            Err(e) => {
                let _ = Manager::rollback_transaction(conn);
                return Err(e);
            }
        }
    }
}

/// Remove every index row of `rtype/id` (on delete): a range of the tables' primary keys.
pub fn clear(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    for table in TABLES {
        let all = Rewrite {
            changed: Vec::new(),
            tail: 0,
            same: false,
        };
        remove(conn, table, rtype, id, &all)?;
    }
    clear_contained(conn, rtype, id)?;
    super::search_text::clear(conn, rtype, id)
}

/// Move the index of `rtype/id` from its `old` version's entries to its `new` one's, rewriting
/// only the rows that changed: an update usually changes a few values (a name, a status), and
/// deleting and re-inserting identical rows, each with its lookup-index entry on a page of its
/// own, was most of an update's index cost (and of the pages its commit writes).
pub fn replace(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    old: &Entries,
    new: &Entries,
) -> Result<(), StoreError> {
    let rewrites = rewrites(old, new);
    for (table, rewrite) in rewrites.iter().filter(|(_, r)| !r.same) {
        remove(conn, *table, rtype, id, rewrite)?;
    }
    let rewrite = |t: ParamType, n: usize| {
        rewrites
            .iter()
            .find(|(table, _)| *table == t)
            .is_some_and(|(_, r)| !r.same && r.writes(n))
    };
    insert_tables(conn, &[(rtype, id, new)], rewrite)?;
    if old.contained != new.contained {
        clear_contained(conn, rtype, id)?;
        insert_contained(conn, &[(rtype, id, new)])?;
    }
    super::search_text::replace(conn, rtype, id, Some(&old.text), &new.text)
}

/// Index what `owners` contain, each contained resource under its key (`contained::key`),
/// and list them in `search_contained`.
fn insert_contained(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
) -> Result<(), StoreError> {
    use super::schema::search_contained as sc;
    let keyed: Vec<(String, &str, &str, &contained::ContainedEntries)> = owners
        .iter()
        .flat_map(|(rtype, id, entries)| {
            entries
                .contained
                .iter()
                .map(move |c| (contained::key(rtype, id, &c.local_id), *rtype, *id, c))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = keyed
        .iter()
        .map(|(key, rtype, id, c)| {
            (
                sc::resource_type.eq(c.resource_type.as_str()),
                sc::resource_id.eq(key.as_str()),
                sc::container_type.eq(*rtype),
                sc::container_id.eq(*id),
                sc::local_id.eq(c.local_id.as_str()),
            )
        })
        .collect();
    insert_all!(conn, sc::table, rows)?;
    let indexed: Vec<(&str, &str, &Entries)> = keyed
        .iter()
        .map(|(key, _, _, c)| (c.resource_type.as_str(), key.as_str(), &c.entries))
        .collect();
    insert_tables(conn, &indexed, |_, _| true)
}

/// Remove the index rows of what `rtype/id` contains, and their listing.
fn clear_contained(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    use super::schema::search_contained as sc;
    let of_container = sc::table
        .filter(sc::container_type.eq(rtype))
        .filter(sc::container_id.eq(id));
    let keys: Vec<(String, String)> = of_container
        .select((sc::resource_type, sc::resource_id))
        .load(conn)?;
    if keys.is_empty() {
        return Ok(());
    }
    let all = || Rewrite {
        changed: Vec::new(),
        tail: 0,
        same: false,
    };
    for (ctype, key) in &keys {
        for table in TABLES {
            remove(conn, table, ctype, key, &all())?;
        }
    }
    diesel::delete(of_container).execute(conn)?;
    Ok(())
}

/// Delete the rows of one table that `rewrite` replaces: its changed places and its tail.
fn remove(
    conn: &mut DbConnection,
    table: ParamType,
    rtype: &str,
    id: &str,
    rewrite: &Rewrite,
) -> Result<(), StoreError> {
    macro_rules! remove_rows {
        ($table:ident) => {{
            let owner = $table::table
                .filter($table::resource_type.eq(rtype))
                .filter($table::resource_id.eq(id));
            diesel::delete(owner.filter($table::n.ge(rewrite.tail))).execute(conn)?;
            match conn {
                // one statement for the changed places (`n = ANY($1)`, prepared once)
                DbConnection::Pg(c) if !rewrite.changed.is_empty() => {
                    diesel::delete(owner.filter($table::n.eq_any(&rewrite.changed))).execute(c)?;
                }
                DbConnection::Pg(_) => {}
                // one per place: SQLite would prepare an `IN (?, ?, ...)` afresh each time,
                // while `n = ?` stays prepared and costs no round trip
                DbConnection::Sqlite(c) => {
                    for n in &rewrite.changed {
                        diesel::delete(owner.filter($table::n.eq(n))).execute(c)?;
                    }
                }
            }
        }};
    }
    match table {
        ParamType::String => remove_rows!(search_string),
        ParamType::Token => remove_rows!(search_token),
        ParamType::Reference => remove_rows!(search_reference),
        ParamType::Date => remove_rows!(search_date),
        ParamType::Number => remove_rows!(search_number),
        ParamType::Quantity => remove_rows!(search_quantity),
        ParamType::Uri => remove_rows!(search_uri),
        ParamType::Composite => remove_rows!(search_composite),
        ParamType::Special => {}
    }
    Ok(())
}

/// Insert the index rows of new current versions: `(type, id, entries)` each.
pub fn insert(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
) -> Result<(), StoreError> {
    insert_tables(conn, owners, |_, _| true)?;
    insert_contained(conn, owners)?;
    let texts: Vec<(&str, &str, &crate::fhir::search::text::TextEntry)> = owners
        .iter()
        .map(|(rtype, id, entries)| (*rtype, *id, &entries.text))
        .collect();
    super::search_text::insert(conn, &texts)
}

fn insert_tables(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
    only: impl Fn(ParamType, usize) -> bool,
) -> Result<(), StoreError> {
    macro_rules! insert_rows {
        ($kind:ident, $table:ident, $field:ident, |$e:ident| ( $($col:ident = $val:expr),* $(,)? )) => {{
            let only = &only;
            let rows: Vec<_> = owners
                .iter()
                .flat_map(|(rtype, id, entries)| {
                    entries.$field.iter().enumerate().filter(move |(n, _)| only(ParamType::$kind, *n)).map(move |(n, $e)| {
                        (
                            $table::resource_type.eq(*rtype),
                            $table::resource_id.eq(*id),
                            $table::n.eq(n as i32),
                            $table::param.eq($e.param),
                            $($table::$col.eq($val),)*
                        )
                    })
                })
                .collect();
            for chunk in rows.chunks(CHUNK) {
                insert_all!(conn, $table::table, chunk)?;
            }
        }};
    }
    insert_rows!(String, search_string, strings, |e| (
        norm = &e.norm,
        exact = &e.exact
    ));
    insert_rows!(Token, search_token, tokens, |e| (
        system = &e.system,
        code = &e.code,
        text = &e.text
    ));
    insert_rows!(Reference, search_reference, references, |e| (
        target_type = &e.target_type,
        target_id = &e.target_id,
        url = &e.url
    ));
    insert_rows!(Date, search_date, dates, |e| (
        low = e.range.low,
        high = e.range.high
    ));
    insert_rows!(Number, search_number, numbers, |e| (value = e.value));
    insert_rows!(Quantity, search_quantity, quantities, |e| (
        low = e.low,
        high = e.high,
        system = &e.system,
        code = &e.code,
        unit = &e.unit
    ));
    insert_rows!(Uri, search_uri, uris, |e| (value = &e.value));
    insert_rows!(Composite, search_composite, composites, |e| (
        system1 = &e.first.system,
        code1 = e.first.code.as_deref().unwrap_or(""),
        system2 = second_token(&e.second).and_then(|t| t.system.as_ref()),
        code2 = second_token(&e.second).and_then(|t| t.code.as_ref()),
        low = second_quantity(&e.second).map(|q| q.0),
        high = second_quantity(&e.second).map(|q| q.1),
        date_low = second_date(&e.second).map(|d| d.0),
        date_high = second_date(&e.second).map(|d| d.1),
        text = second_text(&e.second),
        value3 = e.third,
    ));
    Ok(())
}

fn second_token(s: &Second) -> Option<&crate::fhir::search::index::TokenEntry> {
    match s {
        Second::Token(t) => Some(t),
        _ => None,
    }
}

fn second_quantity(s: &Second) -> Option<(f64, f64)> {
    match s {
        Second::Quantity(q) => Some((q.low, q.high)),
        _ => None,
    }
}

fn second_date(s: &Second) -> Option<(i64, i64)> {
    match s {
        Second::Date(d) => Some((d.low, d.high)),
        _ => None,
    }
}

fn second_text(s: &Second) -> Option<&String> {
    match s {
        Second::String(t) => Some(&t.norm),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Rewrite;

    #[test]
    fn an_update_rewrites_only_the_places_that_changed() {
        let r = Rewrite::of(&["a", "b", "c"], &["a", "x", "c"]);
        assert_eq!((r.changed.as_slice(), r.tail, r.same), (&[1][..], 3, false));
        assert!(!r.writes(0) && r.writes(1) && !r.writes(2));
    }

    #[test]
    fn a_longer_or_shorter_list_rewrites_its_tail() {
        let longer = Rewrite::of(&["a", "b"], &["a", "b", "c", "d"]);
        assert_eq!((longer.changed.len(), longer.tail), (0, 2));
        assert!(!longer.writes(1) && longer.writes(2) && longer.writes(3));
        let shorter = Rewrite::of(&["a", "b", "c"], &["z"]);
        assert_eq!((shorter.changed.as_slice(), shorter.tail), (&[0][..], 1));
        assert!(!shorter.same);
    }

    #[test]
    fn identical_lists_are_left_alone() {
        assert!(Rewrite::of(&["a", "b"], &["a", "b"]).same);
        assert!(Rewrite::of::<&str>(&[], &[]).same);
    }
}
