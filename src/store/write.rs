//! The write path. Each change writes, in the caller's transaction: the version row, the
//! current-version pointer and the identifier index at once, and queues its outbox event and
//! audit row on the `Tx`; `Store::write` inserts the queued rows in bulk just before COMMIT.
//! A change and its event therefore commit together or not at all, at a few statements per
//! resource (a 100-entry transaction is a round-trip budget on PostgreSQL, not a detail).

use super::audit::{Entry, kind};
use super::db::DbConnection;
use super::error::StoreError;
use super::move_head::move_head;
use super::rules::WriteKind;
use super::schema::{outbox, resource_versions, resources};
use super::search_index;
use super::versions::{Actor, Current, Method, Version, WriteContext, Written};
use super::{Tx, set_aside};
use crate::fhir::FhirId;
use crate::fhir::resource::{Micros, now_micros, stamp};
use crate::fhir::search::index::{Entries, index};
use diesel::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A committed change as the outbox and the audit trail record it.
#[derive(Debug, Clone)]
pub struct Change {
    resource_type: String,
    resource_id: String,
    version_id: i64,
    /// create, update or delete: what subscribers are told.
    action: &'static str,
    /// create, update, patch or delete: what the audit trail says was done.
    audit_action: &'static str,
    at: Micros,
    correlation_id: String,
    actor: String,
    /// The patient the resource is about, for the audit trail's `patient` search.
    patient: Option<String>,
}

/// Create `rtype/id` under a fresh server-assigned id (POST): it cannot exist yet, so no
/// current version is looked up; the primary key still refuses a duplicate.
pub fn create(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    let ready = prepare(rtype, id, resource, Method::Post, None, None, ctx)?;
    commit(tx, ready, ctx)
}

/// Create many resources under fresh server-assigned ids (the new resources of a transaction).
/// On PostgreSQL they take a few multi-row statements in all instead of two or three round
/// trips each; SQLite, in-process, writes them one by one.
pub fn create_many(
    tx: &mut Tx,
    creates: Vec<(String, FhirId, Value)>,
    ctx: &WriteContext,
) -> Result<Vec<Written>, StoreError> {
    if !matches!(tx.conn, DbConnection::Pg(_)) {
        return creates
            .into_iter()
            .map(|(rtype, id, resource)| create(tx, &rtype, &id, resource, ctx))
            .collect();
    }
    for (rtype, id, resource) in &creates {
        ctx.rules.allow(
            WriteKind::Create,
            rtype,
            id.as_str(),
            Some(resource),
            &mut || None,
        )?;
    }
    let now = now_micros();
    let mut stamped = Vec::with_capacity(creates.len());
    let mut written: Vec<Written> = Vec::with_capacity(creates.len());
    for (rtype, id, resource) in creates {
        let (resource, headers) = set_aside(&rtype, resource, ctx);
        tx.keep_headers(id.as_str(), headers);
        let value = stamp(resource, &id, 1, now);
        let content: Arc<str> = serde_json::to_string(&value)
            .expect("JSON values serialise")
            .into();
        stamped.push(value);
        written.push(Written {
            version: Version {
                resource_type: rtype,
                id: id.to_string(),
                version_id: 1,
                last_updated: now,
                method: Method::Post,
                deleted: false,
                content,
                seq: 0,
            },
            created: true,
            noop: false,
        });
    }
    for chunk in written.chunks_mut(500) {
        let rows: Vec<_> = chunk.iter().map(|w| version_row(&w.version, ctx)).collect();
        let DbConnection::Pg(pg) = &mut *tx.conn else {
            unreachable!("checked above")
        };
        let seqs: HashMap<String, i64> = diesel::insert_into(resource_versions::table)
            .values(rows)
            .returning((resource_versions::resource_id, resource_versions::seq))
            .get_results::<(String, i64)>(pg)?
            .into_iter()
            .collect();
        for w in chunk.iter_mut() {
            w.version.seq = seqs.get(&w.version.id).copied().unwrap_or_default();
        }
        let heads: Vec<_> = chunk.iter().map(|w| head_row(&w.version)).collect();
        diesel::insert_into(resources::table)
            .values(heads)
            .execute(pg)?;
    }
    let entries: Vec<Entries> = stamped.iter().map(index).collect();
    let indexed: Vec<(&str, &str, &Entries)> = written
        .iter()
        .zip(&entries)
        .map(|(w, e)| (w.version.resource_type.as_str(), w.version.id.as_str(), e))
        .collect();
    search_index::insert(tx.conn, &indexed)?;
    for w in &written {
        tx.record(w, "create", ctx)?;
    }
    Ok(written)
}

/// Write a new version of `rtype/id` (PUT or PATCH; creates it when absent or deleted).
/// `expected` is If-Match's version.
pub fn put(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    method: Method,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    // The version being replaced, read with its head in one statement: its index rows are the
    // ones to change, and a writer confined to a patient's compartment may not take over
    // another patient's resource.
    let current = Current::read(tx.conn, rtype, id.as_str())?;
    check_expected(current.head(), expected)?;
    let ready = prepare(
        rtype,
        id,
        resource,
        method,
        current.head(),
        current.json.as_ref(),
        ctx,
    )?;
    commit(tx, ready, ctx)
}

/// Write a new version of `rtype/id` over `current`, its current version as the caller read
/// it in this same transaction: a PUT without reading the resource again (the HL7v2 adapter
/// reads it to skip writes that would change nothing).
pub fn put_over(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    current: &Current,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    let ready = prepare_over(rtype, id, resource, current, ctx)?;
    commit(tx, ready, ctx)
}

/// A new version made ready to write: checked against the writer's grant, stamped, serialised
/// and indexed, with the head it replaces. Making it needs no transaction, so a writer can
/// prepare its versions before it takes its turn at SQLite's one writer (the HL7v2 adapter
/// does, from the versions the store last knew), leaving the writer only the statements.
/// `commit` refuses a version prepared over a head that has since moved (Conflict), as it
/// refuses any stale write.
pub struct Prepared {
    version: Version,
    /// The head replaced, (version, deleted); `None` when the resource is new.
    head: Option<(i64, bool)>,
    /// The replaced version's index entries, to rewrite only the rows that change.
    old_entries: Option<Entries>,
    entries: Entries,
    /// What the writer's rules took out of its content (see `rules::SetAside`).
    headers: Option<super::rules::SetAside>,
}

impl Prepared {
    /// The version it will write.
    pub fn version(&self) -> &Version {
        &self.version
    }
}

/// Prepare a PUT of `resource` as `rtype/id` over `current`, its current version as read.
pub fn prepare_over(
    rtype: &str,
    id: &FhirId,
    resource: Value,
    current: &Current,
    ctx: &WriteContext,
) -> Result<Prepared, StoreError> {
    prepare(
        rtype,
        id,
        resource,
        Method::Put,
        current.head(),
        current.json.as_ref(),
        ctx,
    )
}

/// Prepare a version of `rtype/id` over `head` (`None` when the resource is new; else its
/// version and whether it is deleted), whose content is `old`.
fn prepare(
    rtype: &str,
    id: &FhirId,
    resource: Value,
    method: Method,
    head: Option<(i64, bool)>,
    old: Option<&Value>,
    ctx: &WriteContext,
) -> Result<Prepared, StoreError> {
    let version_id = head.map(|(v, _)| v + 1).unwrap_or(1);
    let what = if head.is_none_or(|(_, deleted)| deleted) {
        WriteKind::Create
    } else {
        WriteKind::Update
    };
    ctx.rules
        .allow(what, rtype, id.as_str(), Some(&resource), &mut || {
            old.cloned()
        })?;
    let now = now_micros();
    let (resource, headers) = set_aside(rtype, resource, ctx);
    let stamped = stamp(resource, id, version_id, now);
    let content: Arc<str> = serde_json::to_string(&stamped)
        .expect("JSON values serialise")
        .into();
    Ok(Prepared {
        version: Version {
            resource_type: rtype.to_string(),
            id: id.to_string(),
            version_id,
            last_updated: now,
            method,
            deleted: false,
            content,
            seq: 0,
        },
        head,
        // a deleted resource has no index rows (its delete cleared them)
        old_entries: old.map(index),
        entries: index(&stamped),
        headers,
    })
}

/// Write a prepared version: its row, the head moved to it (only from the head it was
/// prepared over), the index rows that changed, and its outbox event and audit row.
pub fn commit(tx: &mut Tx, ready: Prepared, ctx: &WriteContext) -> Result<Written, StoreError> {
    let Prepared {
        version,
        head,
        old_entries,
        entries,
        headers,
    } = ready;
    let (rtype, id) = (version.resource_type.as_str(), version.id.as_str());
    tx.keep_headers(id, headers);
    // the head first: on PostgreSQL its row lock makes a concurrent writer of the same resource
    // wait here, and fail the version check once this one commits; the version row first would
    // have made each wait on the other's (a deadlock)
    set_head(tx.conn, &version, head.is_some())?;
    let seq = insert_version(tx.conn, &version, ctx)?;
    match &old_entries {
        Some(old) => search_index::replace(tx.conn, rtype, id, old, &entries)?,
        None => search_index::insert(tx.conn, &[(rtype, id, &entries)])?,
    }
    let created = head.is_none_or(|(_, deleted)| deleted);
    let written = Written {
        version: Version { seq, ..version },
        created,
        noop: false,
    };
    tx.record(&written, if created { "create" } else { "update" }, ctx)?;
    Ok(written)
}

/// Delete `rtype/id`: a tombstone version. Deleting what is absent or already deleted is a no-op.
pub fn delete(
    tx: &mut Tx,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, StoreError> {
    let head = head(tx.conn, rtype, id)?;
    check_expected(head, expected)?;
    let now = now_micros();
    let mut version = Version {
        resource_type: rtype.to_string(),
        id: id.to_string(),
        version_id: head.map(|(v, _)| v).unwrap_or(0),
        last_updated: now,
        method: Method::Delete,
        deleted: true,
        content: "".into(),
        seq: 0,
    };
    let Some((current, false)) = head else {
        return Ok(Written {
            version,
            created: false,
            noop: true,
        });
    };
    ctx.rules
        .allow(WriteKind::Delete, rtype, id, None, &mut || {
            super::versions::version(tx.conn, rtype, id, current)
                .ok()
                .flatten()
                .map(|v| v.json())
        })?;
    version.version_id = current + 1;
    set_head(tx.conn, &version, true)?;
    version.seq = insert_version(tx.conn, &version, ctx)?;
    search_index::clear(tx.conn, rtype, id)?;
    let written = Written {
        version,
        created: false,
        noop: false,
    };
    tx.record(&written, "delete", ctx)?;
    Ok(written)
}

impl Change {
    pub fn new(w: &Written, action: &'static str, ctx: &WriteContext) -> Change {
        let v = &w.version;
        Change {
            resource_type: v.resource_type.clone(),
            resource_id: v.id.clone(),
            version_id: v.version_id,
            action,
            audit_action: if v.method == Method::Patch {
                "patch"
            } else {
                action
            },
            at: v.last_updated,
            correlation_id: ctx.correlation_id.clone(),
            actor: ctx.actor.audit_name().to_string(),
            patient: super::audit::patient_in(&v.resource_type, &v.id, &v.content),
        }
    }
}

/// Insert the outbox events and audit rows of `changes`, in order, a few hundred per statement.
pub fn flush_changes(conn: &mut DbConnection, changes: &[Change]) -> Result<(), StoreError> {
    for chunk in changes.chunks(500) {
        let events: Vec<_> = chunk
            .iter()
            .map(|c| {
                (
                    outbox::resource_type.eq(&c.resource_type),
                    outbox::resource_id.eq(&c.resource_id),
                    outbox::version_id.eq(c.version_id),
                    outbox::action.eq(c.action),
                    outbox::correlation_id.eq(&c.correlation_id),
                    outbox::created_at.eq(c.at),
                    outbox::origin.eq(&c.actor),
                )
            })
            .collect();
        insert_all!(conn, outbox::table, events)?;
        let audits: Vec<Entry> = chunk
            .iter()
            .map(|c| Entry {
                recorded_at: c.at,
                kind: kind::REST.into(),
                action: c.audit_action.into(),
                actor: c.actor.clone(),
                resource_type: Some(c.resource_type.clone()),
                resource_id: Some(c.resource_id.clone()),
                version_id: Some(c.version_id),
                outcome: "success".into(),
                correlation_id: c.correlation_id.clone(),
                patient: c.patient.clone(),
                ..Entry::default()
            })
            .collect();
        super::audit::insert_unsealed(conn, &audits)?;
    }
    Ok(())
}

/// Record a failed or refused change in the audit trail (in its own transaction, since the
/// change itself was rolled back).
pub fn audit_failure(
    conn: &mut DbConnection,
    action: &str,
    target: Option<(&str, &str)>,
    detail: &str,
    (correlation_id, actor): (&str, &Actor),
) -> Result<(), StoreError> {
    // a refused sign-in or client authentication is a login event
    let kind = match action == "login" || action.starts_with("token") {
        true => kind::LOGIN,
        false => kind::REST,
    };
    let mut e = Entry::now(kind, action, actor.audit_name(), correlation_id);
    e.resource_type = target.map(|t| t.0.to_string());
    e.resource_id = target.map(|t| t.1.to_string());
    e.outcome = "failure".into();
    e.detail = Some(detail.into());
    super::audit::insert_unsealed(conn, &[e])
}

/// The current version number of a resource and whether it is deleted.
fn head(conn: &mut DbConnection, rtype: &str, id: &str) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq(rtype))
        .filter(resources::resource_id.eq(id))
        .select((resources::version_id, resources::deleted))
        .get_result(conn)
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

#[allow(clippy::type_complexity)]
fn version_row<'a>(
    v: &'a Version,
    ctx: &'a WriteContext,
) -> (
    diesel::dsl::Eq<resource_versions::resource_type, &'a String>,
    diesel::dsl::Eq<resource_versions::resource_id, &'a String>,
    diesel::dsl::Eq<resource_versions::version_id, i64>,
    diesel::dsl::Eq<resource_versions::last_updated, i64>,
    diesel::dsl::Eq<resource_versions::method, &'static str>,
    diesel::dsl::Eq<resource_versions::deleted, bool>,
    diesel::dsl::Eq<resource_versions::content, &'a str>,
    diesel::dsl::Eq<resource_versions::correlation_id, &'a String>,
) {
    (
        resource_versions::resource_type.eq(&v.resource_type),
        resource_versions::resource_id.eq(&v.id),
        resource_versions::version_id.eq(v.version_id),
        resource_versions::last_updated.eq(v.last_updated),
        resource_versions::method.eq(v.method.as_str()),
        resource_versions::deleted.eq(v.deleted),
        resource_versions::content.eq(&*v.content),
        resource_versions::correlation_id.eq(&ctx.correlation_id),
    )
}

#[allow(clippy::type_complexity)]
fn head_row(
    v: &Version,
) -> (
    diesel::dsl::Eq<resources::resource_type, &String>,
    diesel::dsl::Eq<resources::resource_id, &String>,
    diesel::dsl::Eq<resources::version_id, i64>,
    diesel::dsl::Eq<resources::last_updated, i64>,
    diesel::dsl::Eq<resources::deleted, bool>,
) {
    (
        resources::resource_type.eq(&v.resource_type),
        resources::resource_id.eq(&v.id),
        resources::version_id.eq(v.version_id),
        resources::last_updated.eq(v.last_updated),
        resources::deleted.eq(v.deleted),
    )
}

/// Insert a version row; returns its sequence number (which orders history pages).
fn insert_version(
    conn: &mut DbConnection,
    v: &Version,
    ctx: &WriteContext,
) -> Result<i64, StoreError> {
    let insert = diesel::insert_into(resource_versions::table).values(version_row(v, ctx));
    match conn {
        DbConnection::Pg(pg) => Ok(insert.returning(resource_versions::seq).get_result(pg)?),
        // seq is the rowid. SQLite runs INSERT ... RETURNING through a temporary b-tree (a
        // pager and page cache opened and closed for each row); asking for the rowid after
        // the plain INSERT costs a trivial statement instead.
        DbConnection::Sqlite(lite) => {
            insert.execute(lite)?;
            Ok(diesel::select(last_insert_rowid()).get_result(lite)?)
        }
    }
}

diesel::define_sql_function! {
    /// The rowid of the connection's latest INSERT (SQLite).
    fn last_insert_rowid() -> diesel::sql_types::BigInt;
}

/// Check that `rtype/id` is still at `head` (version, deleted), as a writer that prepared its
/// change before its transaction read it and left it alone: a Conflict if it has moved since.
pub fn unmoved(
    tx: &mut Tx,
    rtype: &str,
    id: &str,
    head: Option<(i64, bool)>,
) -> Result<(), StoreError> {
    match self::head(tx.conn, rtype, id)? == head {
        true => Ok(()),
        false => Err(StoreError::Conflict(format!(
            "{rtype}/{id} changed since it was read"
        ))),
    }
}

/// Point the resource at `v`. When it `exists`, only the writer that read version N may move
/// the pointer to N+1: a concurrent writer that also read N finds nothing to update (409).
fn set_head(conn: &mut DbConnection, v: &Version, exists: bool) -> Result<(), StoreError> {
    if exists {
        let moved = move_head(conn, v)?;
        if moved != 1 {
            return Err(StoreError::Conflict(format!(
                "{}/{} changed during this write",
                v.resource_type, v.id
            )));
        }
    } else {
        diesel::insert_into(resources::table)
            .values(head_row(v))
            .execute(conn)?;
    }
    Ok(())
}
