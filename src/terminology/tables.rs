//! The terminology rows (migration 2026-12-07-000019_terminology): each CodeSystem, ValueSet
//! and ConceptMap by url and version, a code system's concepts and hierarchy, the packages
//! loaded.

use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;

diesel::table! {
    term_resources (resource_type, resource_id) {
        resource_type -> Text,
        resource_id -> Text,
        url -> Text,
        version -> Text,
        name -> Nullable<Text>,
        status -> Nullable<Text>,
        content -> Nullable<Text>,
    }
}

diesel::table! {
    term_concepts (system_id, code) {
        system_id -> Text,
        code -> Text,
        position -> BigInt,
        display -> Nullable<Text>,
        definition -> Nullable<Text>,
        inactive -> Bool,
        properties -> Nullable<Text>,
        designations -> Nullable<Text>,
    }
}

diesel::table! {
    term_parents (system_id, child, parent) {
        system_id -> Text,
        child -> Text,
        parent -> Text,
    }
}

diesel::table! {
    term_packages (name, version) {
        name -> Text,
        version -> Text,
        sha256 -> Text,
        resources -> BigInt,
        loaded_at -> BigInt,
    }
}

/// A canonical resource as the operations find it.
#[derive(Debug, Clone, Queryable, Insertable, PartialEq)]
#[diesel(table_name = term_resources)]
pub struct Canonical {
    pub resource_type: String,
    pub resource_id: String,
    pub url: String,
    pub version: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub content: Option<String>,
}

#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = term_concepts)]
pub struct ConceptRow {
    pub system_id: String,
    pub code: String,
    pub position: i64,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub inactive: bool,
    pub properties: Option<String>,
    pub designations: Option<String>,
}

#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = term_parents)]
pub struct ParentRow {
    pub system_id: String,
    pub child: String,
    pub parent: String,
}

/// Rows per statement: PostgreSQL takes at most 65,535 bound values in one.
const CHUNK: usize = 1000;

/// The resources of `rtype` with this url, every version.
pub fn by_url(
    conn: &mut DbConnection,
    rtype: &str,
    url: &str,
) -> Result<Vec<Canonical>, StoreError> {
    use term_resources::dsl as r;
    Ok(r::term_resources
        .filter(r::resource_type.eq(rtype))
        .filter(r::url.eq(url))
        .load(conn)?)
}

/// Every resource of `rtype` (the ConceptMaps, to index what they translate).
pub fn all_of(conn: &mut DbConnection, rtype: &str) -> Result<Vec<Canonical>, StoreError> {
    use term_resources::dsl as r;
    Ok(r::term_resources
        .filter(r::resource_type.eq(rtype))
        .order(r::resource_id)
        .load(conn)?)
}

pub fn of_resource(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
) -> Result<Option<Canonical>, StoreError> {
    use term_resources::dsl as r;
    Ok(r::term_resources
        .filter(r::resource_type.eq(rtype))
        .filter(r::resource_id.eq(id))
        .get_result(conn)
        .optional()?)
}

/// Record `row` for its resource, replacing what its previous version said.
pub fn put_resource(conn: &mut DbConnection, row: &Canonical) -> Result<(), StoreError> {
    remove_resource(conn, &row.resource_type, &row.resource_id)?;
    diesel::insert_into(term_resources::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn remove_resource(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<(), StoreError> {
    use term_resources::dsl as r;
    diesel::delete(
        r::term_resources
            .filter(r::resource_type.eq(rtype))
            .filter(r::resource_id.eq(id)),
    )
    .execute(conn)?;
    Ok(())
}

/// Forget a code system's concepts and hierarchy.
pub fn clear_concepts(conn: &mut DbConnection, system: &str) -> Result<(), StoreError> {
    diesel::delete(term_concepts::table.filter(term_concepts::system_id.eq(system)))
        .execute(conn)?;
    diesel::delete(term_parents::table.filter(term_parents::system_id.eq(system))).execute(conn)?;
    Ok(())
}

pub fn insert_concepts(conn: &mut DbConnection, rows: Vec<ConceptRow>) -> Result<(), StoreError> {
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        crate::store::insert_all!(conn, term_concepts::table, rows)?;
        rows = rest;
    }
    Ok(())
}

pub fn insert_parents(conn: &mut DbConnection, rows: Vec<ParentRow>) -> Result<(), StoreError> {
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        crate::store::insert_all!(conn, term_parents::table, rows)?;
        rows = rest;
    }
    Ok(())
}

pub fn concepts(conn: &mut DbConnection, system: &str) -> Result<Vec<ConceptRow>, StoreError> {
    use term_concepts::dsl as c;
    Ok(c::term_concepts
        .filter(c::system_id.eq(system))
        .order(c::position)
        .load(conn)?)
}

pub fn parents(conn: &mut DbConnection, system: &str) -> Result<Vec<ParentRow>, StoreError> {
    use term_parents::dsl as p;
    Ok(p::term_parents.filter(p::system_id.eq(system)).load(conn)?)
}

/// The sha256 a package of this name and version was loaded with.
pub fn package_loaded(
    conn: &mut DbConnection,
    name: &str,
    version: &str,
) -> Result<Option<String>, StoreError> {
    use term_packages::dsl as p;
    Ok(p::term_packages
        .filter(p::name.eq(name))
        .filter(p::version.eq(version))
        .select(p::sha256)
        .get_result(conn)
        .optional()?)
}

pub fn record_package(
    conn: &mut DbConnection,
    name: &str,
    version: &str,
    sha256: &str,
    resources: i64,
) -> Result<(), StoreError> {
    use term_packages::dsl as p;
    diesel::delete(
        p::term_packages
            .filter(p::name.eq(name))
            .filter(p::version.eq(version)),
    )
    .execute(conn)?;
    diesel::insert_into(p::term_packages)
        .values((
            p::name.eq(name),
            p::version.eq(version),
            p::sha256.eq(sha256),
            p::resources.eq(resources),
            p::loaded_at.eq(crate::fhir::resource::now_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

diesel::table! {
    term_unmapped (system, code, source, element) {
        system -> Text,
        code -> Text,
        source -> Text,
        element -> Text,
        display -> Nullable<Text>,
        first_seen -> BigInt,
        last_seen -> BigInt,
        count -> BigInt,
        example -> Text,
    }
}

/// One code of the unmapped codes worklist.
#[derive(Debug, Clone, Queryable, Insertable, serde::Serialize)]
#[diesel(table_name = term_unmapped)]
#[serde(rename_all = "camelCase")]
pub struct UnmappedRow {
    pub system: String,
    pub code: String,
    pub source: String,
    pub element: String,
    pub display: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
    pub example: String,
}

/// Add what was met to the worklist: a code already there is counted on.
pub fn count_unmapped(conn: &mut DbConnection, rows: &[UnmappedRow]) -> Result<(), StoreError> {
    use term_unmapped::dsl as u;
    for r in rows {
        let updated = diesel::update(
            u::term_unmapped
                .filter(u::system.eq(&r.system))
                .filter(u::code.eq(&r.code))
                .filter(u::source.eq(&r.source))
                .filter(u::element.eq(&r.element)),
        )
        .set((
            u::count.eq(u::count + r.count),
            u::last_seen.eq(r.last_seen),
        ))
        .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(u::term_unmapped)
                .values(r)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// The worklist, most met first; codes a map now translates are the caller's to drop.
pub fn unmapped(
    conn: &mut DbConnection,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<UnmappedRow>, StoreError> {
    use term_unmapped::dsl as u;
    let mut q = u::term_unmapped.into_boxed();
    if let Some(s) = source {
        q = q.filter(u::source.eq(s.to_string()));
    }
    Ok(q.order((u::count.desc(), u::last_seen.desc()))
        .limit(limit)
        .load(conn)?)
}

/// Forget one code of the worklist (its resources were re-normalised).
pub fn forget_unmapped(conn: &mut DbConnection, row: &UnmappedRow) -> Result<(), StoreError> {
    use term_unmapped::dsl as u;
    diesel::delete(
        u::term_unmapped
            .filter(u::system.eq(&row.system))
            .filter(u::code.eq(&row.code))
            .filter(u::source.eq(&row.source))
            .filter(u::element.eq(&row.element)),
    )
    .execute(conn)?;
    Ok(())
}

/// The ids of `rtype` resources whose search parameter `param` has the token `system|code`
/// (the search index's own lookup), at most `limit`.
pub fn carrying(
    conn: &mut DbConnection,
    (rtype, param): (&str, &str),
    (system, code): (&str, &str),
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    use crate::store::schema::search_token::dsl as t;
    Ok(t::search_token
        .filter(t::resource_type.eq(rtype))
        .filter(t::param.eq(param))
        .filter(t::code.eq(code))
        .filter(t::system.eq(system))
        .select(t::resource_id)
        .distinct()
        .order(t::resource_id)
        .limit(limit)
        .load(conn)?)
}
