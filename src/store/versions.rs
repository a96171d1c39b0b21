//! Resource versions as stored, and the reads of current, past and historical versions.
//! Writes live in `store::write`.

use super::db::DbConnection;
use super::error::StoreError;
use super::schema::{resource_versions, resources};
use crate::fhir::resource::Micros;
use diesel::prelude::*;
use serde_json::Value;
use std::sync::Arc;

/// Who is writing and under which correlation id: copied onto outbox and audit rows.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub correlation_id: String,
    pub actor: Actor,
    /// The rules the writer is held to: every write is checked against them where the old and
    /// new contents are at hand (`store::write`), so no path (REST, Bundle, conditional,
    /// HL7v2) skips them.
    pub rules: Arc<dyn super::rules::WriteRules>,
}

/// Who writes. The server's own writes (a Subscription's status, the topic Basics it keeps)
/// are spared the rules clients are held to, so the server is a variant that no token, sign-in
/// or sender can produce, never a name that one could choose as its `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Server,
    /// A client, user or sender, by the name the audit trail keeps.
    Named(String),
}

impl Actor {
    pub fn named(name: impl Into<String>) -> Actor {
        Actor::Named(name.into())
    }

    pub fn is_server(&self) -> bool {
        matches!(self, Actor::Server)
    }

    /// The name the audit trail records.
    pub fn audit_name(&self) -> &str {
        match self {
            Actor::Server => "emrsync (server)",
            Actor::Named(name) => name,
        }
    }
}

/// The kind of change, as recorded in history (`Bundle.entry.request.method`) and the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Method {
        match s {
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// One version of a resource as stored. `content` is the canonical JSON text (empty if deleted).
#[derive(Debug, Clone)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: Micros,
    pub method: Method,
    pub deleted: bool,
    pub content: Arc<str>,
    pub seq: i64,
}

impl Version {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.content).unwrap_or(Value::Null)
    }

    /// True when this version is live and says what `wanted` says (its `meta` aside): writers
    /// that restate a resource (the server's topics, HL7v2 maps) skip a write that would
    /// change nothing.
    pub fn says(&self, wanted: &Value) -> bool {
        !self.deleted && same_but_meta(&self.json(), wanted)
    }

    /// The answer to reading a deleted version (410 Gone, with its version and time).
    pub fn gone(&self) -> StoreError {
        StoreError::Gone {
            resource_type: self.resource_type.clone(),
            id: self.id.clone(),
            version_id: self.version_id,
            last_updated: self.last_updated,
        }
    }
}

/// Whether two resources say the same, their `meta` (version, time) aside.
pub fn same_but_meta(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let fields =
                |o: &'_ serde_json::Map<String, Value>| o.keys().filter(|k| *k != "meta").count();
            fields(a) == fields(b)
                && a.iter()
                    .filter(|(k, _)| *k != "meta")
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// A resource's current version as read inside a write, its content parsed once: a writer that
/// restates resources (the HL7v2 maps, a merge) compares the content, carries fields over from
/// it and replaces its index rows, and parsing it for each of those was a noticeable share of
/// the one writer's time.
#[derive(Debug, Default)]
pub struct Current {
    /// `None`: the resource never existed.
    pub version: Option<Version>,
    /// The content; `None` when absent or deleted.
    pub json: Option<Value>,
}

impl Current {
    pub fn read(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<Current, StoreError> {
        Ok(Current::of(current(conn, rtype, id)?))
    }

    /// As `read`, in a write transaction that will replace the version: on PostgreSQL the head
    /// row is locked first (until COMMIT), so that writers restating one resource at once take
    /// turns instead of failing each other's version check. SQLite's one writer takes turns
    /// already.
    pub fn read_locked(
        conn: &mut DbConnection,
        rtype: &str,
        id: &str,
    ) -> Result<Current, StoreError> {
        if let DbConnection::Pg(pg) = conn {
            resources::table
                .filter(resources::resource_type.eq(rtype))
                .filter(resources::resource_id.eq(id))
                .select(resources::version_id)
                .for_update()
                .get_result::<i64>(pg)
                .optional()?;
        }
        Current::read(conn, rtype, id)
    }

    /// `version` as the current one (`None`: the resource never existed).
    pub fn of(version: Option<Version>) -> Current {
        let json = version.as_ref().filter(|v| !v.deleted).map(Version::json);
        Current { version, json }
    }

    /// The current version number and whether it is deleted; `None` if it never existed.
    pub fn head(&self) -> Option<(i64, bool)> {
        self.version.as_ref().map(|v| (v.version_id, v.deleted))
    }

    /// Whether the resource is live and says what `wanted` says (`meta` aside).
    pub fn says(&self, wanted: &Value) -> bool {
        self.json.as_ref().is_some_and(|j| same_but_meta(j, wanted))
    }
}

/// The result of a write, for the response and the cache.
#[derive(Debug, Clone)]
pub struct Written {
    pub version: Version,
    /// True when this write created the resource (201), false for an update (200).
    pub created: bool,
    /// The write changed nothing (conditional create that matched, or delete of nothing).
    pub noop: bool,
}

type VersionRow = (i64, String, String, i64, i64, String, bool, String);

fn to_version(row: VersionRow) -> Version {
    let (seq, resource_type, id, version_id, last_updated, method, deleted, content) = row;
    Version {
        resource_type,
        id,
        version_id,
        last_updated,
        method: Method::parse(&method),
        deleted,
        content: content.into(),
        seq,
    }
}

macro_rules! version_columns {
    () => {
        (
            resource_versions::seq,
            resource_versions::resource_type,
            resource_versions::resource_id,
            resource_versions::version_id,
            resource_versions::last_updated,
            resource_versions::method,
            resource_versions::deleted,
            resource_versions::content,
        )
    };
}

/// The current version of a resource, deleted or not; `None` if it never existed.
pub fn current(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
) -> Result<Option<Version>, StoreError> {
    // one statement: the head row joined to the version it points at
    Ok(current_many(conn, rtype, &[id.to_string()])?.pop())
}

/// The current versions of `ids` of one type (deleted ones included), in one query per 300
/// ids; absent ones are left out, the order is not kept.
pub fn current_many(
    conn: &mut DbConnection,
    rtype: &str,
    ids: &[String],
) -> Result<Vec<Version>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(300) {
        let rows: Vec<VersionRow> = resources::table
            .inner_join(
                resource_versions::table.on(resource_versions::resource_type
                    .eq(resources::resource_type)
                    .and(resource_versions::resource_id.eq(resources::resource_id))
                    .and(resource_versions::version_id.eq(resources::version_id))),
            )
            .filter(resources::resource_type.eq(rtype))
            .filter(resources::resource_id.eq_any(chunk))
            .select(version_columns!())
            .load(conn)?;
        out.extend(rows.into_iter().map(to_version));
    }
    Ok(out)
}

/// One past or present version.
pub fn version(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    vid: i64,
) -> Result<Option<Version>, StoreError> {
    let row: Option<VersionRow> = resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::resource_id.eq(id))
        .filter(resource_versions::version_id.eq(vid))
        .select(version_columns!())
        .get_result(conn)
        .optional()?;
    Ok(row.map(to_version))
}

/// Many versions at once, by (type, id, version): one query instead of one per version (the
/// subscription dispatcher, the router and the stream's publisher read a batch of changes this
/// way). Absent ones are left out.
pub fn versions(
    conn: &mut DbConnection,
    keys: &[(&str, &str, i64)],
) -> Result<Vec<Version>, StoreError> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    if let DbConnection::Pg(pg) = conn {
        for chunk in keys.chunks(1000) {
            out.extend(versions_pg(pg, chunk)?);
        }
        return Ok(out);
    }
    for chunk in keys.chunks(300) {
        let mut types: Vec<&str> = chunk.iter().map(|k| k.0).collect();
        types.sort_unstable();
        types.dedup();
        let ids: Vec<&str> = chunk.iter().map(|k| k.1).collect();
        let vids: Vec<i64> = chunk.iter().map(|k| k.2).collect();
        // a superset (every listed version of every listed id), narrowed below
        let rows: Vec<VersionRow> = resource_versions::table
            .filter(resource_versions::resource_type.eq_any(&types))
            .filter(resource_versions::resource_id.eq_any(&ids))
            .filter(resource_versions::version_id.eq_any(&vids))
            .select(version_columns!())
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .filter(|r| chunk.iter().any(|k| k.0 == r.1 && k.1 == r.2 && k.2 == r.3))
                .map(to_version),
        );
    }
    Ok(out)
}

/// On PostgreSQL the keys are a relation joined to the unique (type, id, version) index: one
/// row per key whatever the statistics say. Three `= ANY` lists, planned while the table was
/// small (a new database, before its first ANALYZE), read every version of the type and
/// filtered: 5-50 ms a batch, growing with the table, where the index takes 0.2 ms. Not a
/// cached prepared statement either, so it is planned with the keys in hand.
fn versions_pg(
    pg: &mut diesel::PgConnection,
    keys: &[(&str, &str, i64)],
) -> Result<Vec<Version>, StoreError> {
    use diesel::sql_types::{Array, BigInt, Text};
    #[derive(QueryableByName)]
    #[diesel(table_name = resource_versions)]
    struct Row {
        seq: i64,
        resource_type: String,
        resource_id: String,
        version_id: i64,
        last_updated: i64,
        method: String,
        deleted: bool,
        content: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT v.seq, v.resource_type, v.resource_id, v.version_id, v.last_updated, v.method, \
         v.deleted, v.content FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, n) \
         JOIN resource_versions v ON v.resource_type = k.t AND v.resource_id = k.i \
         AND v.version_id = k.n",
    )
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .load(pg)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            to_version((
                r.seq,
                r.resource_type,
                r.resource_id,
                r.version_id,
                r.last_updated,
                r.method,
                r.deleted,
                r.content,
            ))
        })
        .collect())
}

/// Which history to read: system (no type), type, or instance; newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub since: Option<Micros>,
    /// Only entries older than this sequence number (the paging cursor).
    pub before_seq: Option<i64>,
    pub count: i64,
}

pub fn history(conn: &mut DbConnection, q: &HistoryQuery) -> Result<Vec<Version>, StoreError> {
    let mut query = resource_versions::table
        .select(version_columns!())
        .into_boxed();
    if let Some(t) = &q.resource_type {
        query = query.filter(resource_versions::resource_type.eq(t.clone()));
    }
    if let Some(id) = &q.id {
        query = query.filter(resource_versions::resource_id.eq(id.clone()));
    }
    if let Some(since) = q.since {
        query = query.filter(resource_versions::last_updated.ge(since));
    }
    if let Some(before) = q.before_seq {
        query = query.filter(resource_versions::seq.lt(before));
    }
    let rows: Vec<VersionRow> = query
        .order(resource_versions::seq.desc())
        .limit(q.count)
        .load(conn)?;
    Ok(rows.into_iter().map(to_version).collect())
}

/// How many entries a history query matches (ignoring the paging cursor), for `Bundle.total`.
pub fn history_total(conn: &mut DbConnection, q: &HistoryQuery) -> Result<i64, StoreError> {
    let mut query = resource_versions::table.count().into_boxed();
    if let Some(t) = &q.resource_type {
        query = query.filter(resource_versions::resource_type.eq(t.clone()));
    }
    if let Some(id) = &q.id {
        query = query.filter(resource_versions::resource_id.eq(id.clone()));
    }
    if let Some(since) = q.since {
        query = query.filter(resource_versions::last_updated.ge(since));
    }
    Ok(query.get_result(conn)?)
}
