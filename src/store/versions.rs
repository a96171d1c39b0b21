//! Resource versions: the write path (version row, current pointer, identifier index, outbox
//! event and audit row, all in the caller's transaction) and the reads of current, past and
//! historical versions.

use super::db::DbConnection;
use super::error::StoreError;
use super::schema::{audit_events, outbox, resource_identifiers, resource_versions, resources};
use crate::fhir::FhirId;
use crate::fhir::resource::{Micros, now_micros, stamp};
use diesel::prelude::*;
use serde_json::Value;
use std::sync::Arc;

/// Who is writing and under which correlation id: copied onto outbox and audit rows.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub correlation_id: String,
    pub actor: String,
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

    fn parse(s: &str) -> Method {
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
    let head: Option<i64> = resources::table
        .filter(resources::resource_type.eq(rtype))
        .filter(resources::resource_id.eq(id))
        .select(resources::version_id)
        .first(conn)
        .optional()?;
    match head {
        Some(v) => version(conn, rtype, id, v),
        None => Ok(None),
    }
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
        .first(conn)
        .optional()?;
    Ok(row.map(to_version))
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

/// Ids of current, not deleted resources of a type carrying an identifier (`system` None: any).
pub fn find_by_identifier(
    conn: &mut DbConnection,
    rtype: &str,
    system: Option<&str>,
    value: &str,
) -> Result<Vec<String>, StoreError> {
    let mut query = resource_identifiers::table
        .filter(resource_identifiers::resource_type.eq(rtype))
        .filter(resource_identifiers::value.eq(value))
        .select(resource_identifiers::resource_id)
        .distinct()
        .into_boxed();
    if let Some(s) = system {
        query = query.filter(resource_identifiers::system.eq(s.to_string()));
    }
    Ok(query.load(conn)?)
}

/// Write a new version of `rtype/id` (create when absent). `expected` is If-Match's version.
/// Must run inside a transaction: the version, current pointer, identifier rows, outbox event and
/// audit row commit together or not at all.
pub fn put(
    conn: &mut DbConnection,
    rtype: &str,
    id: &FhirId,
    resource: &Value,
    method: Method,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    let head = head(conn, rtype, id.as_str())?;
    check_expected(head, expected)?;
    let version_id = head.map(|(v, _)| v + 1).unwrap_or(1);
    let created = head.is_none_or(|(_, deleted)| deleted);
    let now = now_micros();
    let stamped = stamp(resource, id, version_id, now);
    let content: Arc<str> = serde_json::to_string(&stamped)
        .expect("JSON values serialise")
        .into();
    let seq = insert_version(
        conn,
        rtype,
        id.as_str(),
        version_id,
        now,
        method,
        false,
        &content,
        ctx,
    )?;
    set_head(
        conn,
        rtype,
        id.as_str(),
        version_id,
        now,
        false,
        head.is_some(),
    )?;
    index_identifiers(conn, rtype, id.as_str(), Some(&stamped))?;
    let action = if created { "create" } else { "update" };
    record_change(
        conn,
        rtype,
        id.as_str(),
        version_id,
        action,
        method,
        now,
        ctx,
    )?;
    Ok(Written {
        version: Version {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated: now,
            method,
            deleted: false,
            content,
            seq,
        },
        created,
        noop: false,
    })
}

/// Delete `rtype/id`: a tombstone version. Deleting what is absent or already deleted is a no-op.
pub fn delete(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    let head = head(conn, rtype, id)?;
    check_expected(head, expected)?;
    let Some((current, false)) = head else {
        let version = Version {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id: head.map(|(v, _)| v).unwrap_or(0),
            last_updated: now_micros(),
            method: Method::Delete,
            deleted: true,
            content: "".into(),
            seq: 0,
        };
        return Ok(Written {
            version,
            created: false,
            noop: true,
        });
    };
    let version_id = current + 1;
    let now = now_micros();
    let seq = insert_version(
        conn,
        rtype,
        id,
        version_id,
        now,
        Method::Delete,
        true,
        "",
        ctx,
    )?;
    set_head(conn, rtype, id, version_id, now, true, true)?;
    index_identifiers(conn, rtype, id, None)?;
    record_change(
        conn,
        rtype,
        id,
        version_id,
        "delete",
        Method::Delete,
        now,
        ctx,
    )?;
    let version = Version {
        resource_type: rtype.to_string(),
        id: id.to_string(),
        version_id,
        last_updated: now,
        method: Method::Delete,
        deleted: true,
        content: "".into(),
        seq,
    };
    Ok(Written {
        version,
        created: false,
        noop: false,
    })
}

/// Record a failed or refused change in the audit trail (in its own transaction, since the
/// change itself was rolled back).
pub fn audit_failure(
    conn: &mut DbConnection,
    action: &str,
    target: Option<(&str, &str)>,
    detail: &str,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::recorded_at.eq(now_micros()),
            audit_events::actor.eq(&ctx.actor),
            audit_events::action.eq(action),
            audit_events::resource_type.eq(target.map(|t| t.0)),
            audit_events::resource_id.eq(target.map(|t| t.1)),
            audit_events::outcome.eq("failure"),
            audit_events::correlation_id.eq(&ctx.correlation_id),
            audit_events::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

fn head(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq(rtype))
        .filter(resources::resource_id.eq(id))
        .select((resources::version_id, resources::deleted))
        .first(conn)
        .optional()?)
}

fn check_expected(head: Option<(i64, bool)>, expected: Option<i64>) -> Result<(), StoreError> {
    match (expected, head) {
        (Some(e), Some((current, _))) if e != current => Err(StoreError::PreconditionFailed {
            expected: e,
            current,
        }),
        (Some(e), None) => Err(StoreError::PreconditionFailed {
            expected: e,
            current: 0,
        }),
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_version(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    version_id: i64,
    now: Micros,
    method: Method,
    deleted: bool,
    content: &str,
    ctx: &WriteContext,
) -> Result<i64, StoreError> {
    diesel::insert_into(resource_versions::table)
        .values((
            resource_versions::resource_type.eq(rtype),
            resource_versions::resource_id.eq(id),
            resource_versions::version_id.eq(version_id),
            resource_versions::last_updated.eq(now),
            resource_versions::method.eq(method.as_str()),
            resource_versions::deleted.eq(deleted),
            resource_versions::content.eq(content),
            resource_versions::correlation_id.eq(&ctx.correlation_id),
        ))
        .execute(conn)?;
    // The sequence number orders history pages; read back inside the same transaction.
    Ok(resource_versions::table
        .filter(resource_versions::resource_type.eq(rtype))
        .filter(resource_versions::resource_id.eq(id))
        .filter(resource_versions::version_id.eq(version_id))
        .select(resource_versions::seq)
        .first(conn)?)
}

fn set_head(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    version_id: i64,
    now: Micros,
    deleted: bool,
    exists: bool,
) -> Result<(), StoreError> {
    if exists {
        let target = resources::table
            .filter(resources::resource_type.eq(rtype))
            .filter(resources::resource_id.eq(id))
            // guards the pointer too: only the writer that read version N moves it to N+1
            .filter(resources::version_id.eq(version_id - 1));
        let moved = diesel::update(target)
            .set((
                resources::version_id.eq(version_id),
                resources::last_updated.eq(now),
                resources::deleted.eq(deleted),
            ))
            .execute(conn)?;
        if moved != 1 {
            return Err(StoreError::Conflict(format!(
                "{rtype}/{id} changed during this write"
            )));
        }
    } else {
        diesel::insert_into(resources::table)
            .values((
                resources::resource_type.eq(rtype),
                resources::resource_id.eq(id),
                resources::version_id.eq(version_id),
                resources::last_updated.eq(now),
                resources::deleted.eq(deleted),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Replace the identifier rows of a resource with those of its new version (none if deleted).
fn index_identifiers(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    resource: Option<&Value>,
) -> Result<(), StoreError> {
    let owner = resource_identifiers::table
        .filter(resource_identifiers::resource_type.eq(rtype))
        .filter(resource_identifiers::resource_id.eq(id));
    diesel::delete(owner).execute(conn)?;
    let Some(identifiers) = resource.and_then(|r| r.get("identifier")) else {
        return Ok(());
    };
    let list: Vec<&Value> = match identifiers {
        Value::Array(a) => a.iter().collect(),
        single => vec![single], // a few resources (e.g. Bundle) have a single identifier
    };
    let rows: Vec<_> = list
        .into_iter()
        .filter_map(|i| {
            let value = i.get("value")?.as_str()?;
            let system = i.get("system").and_then(Value::as_str).unwrap_or("");
            Some((
                resource_identifiers::resource_type.eq(rtype),
                resource_identifiers::resource_id.eq(id),
                resource_identifiers::system.eq(system),
                resource_identifiers::value.eq(value),
            ))
        })
        .collect();
    for row in rows {
        diesel::insert_into(resource_identifiers::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record_change(
    conn: &mut DbConnection,
    rtype: &str,
    id: &str,
    version_id: i64,
    action: &str,
    method: Method,
    now: Micros,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    diesel::insert_into(outbox::table)
        .values((
            outbox::resource_type.eq(rtype),
            outbox::resource_id.eq(id),
            outbox::version_id.eq(version_id),
            outbox::action.eq(action),
            outbox::correlation_id.eq(&ctx.correlation_id),
            outbox::created_at.eq(now),
        ))
        .execute(conn)?;
    let audit_action = match method {
        Method::Patch => "patch",
        _ => action,
    };
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::recorded_at.eq(now),
            audit_events::actor.eq(&ctx.actor),
            audit_events::action.eq(audit_action),
            audit_events::resource_type.eq(rtype),
            audit_events::resource_id.eq(id),
            audit_events::version_id.eq(version_id),
            audit_events::outcome.eq("success"),
            audit_events::correlation_id.eq(&ctx.correlation_id),
        ))
        .execute(conn)?;
    Ok(())
}
