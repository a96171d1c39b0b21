//! Running a search: filters (`fhir::search::filter`) become one SQL statement over the
//! current versions and the search index, with bound values only, on either backend; then
//! `_include` and `_revinclude` add the resources the page points at or is pointed at by.
//!
//! Each filter is `resource_id [NOT] IN (rows of an index table)`; filters are ANDed. Pages
//! are cut by position (`order`), never by offset.

mod filter;
mod include;
mod order;
mod predicate;
mod sql;

pub use include::{Include, IncludeKind, includes};
pub use order::{Cursor, SortKey, SortKind};

use super::db::DbConnection;
use super::error::StoreError;
use super::versions::Version;
use crate::fhir::search::filter::Filter;
use filter::{Owner, filter_sql};
use sql::{Bind, Count, Sql, VERSION_COLUMNS, VersionRow, load};

/// Which resources a search looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Resources of these types, each with its own filters (a type search has one).
    Types(&'a [(String, Vec<Filter>)]),
    /// Resources of every type, with filters that every type has (`_id`, `_tag`, ...).
    AllTypes(&'a [Filter]),
}

/// A search and the page of it wanted.
#[derive(Debug, Clone)]
pub struct SearchSpec<'a> {
    pub scope: Scope<'a>,
    pub sort: &'a [SortKey],
    /// Page size.
    pub count: i64,
    /// Where the page starts (after, or for a previous page before, this position).
    pub cursor: Option<&'a Cursor>,
    /// Count all matches too.
    pub total: bool,
}

/// One page of matches, in result order.
#[derive(Debug)]
pub struct Page {
    pub versions: Vec<Version>,
    pub total: Option<i64>,
    /// More matches follow this page in the direction it was read (after it, or before it
    /// for a previous page).
    pub more: bool,
}

/// Why a search cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the paging cursor does not belong to this search's _sort")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `WHERE` condition on `resources r` that selects the scope's matches.
fn matches_sql(sql: &mut Sql, scope: Scope) -> String {
    let mut all = vec!["r.deleted = FALSE".to_string()];
    match scope {
        Scope::Types(types) => {
            let mut any = Vec::new();
            for (rtype, filters) in types {
                let t = sql.text(rtype);
                let owner = Owner { row: "r", ty: &t };
                let mut conds = vec![format!("r.resource_type = {t}")];
                conds.extend(filters.iter().map(|f| filter_sql(sql, &owner, f)));
                any.push(conds.join(" AND "));
            }
            match any.len() {
                0 => all.push("FALSE".into()),
                1 => all.push(any.remove(0)),
                _ => all.push(format!("(({}))", any.join(") OR ("))),
            }
        }
        Scope::AllTypes(filters) => {
            let owner = Owner {
                row: "r",
                ty: "r.resource_type",
            };
            all.extend(filters.iter().map(|f| filter_sql(sql, &owner, f)));
        }
    }
    all.join(" AND ")
}

/// Run `spec`: one page of current, not deleted resources that match.
pub fn search(conn: &mut DbConnection, spec: &SearchSpec) -> Result<Page, SearchError> {
    let pg = matches!(conn, DbConnection::Pg(_));
    let mut sql = Sql::new(pg);
    let matches = matches_sql(&mut sql, spec.scope);
    let total = if spec.total {
        let count_sql = format!("SELECT COUNT(*) AS n FROM resources r WHERE {matches}");
        let counted: Vec<Count> = load(conn, &count_sql, &sql.binds)?;
        Some(counted.first().map(|c| c.n).unwrap_or(0))
    } else {
        None
    };
    let keys: Vec<String> = spec
        .sort
        .iter()
        .enumerate()
        .map(|(i, key)| format!(", {} AS k{}", key.sql(&mut sql, "r"), i + 1))
        .collect();
    let reverse = spec.cursor.is_some_and(|c| c.before);
    let beyond = match spec.cursor {
        Some(c) => order::beyond(&mut sql, spec.sort, c).ok_or(SearchError::BadCursor)?,
        None => "TRUE".into(),
    };
    let order = order::order_by(&sql, spec.sort, reverse);
    let limit = sql.bind(Bind::Int(spec.count + 1));
    let page_sql = format!(
        "SELECT {VERSION_COLUMNS} FROM (SELECT r.resource_type, r.resource_id, r.version_id{keys} \
         FROM resources r WHERE {matches}) m JOIN resource_versions v \
         ON v.resource_type = m.resource_type AND v.resource_id = m.resource_id \
         AND v.version_id = m.version_id WHERE {beyond} ORDER BY {order} LIMIT {limit}",
        keys = keys.concat()
    );
    let mut rows: Vec<VersionRow> = load(conn, &page_sql, &sql.binds)?;
    let more = rows.len() as i64 > spec.count;
    rows.truncate(spec.count.max(0) as usize);
    let mut versions: Vec<Version> = rows.into_iter().map(Version::from).collect();
    if reverse {
        versions.reverse();
    }
    Ok(Page {
        versions,
        total,
        more,
    })
}
