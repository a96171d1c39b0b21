//! Running a search: filters (`fhir::search::filter`) become one SQL statement over the
//! current versions and the search index, with bound values only, on either backend; then
//! `_include` and `_revinclude` add the resources the page points at or is pointed at by.
//!
//! Each filter is `resource_id [NOT] IN (rows of an index table)`; filters are ANDed. Pages
//! are cut by position (`order`), never by offset.

mod contained;
mod filter;
mod include;
pub mod meta_in_use;
mod order;
mod predicate;
pub(crate) mod sql;
mod text;

pub use contained::{ContainedMatch, ContainedPage, ContainedSpec, Returned, search_contained};
pub use include::{Include, IncludeKind, includes};
pub use order::{Cursor, SortKey, SortKind};

use super::db::DbConnection;
use super::error::StoreError;
use super::versions::Version;
use crate::fhir::search::ParamType;
use crate::fhir::search::filter::Filter;
use filter::{Owner, filter_sql, filters_sql};
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

/// The `WHERE` condition on `resources r` that selects the scope's matches; `may_drive` lets
/// one filter drive the plan (see `filters_sql`).
fn matches_sql(sql: &mut Sql, scope: Scope, may_drive: bool) -> String {
    let mut all = vec!["r.deleted = FALSE".to_string()];
    match scope {
        Scope::Types(types) => {
            let mut any = Vec::new();
            for (rtype, filters) in types {
                let t = sql.text(rtype);
                let owner = Owner { row: "r", ty: &t };
                let mut conds = vec![format!("r.resource_type = {t}")];
                conds.extend(filters_sql(sql, &owner, filters, may_drive));
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
    if let Some(page) = search_in_key_order(conn, pg, spec)? {
        return Ok(page);
    }
    if let Some(page) = search_by_text_alone(conn, pg, spec)? {
        return Ok(page);
    }
    let mut sql = Sql::new(pg);
    let matches = matches_sql(&mut sql, spec.scope, true);
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
    let source = format!(
        "SELECT r.resource_type, r.resource_id, r.version_id{keys} FROM resources r WHERE {matches}",
        keys = keys.concat()
    );
    let mut page = run_page(conn, sql, &source, spec, false)?;
    page.total = total;
    Ok(page)
}

/// The rows of `source` (a subquery with type, id, version and keys `k1`...) beyond the cursor,
/// in result order, one more than a page to tell whether more follow.
fn run_page(
    conn: &mut DbConnection,
    mut sql: Sql,
    source: &str,
    spec: &SearchSpec,
    first_key_never_null: bool,
) -> Result<Page, SearchError> {
    let reverse = spec.cursor.is_some_and(|c| c.before);
    let beyond = match spec.cursor {
        Some(c) => {
            let only_type = match spec.scope {
                Scope::Types([(t, _)]) => Some(t.as_str()),
                _ => None,
            };
            order::beyond(&mut sql, spec.sort, c, only_type).ok_or(SearchError::BadCursor)?
        }
        None => "TRUE".into(),
    };
    let order = order::order_by(&sql, spec.sort, reverse, first_key_never_null);
    let limit = sql.bind(Bind::Int(spec.count + 1));
    // The page is cut before its versions are read: left to itself, PostgreSQL read the
    // version of every match first, then sorted them (5,000 matches of a phrase: twice the
    // time of the search itself).
    let page_sql = format!(
        "SELECT {VERSION_COLUMNS} FROM (SELECT * FROM ({source}) m WHERE {beyond} \
         ORDER BY {order} LIMIT {limit}) m JOIN resource_versions v \
         ON v.resource_type = m.resource_type AND v.resource_id = m.resource_id \
         AND v.version_id = m.version_id ORDER BY {order}"
    );
    tracing::trace!(target: "emrsync::sql", sql = %page_sql, "search page");
    let mut rows: Vec<VersionRow> = load(conn, &page_sql, &sql.binds)?;
    let more = rows.len() as i64 > spec.count;
    rows.truncate(spec.count.max(0) as usize);
    let mut versions: Vec<Version> = rows.into_iter().map(Version::from).collect();
    if reverse {
        versions.reverse();
    }
    Ok(Page {
        versions,
        total: None,
        more,
    })
}

/// A search of one type whose only filter is full text, in the default order (type, id), read
/// from the text index alone: its first matches by id, then only those looked up. Left to the
/// general plan, PostgreSQL looked every match of a common phrase up in `resources` before
/// cutting the page (it estimates a phrase at a few rows). `None` when the search is not such
/// a one, or asks what this plan does not give (a total, a previous page). PostgreSQL only:
/// on SQLite, which probes the matches in key order anyway, it made `_content` slower (2.3 to
/// 4.0 ms at 20,000 Patients, docs/performance.md).
fn search_by_text_alone(
    conn: &mut DbConnection,
    pg: bool,
    spec: &SearchSpec,
) -> Result<Option<Page>, SearchError> {
    let Scope::Types([(rtype, filters)]) = spec.scope else {
        return Ok(None);
    };
    if !pg {
        return Ok(None);
    }
    let ([Filter::Text(query)], []) = (filters.as_slice(), spec.sort) else {
        return Ok(None);
    };
    let after = match spec.cursor {
        None => None,
        Some(c) if !c.before && c.keys.is_empty() && c.rtype == *rtype => Some(c.id.as_str()),
        Some(_) => return Ok(None),
    };
    if spec.total {
        return Ok(None);
    }
    let mut sql = Sql::new(pg);
    let t = sql.text(rtype);
    let after = after.map(|a| sql.text(a));
    let limit = sql.bind(Bind::Int(spec.count + 1));
    let ids = text::first_ids_sql(&mut sql, &t, query, after.as_deref(), &limit);
    let source = format!(
        "SELECT r.resource_type, r.resource_id, r.version_id FROM ({ids}) x \
         JOIN resources r ON r.resource_type = {t} AND r.resource_id = x.resource_id \
         WHERE r.deleted = FALSE"
    );
    run_page(conn, sql, &source, spec, false).map(Some)
}

/// Below this many matches a sorted search sorts them all rather than walk the key's index.
const FEW: i64 = 2000;

/// Whether the filter that would drive a search of `rtype` matches `FEW` resources or more
/// (counted up to that many only); true when no plain filter could drive.
fn filters_match_many(
    conn: &mut DbConnection,
    pg: bool,
    rtype: &str,
    filters: &[Filter],
) -> Result<bool, SearchError> {
    let mut probe = Sql::new(pg);
    let t = probe.text(rtype);
    let Some(rows) = filter::driver_rows(&mut probe, &t, filters) else {
        return Ok(true);
    };
    let few = probe.bind(Bind::Int(FEW));
    let q = format!("SELECT COUNT(*) AS n FROM ({rows} LIMIT {few}) x");
    let n = load::<Count>(conn, &q, &probe.binds)?
        .first()
        .map(|c| c.n)
        .unwrap_or(0);
    Ok(n >= FEW)
}

/// A sorted search read in the order of the first sort key's index (`Observation?code=X&
/// _sort=-date&_count=10` reads the newest dates first and stops after ten that match),
/// instead of computing the key of every match and sorting them all. It answers when the
/// page fills from resources that have a value for the key; otherwise (the tail of the
/// result, where resources without a value come, or a previous page) it returns `None` and
/// the general plan runs. Both plans order rows the same way.
fn search_in_key_order(
    conn: &mut DbConnection,
    pg: bool,
    spec: &SearchSpec,
) -> Result<Option<Page>, SearchError> {
    let (Some(first), Scope::Types([(rtype, filters)])) = (spec.sort.first(), spec.scope) else {
        return Ok(None);
    };
    let column = match (first.kind, first.descending) {
        (SortKind::Index(ParamType::Date | ParamType::Quantity), false) => "low",
        (SortKind::Index(ParamType::Date | ParamType::Quantity), true) => "high",
        (SortKind::Index(ParamType::Number), _) => "value",
        _ => return Ok(None),
    };
    if spec.total
        || spec.count == 0
        || spec
            .cursor
            .is_some_and(|c| c.before || c.keys.first().is_none_or(|k| k.is_null()))
    {
        return Ok(None);
    }
    let SortKind::Index(kind) = first.kind else {
        return Ok(None);
    };
    // A filter that matches few resources is cheaper to sort whole than to find by walking the
    // key's index (which, for a rare code, would visit most of it).
    if !filters_match_many(conn, pg, rtype, filters)? {
        return Ok(None);
    }
    let table = filter::table_of(kind);
    let mut sql = Sql::new(pg);
    let t = sql.text(rtype);
    let p = sql.text(&first.code);
    let better = if first.descending { ">" } else { "<" };
    let other_param = sql.no_index("o.param");
    let owner = Owner { row: "r", ty: &t };
    let conds = filters_sql(&mut sql, &owner, filters, false);
    let other_keys: Vec<String> = spec.sort[1..]
        .iter()
        .enumerate()
        .map(|(i, key)| format!(", {} AS k{}", key.sql(&mut sql, "r"), i + 2))
        .collect();
    // each resource once: at the index row holding its key (the least or greatest value)
    let source = format!(
        "SELECT r.resource_type, r.resource_id, r.version_id, d.{column} AS k1{others} \
         FROM {table} d JOIN resources r ON r.resource_type = d.resource_type AND r.resource_id = d.resource_id \
         WHERE d.resource_type = {t} AND d.param = {p} AND r.resource_type = {t} AND r.deleted = FALSE \
         AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.resource_type = d.resource_type \
         AND o.resource_id = d.resource_id AND {other_param} = d.param \
         AND (o.{column} {better} d.{column} OR (o.{column} = d.{column} AND o.n < d.n))){conds}",
        others = other_keys.concat(),
        conds = conds
            .iter()
            .map(|c| format!(" AND {c}"))
            .collect::<String>(),
    );
    let page = run_page(conn, sql, &source, spec, true)?;
    Ok(page.more.then_some(page))
}
