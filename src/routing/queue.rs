//! Each target's queue of outbound messages, in the order they are to be sent: the next is
//! always the oldest pending one (a message waiting for its retry holds those behind it, so a
//! target that is down gets everything, in order, when it returns). A message the target
//! refused (AE, AR) or that cannot be rendered leaves the queue for the outbound exception
//! queue (`failed`), with the reason; replay puts it back at its place.

use crate::fhir::resource::now_micros;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::route_messages as m;
use diesel::prelude::*;
use serde::Serialize;

pub mod status {
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    /// Refused by the target, or not renderable: the outbound exception queue.
    pub const FAILED: &str = "failed";
    /// Nothing the target is sent stands for the change (said in `last_error`).
    pub const SKIPPED: &str = "skipped";
}

/// One queued message (without its text).
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = m)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub seq: i64,
    pub target: String,
    pub outbox_seq: i64,
    pub correlation_id: String,
    pub focus: String,
    pub changes: String,
    pub patient: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub ack_code: Option<String>,
    pub last_error: Option<String>,
    pub kind: Option<String>,
}

impl Queued {
    /// The changes it carries.
    pub fn changes(&self) -> Vec<super::dispatch::Changed> {
        serde_json::from_str(&self.changes).unwrap_or_default()
    }

    /// Its MSH-10: unique per sender, the same on every try (a target may drop a resend).
    pub fn control_id(&self) -> String {
        format!("ES{}", self.seq)
    }
}

/// The next `n` messages to send to `target`, oldest first (the first may not be due yet).
pub fn next(conn: &mut DbConnection, target: &str, n: i64) -> Result<Vec<Queued>, StoreError> {
    Ok(m::table
        .filter(m::target.eq(target))
        .filter(m::status.eq(status::PENDING))
        .order(m::seq.asc())
        .limit(n)
        .select(Queued::as_select())
        .load(conn)?)
}

/// What became of one try.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted (AA, CA): `ack` is MSA-1.
    Sent { ack: String },
    /// Refused (AE, AR, CE, CR) or not renderable: to the exception queue, with why.
    Failed { ack: Option<String>, error: String },
    /// No answer (down, timed out, garbled): tried again at `at`.
    Retry { at: i64, error: String },
    /// Not sent: nothing the target reads stands for it.
    Skipped { why: String },
}

/// A try's outcome: the message (its seq), what was sent (kind and text), what came of it.
pub type Tried = (i64, Option<(String, String)>, Outcome);

/// Record the outcomes of tries in one transaction.
pub fn record(conn: &mut DbConnection, outcomes: &[Tried]) -> Result<(), StoreError> {
    let now = now_micros();
    for (seq, rendered, outcome) in outcomes {
        let row = m::table.find(*seq);
        let (kind, text) = rendered.clone().unzip();
        match outcome {
            Outcome::Sent { ack } => diesel::update(row)
                .set((
                    m::status.eq(status::SENT),
                    m::attempts.eq(m::attempts + 1),
                    m::sent_at.eq(now),
                    m::ack_code.eq(ack),
                    m::last_error.eq(None::<String>),
                    m::kind.eq(kind),
                    m::message.eq(text),
                ))
                .execute(conn)?,
            Outcome::Failed { ack, error } => diesel::update(row)
                .set((
                    m::status.eq(status::FAILED),
                    m::attempts.eq(m::attempts + 1),
                    m::sent_at.eq(now),
                    m::ack_code.eq(ack),
                    m::last_error.eq(error),
                    m::kind.eq(kind),
                    m::message.eq(text),
                ))
                .execute(conn)?,
            Outcome::Skipped { why } => diesel::update(row)
                .set((m::status.eq(status::SKIPPED), m::last_error.eq(why)))
                .execute(conn)?,
            Outcome::Retry { at, error } => diesel::update(row)
                .set((
                    m::attempts.eq(m::attempts + 1),
                    m::next_attempt_at.eq(at),
                    m::last_error.eq(error),
                ))
                .execute(conn)?,
        };
    }
    Ok(())
}

/// Messages, newest first: of one target and one status when given.
pub fn list(
    conn: &mut DbConnection,
    target: Option<&str>,
    st: Option<&str>,
    limit: i64,
) -> Result<Vec<Queued>, StoreError> {
    let mut q = m::table.select(Queued::as_select()).into_boxed();
    if let Some(t) = target {
        q = q.filter(m::target.eq(t.to_string()));
    }
    if let Some(s) = st {
        q = q.filter(m::status.eq(s.to_string()));
    }
    Ok(q.order(m::seq.desc()).limit(limit).load(conn)?)
}

/// One message with its text as last sent.
pub fn get(
    conn: &mut DbConnection,
    seq: i64,
) -> Result<Option<(Queued, Option<String>)>, StoreError> {
    Ok(m::table
        .find(seq)
        .select((Queued::as_select(), m::message))
        .get_result(conn)
        .optional()?)
}

/// Put a failed message back in its target's queue, at its place (it is sent next, rendered
/// again from the versions it is about, with the routes in force). `None`: no such message;
/// `Err(status)` when it is not in the exception queue.
pub fn replay(conn: &mut DbConnection, seq: i64) -> Result<Option<Result<(), String>>, StoreError> {
    let Some(st) = m::table
        .find(seq)
        .select(m::status)
        .get_result::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    if st != status::FAILED {
        return Ok(Some(Err(st)));
    }
    diesel::update(m::table.find(seq))
        .set((m::status.eq(status::PENDING), m::next_attempt_at.eq(0i64)))
        .execute(conn)?;
    Ok(Some(Ok(())))
}

/// How many messages each target has in each status.
pub fn counts(conn: &mut DbConnection) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(m::table
        .group_by((m::target, m::status))
        .select((m::target, m::status, diesel::dsl::count_star()))
        .load(conn)?)
}
