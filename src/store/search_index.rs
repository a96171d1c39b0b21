//! Writing the search index: the rows of `fhir::search::index` entries, in the caller's
//! transaction, so that a resource is findable exactly when its version is committed.

use super::db::DbConnection;
use super::error::StoreError;
use super::schema::{
    search_composite, search_date, search_number, search_quantity, search_reference, search_string,
    search_token, search_uri,
};
use crate::fhir::search::index::{Entries, Second};
use diesel::prelude::*;

/// Rows per multi-row statement (PostgreSQL allows 65,535 bound values; composites bind 12).
const CHUNK: usize = 1000;

/// Remove every index row of `rtype/id` (its old version's, before an update or on delete):
/// a range of the tables' primary keys.
pub fn clear(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    macro_rules! clear_table {
        ($table:ident) => {
            diesel::delete(
                $table::table
                    .filter($table::resource_type.eq(rtype))
                    .filter($table::resource_id.eq(id)),
            )
            .execute(conn)?;
        };
    }
    clear_table!(search_string);
    clear_table!(search_token);
    clear_table!(search_reference);
    clear_table!(search_date);
    clear_table!(search_number);
    clear_table!(search_quantity);
    clear_table!(search_uri);
    clear_table!(search_composite);
    Ok(())
}

/// Insert the index rows of new current versions: `(type, id, entries)` each.
pub fn insert(
    conn: &mut DbConnection,
    owners: &[(&str, &str, &Entries)],
) -> Result<(), StoreError> {
    macro_rules! insert_rows {
        ($table:ident, $field:ident, |$e:ident| ( $($col:ident = $val:expr),* $(,)? )) => {{
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
        }};
    }
    insert_rows!(search_string, strings, |e| (
        norm = &e.norm,
        exact = &e.exact
    ));
    insert_rows!(search_token, tokens, |e| (
        system = &e.system,
        code = &e.code,
        text = &e.text
    ));
    insert_rows!(search_reference, references, |e| (
        target_type = &e.target_type,
        target_id = &e.target_id,
        url = &e.url
    ));
    insert_rows!(search_date, dates, |e| (
        low = e.range.low,
        high = e.range.high
    ));
    insert_rows!(search_number, numbers, |e| (value = e.value));
    insert_rows!(search_quantity, quantities, |e| (
        low = e.low,
        high = e.high,
        system = &e.system,
        code = &e.code,
        unit = &e.unit
    ));
    insert_rows!(search_uri, uris, |e| (value = &e.value));
    insert_rows!(search_composite, composites, |e| (
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
