//! Change control of the routes: every configuration that was ever in force is kept with who
//! made it, when, and what it changed; the newest is the one in force. A configuration that
//! says what the one in force says is not recorded again (a restart reloading the same file
//! changes nothing).

use super::config::Routes;
use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::route_configs as rc;
use diesel::prelude::*;
use serde::Serialize;

/// One recorded configuration, without its text.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = rc)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub version: i64,
    pub recorded_at: i64,
    pub actor: String,
    pub summary: String,
}

/// The configuration in force and its version (`None`: never configured: no targets).
pub fn current(conn: &mut DbConnection) -> Result<Option<(i64, Routes)>, StoreError> {
    let row: Option<(i64, String)> = rc::table
        .order(rc::version.desc())
        .select((rc::version, rc::config))
        .limit(1)
        .get_result(conn)
        .optional()?;
    Ok(match row {
        Some((v, text)) => Some((
            v,
            // it was checked when recorded; a build that reads it differently says so
            serde_json::from_str(&text).map_err(|e| {
                StoreError::Database(format!("route configuration {v} does not read: {e}"))
            })?,
        )),
        None => None,
    })
}

/// The version in force, cheaply (what the workers poll to see a change).
pub fn version(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(rc::table
        .select(diesel::dsl::max(rc::version))
        .get_result::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Record `routes` as made by `actor` (in the caller's write transaction); returns the
/// revision in force afterwards (the same one when nothing changed).
pub fn record(
    conn: &mut DbConnection,
    routes: &Routes,
    actor: &str,
) -> Result<Revision, StoreError> {
    let (version, before) = current(conn)?.unwrap_or_default();
    if version > 0 && before == *routes {
        return Ok(rc::table
            .find(version)
            .select(Revision::as_select())
            .get_result(conn)?);
    }
    let revision = Revision {
        version: version + 1,
        recorded_at: now_micros(),
        actor: actor.to_string(),
        summary: routes.summary_since(&before),
    };
    let text = serde_json::to_string(routes)
        .map_err(|e| StoreError::Database(format!("routes do not write: {e}")))?;
    diesel::insert_into(rc::table)
        .values((
            rc::version.eq(revision.version),
            rc::recorded_at.eq(revision.recorded_at),
            rc::actor.eq(&revision.actor),
            rc::summary.eq(&revision.summary),
            rc::config.eq(text),
        ))
        .execute(conn)?;
    Ok(revision)
}

/// The revisions, newest first.
pub fn history(conn: &mut DbConnection, limit: i64) -> Result<Vec<Revision>, StoreError> {
    Ok(rc::table
        .order(rc::version.desc())
        .limit(limit)
        .select(Revision::as_select())
        .load(conn)?)
}

/// One revision's configuration.
pub fn at(conn: &mut DbConnection, version: i64) -> Result<Option<Routes>, StoreError> {
    let text: Option<String> = rc::table
        .find(version)
        .select(rc::config)
        .get_result(conn)
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Database(format!("route configuration {version}: {e}")))
    })
    .transpose()
}
