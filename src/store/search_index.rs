//! Writing the search index: the rows of `fhir::search::index` entries, in the caller's
//! transaction, so that a resource is findable exactly when its version is committed.

use super::db::DbConnection;
use super::error::StoreError;
use super::schema::{
    search_composite, search_date, search_number, search_quantity, search_reference, search_string,
    search_token, search_uri,
};
use crate::fhir::search::ParamType;
use crate::fhir::search::index::{Entries, Second};
use diesel::prelude::*;

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

/// Whether two versions' rows for `table` differ.
fn differ(old: &Entries, new: &Entries, table: ParamType) -> bool {
    match table {
        ParamType::String => old.strings != new.strings,
        ParamType::Token => old.tokens != new.tokens,
        ParamType::Reference => old.references != new.references,
        ParamType::Date => old.dates != new.dates,
        ParamType::Number => old.numbers != new.numbers,
        ParamType::Quantity => old.quantities != new.quantities,
        ParamType::Uri => old.uris != new.uris,
        ParamType::Composite => old.composites != new.composites,
        ParamType::Special => false,
    }
}

/// Remove every index row of `rtype/id` (on delete): a range of the tables' primary keys.
pub fn clear(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    clear_tables(conn, rtype, id, |_| true)
}

/// Move the index of `rtype/id` from its `old` version's entries to its `new` one's. Only the
/// tables whose rows differ are touched: an update usually changes one or two kinds of value,
/// and deleting and re-inserting identical rows was most of an update's index cost. A table
/// that differs is cleared even when `old` has no rows in it: rows written under older
/// SearchParameter definitions must not collide with the new ones.
pub fn replace(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    old: &Entries,
    new: &Entries,
) -> Result<(), StoreError> {
    clear_tables(conn, rtype, id, |t| differ(old, new, t))?;
    insert_tables(conn, &[(rtype, id, new)], |t| differ(old, new, t))
}

fn clear_tables(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    only: impl Fn(ParamType) -> bool,
) -> Result<(), StoreError> {
    macro_rules! clear_table {
        ($table:ident) => {
            diesel::delete(
                $table::table
                    .filter($table::resource_type.eq(rtype))
                    .filter($table::resource_id.eq(id)),
            )
            .execute(conn)?
        };
    }
    for table in TABLES.into_iter().filter(|t| only(*t)) {
        match table {
            ParamType::String => clear_table!(search_string),
            ParamType::Token => clear_table!(search_token),
            ParamType::Reference => clear_table!(search_reference),
            ParamType::Date => clear_table!(search_date),
            ParamType::Number => clear_table!(search_number),
            ParamType::Quantity => clear_table!(search_quantity),
            ParamType::Uri => clear_table!(search_uri),
            ParamType::Composite => clear_table!(search_composite),
            ParamType::Special => 0,
        };
    }
    Ok(())
}

/// Insert the index rows of new current versions: `(type, id, entries)` each.
pub fn insert(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
) -> Result<(), StoreError> {
    insert_tables(conn, owners, |_| true)
}

fn insert_tables(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
    only: impl Fn(ParamType) -> bool,
) -> Result<(), StoreError> {
    macro_rules! insert_rows {
        ($kind:ident, $table:ident, $field:ident, |$e:ident| ( $($col:ident = $val:expr),* $(,)? )) => {{
            if only(ParamType::$kind) {
            let rows: Vec<_> = owners
                .iter()
                .flat_map(|(rtype, id, entries)| {
                    entries.$field.iter().enumerate().map(move |(n, $e)| {
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
