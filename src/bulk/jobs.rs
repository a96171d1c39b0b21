//! The `bulk_exports` rows: a job from kick-off until its files expire. Statuses move
//! accepted → running → done | failed; a cancel deletes the row, and a running job that finds
//! its row gone (or no longer running) keeps nothing it wrote.

use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::bulk_exports as be;
use diesel::prelude::*;

pub const ACCEPTED: &str = "accepted";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = be)]
pub struct Job {
    pub id: String,
    /// Who may poll, download and cancel: the client the token was issued to.
    pub owner: String,
    /// The name the audit trail gives the requester.
    pub actor: String,
    /// The token's scopes and launch patient: what the job may read.
    pub scope: String,
    pub patient: Option<String>,
    /// The kick-off URL, as the manifest's `request` repeats it.
    pub request: String,
    /// The parsed request (`ExportRequest` as JSON).
    pub params: String,
    pub status: String,
    pub created_at: i64,
    /// The snapshot's time, once the job has read it.
    pub transaction_time: Option<i64>,
    pub finished_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    /// When done: the files written (`Output` list as JSON).
    pub output: Option<String>,
    pub error: Option<String>,
    /// The process running it (`Exports`' own id), while it runs.
    pub runner: Option<String>,
}

pub fn insert(conn: &mut DbConnection, job: &Job) -> Result<(), StoreError> {
    diesel::insert_into(be::table).values(job).execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<Option<Job>, StoreError> {
    Ok(be::table
        .find(id)
        .select(Job::as_select())
        .get_result(conn)
        .optional()?)
}

/// How many of `owner`'s jobs wait or run.
pub fn active_of(conn: &mut DbConnection, owner: &str) -> Result<i64, StoreError> {
    Ok(be::table
        .filter(be::owner.eq(owner))
        .filter(be::status.eq_any([ACCEPTED, RUNNING]))
        .count()
        .get_result(conn)?)
}

/// Take the oldest waiting job, marking it running; `None` when none waits (or another
/// process took it first).
pub fn take_next(conn: &mut DbConnection, runner: &str) -> Result<Option<Job>, StoreError> {
    let Some(id): Option<String> = be::table
        .filter(be::status.eq(ACCEPTED))
        .order(be::created_at.asc())
        .select(be::id)
        .limit(1)
        .get_result(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let taken = diesel::update(be::table.find(&id).filter(be::status.eq(ACCEPTED)))
        .set((
            be::status.eq(RUNNING),
            be::heartbeat_at.eq(now_micros()),
            be::runner.eq(runner),
        ))
        .execute(conn)?;
    if taken == 0 {
        return Ok(None);
    }
    get(conn, &id)
}

/// `runner`'s job `id`, while it runs it.
#[diesel::dsl::auto_type(no_type_alias)]
fn ours<'a>(id: &'a str, runner: &'a str) -> _ {
    let running: &'static str = RUNNING;
    be::table
        .find(id)
        .filter(be::status.eq(running))
        .filter(be::runner.eq(runner))
}

/// Record a finished job; false when it is no longer `runner`'s (cancelled meanwhile, its row
/// gone, or run again by another process).
pub fn finish(
    conn: &mut DbConnection,
    id: &str,
    runner: &str,
    transaction_time: i64,
    output: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(ours(id, runner))
        .set((
            be::status.eq(DONE),
            be::transaction_time.eq(transaction_time),
            be::output.eq(output),
            be::finished_at.eq(at),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn fail(
    conn: &mut DbConnection,
    id: &str,
    runner: &str,
    error: &str,
    at: i64,
) -> Result<(), StoreError> {
    diesel::update(ours(id, runner))
        .set((
            be::status.eq(FAILED),
            be::error.eq(error),
            be::finished_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool, StoreError> {
    Ok(diesel::delete(be::table.find(id)).execute(conn)? == 1)
}

/// Say that the jobs `ids` still run in this process; those of them that no longer do (taken
/// over by another process, cancelled) are returned, for this one to stop.
pub fn beat(
    conn: &mut DbConnection,
    ids: &[String],
    runner: &str,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let still: Vec<String> = diesel::update(
        be::table
            .filter(be::id.eq_any(ids))
            .filter(be::status.eq(RUNNING))
            .filter(be::runner.eq(runner)),
    )
    .set(be::heartbeat_at.eq(at))
    .returning(be::id)
    .get_results(conn)?;
    Ok(ids.iter().filter(|i| !still.contains(i)).cloned().collect())
}

/// Whether job `id` is run by a process other than `runner` now.
pub fn run_elsewhere(conn: &mut DbConnection, id: &str, runner: &str) -> Result<bool, StoreError> {
    let by: Option<Option<String>> = be::table
        .find(id)
        .select(be::runner)
        .get_result(conn)
        .optional()?;
    Ok(matches!(by, Some(Some(r)) if r != runner))
}

/// Running jobs to run again from the start (their files are written anew), waiting again:
/// those whose process has not said it is alive since `silent_before` (it stopped or
/// crashed), or with `None` every one but `here`'s (those this process runs: the task that
/// runs them may have been restarted).
pub fn requeue(
    conn: &mut DbConnection,
    silent_before: Option<i64>,
    here: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut query = be::table
        .filter(be::status.eq(RUNNING))
        .filter(be::id.ne_all(here))
        .select(be::id)
        .into_boxed();
    if let Some(before) = silent_before {
        query = query.filter(be::heartbeat_at.is_null().or(be::heartbeat_at.lt(before)));
    }
    let ids: Vec<String> = query.load(conn)?;
    diesel::update(
        be::table
            .filter(be::id.eq_any(&ids))
            .filter(be::status.eq(RUNNING)),
    )
    .set((be::status.eq(ACCEPTED), be::runner.eq(None::<String>)))
    .execute(conn)?;
    Ok(ids)
}

/// Whether `upkeep` has anything to do besides the heartbeat: a running job of a process
/// silent since `silent_before`, or finished jobs older than `expire_before` (read first, so
/// that an idle server does not write every few seconds).
pub fn tending_due(
    conn: &mut DbConnection,
    silent_before: i64,
    expire_before: i64,
) -> Result<bool, StoreError> {
    let silent = be::table
        .filter(be::status.eq(RUNNING))
        .filter(
            be::heartbeat_at
                .is_null()
                .or(be::heartbeat_at.lt(silent_before)),
        )
        .select(be::id)
        .limit(1);
    let expired = be::table
        .filter(be::status.eq_any([DONE, FAILED]))
        .filter(be::finished_at.lt(expire_before))
        .select(be::id)
        .limit(1);
    Ok(silent.get_result::<String>(conn).optional()?.is_some()
        || expired.get_result::<String>(conn).optional()?.is_some())
}

/// Finished jobs whose files are older than `before`.
pub fn expired(conn: &mut DbConnection, before: i64) -> Result<Vec<String>, StoreError> {
    Ok(be::table
        .filter(be::status.eq_any([DONE, FAILED]))
        .filter(be::finished_at.lt(before))
        .select(be::id)
        .load(conn)?)
}
