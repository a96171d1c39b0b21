//! The message archive as the integration team sees it: the exception queue (messages that
//! got an AE and wait, with the reason), any message by id with its raw text, and replay,
//! which runs a message through the maps again (as it was, or as corrected by a person) once
//! the cause is fixed.

use super::ingest::Inbound;
use super::ingest::{self, Outcome, status};
use super::message;
use crate::fhir::resource::now_micros;
use crate::store::db::DbConnection;
use crate::store::schema::hl7v2_messages as m;
use crate::store::seal::is_sealed;
use crate::store::{Store, StoreError};
use diesel::prelude::*;
use serde::Serialize;

/// One archived message, without its raw text.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = m)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub correlation_id: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    pub message_type: String,
    pub trigger_event: String,
    pub version: String,
    /// When it arrived and when it was last processed: microseconds since the epoch, shown as
    /// instants (`2026-12-04T21:40:00.123456Z`).
    #[serde(serialize_with = "crate::fhir::resource::serialize_instant")]
    pub received_at: i64,
    #[serde(serialize_with = "crate::fhir::resource::serialize_instant")]
    pub processed_at: i64,
    pub status: String,
    pub ack_code: String,
    pub error_location: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub attempts: i32,
    /// JSON array of `Type/id/_history/version` written, shown as that array.
    #[serde(serialize_with = "as_array")]
    pub resources: String,
    /// PID-3's MRN as the sender gave it, and the Patient the message wrote.
    pub mrn: Option<String>,
    pub patient: Option<String>,
}

#[allow(clippy::ptr_arg)] // serde's `serialize_with` hands over the field as it is declared
fn as_array<S: serde::Serializer>(text: &String, s: S) -> Result<S::Ok, S::Error> {
    let list: Vec<String> = serde_json::from_str(text).unwrap_or_default();
    serde::Serialize::serialize(&list, s)
}

/// Messages with `status` (all when `None`), newest first.
pub fn list(
    conn: &mut DbConnection,
    st: Option<&str>,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    let mut q = m::table
        .select(Entry::as_select())
        .order(m::received_at.desc())
        .limit(limit)
        .into_boxed();
    if let Some(st) = st {
        q = q.filter(m::status.eq(st.to_string()));
    }
    Ok(q.load(conn)?)
}

/// One message and its raw text (opened with the master key when the archive sealed it).
pub fn get(store: &Store, id: &str) -> Result<Option<(Entry, String)>, StoreError> {
    let found: Option<(Entry, String)> = store.read(|conn| {
        Ok(m::table
            .find(id)
            .select((Entry::as_select(), m::raw))
            .get_result(conn)
            .optional()?)
    })?;
    let Some((entry, raw)) = found else {
        return Ok(None);
    };
    if !is_sealed(&raw) {
        return Ok(Some((entry, raw)));
    }
    let seal = store.seal().ok_or_else(|| {
        StoreError::Database("the archived message is sealed and no master key was given".into())
    })?;
    let text = seal
        .open(ingest::ARCHIVE_SEALED_AS, &raw)
        .map_err(|e| StoreError::Database(format!("the archived message: {e}")))?;
    Ok(Some((entry, String::from_utf8_lossy(&text).into_owned())))
}

/// Run message `id` again: its raw text, or `corrected` (a person's fix of it). Returns `None`
/// when there is no such message. A corrected message that is accepted also closes the
/// entry it corrects (status `replayed`).
pub fn replay(
    inbound: &Inbound,
    id: &str,
    corrected: Option<String>,
) -> Result<Option<Outcome>, StoreError> {
    run_again(inbound, id, corrected, None)
}

/// Apply held message `id` on `reviewer`'s word: the source-of-truth rule that held it is
/// waived for it. `Ok(None)`: no such message; `Err(Conflict)`: it is not held.
pub fn release(
    inbound: &Inbound,
    id: &str,
    reviewer: String,
) -> Result<Option<Outcome>, StoreError> {
    let store = &inbound.ingest.store;
    let held: Option<String> = store.read(|c| {
        Ok(m::table
            .find(id)
            .select(m::status)
            .get_result(c)
            .optional()?)
    })?;
    match held.as_deref() {
        None => Ok(None),
        Some(status::HELD) => run_again(inbound, id, None, Some(reviewer)),
        Some(other) => Err(StoreError::Conflict(format!(
            "the message is {other}, not held for review"
        ))),
    }
}

fn run_again(
    inbound: &Inbound,
    id: &str,
    corrected: Option<String>,
    reviewer: Option<String>,
) -> Result<Option<Outcome>, StoreError> {
    let store = &inbound.ingest.store;
    let Some((entry, raw)) = get(store, id)? else {
        return Ok(None);
    };
    let text = corrected.unwrap_or(raw);
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let outcome = match message::parse(&text) {
        Ok(msg) => {
            let run = ingest::Run {
                correlation_id,
                received_at: entry.received_at,
                reviewed_by: reviewer,
                again: true,
            };
            ingest::process(inbound, &msg, &text, run)
        }
        // a correction that cannot be read is refused like any such message
        Err(_) => ingest::handle(inbound, text.as_bytes()),
    };
    if outcome.code == super::ack::AckCode::Accept && entry.status != status::APPLIED {
        store.write_rows(|c| {
            // (held again: it stays held)
            diesel::update(
                m::table
                    .find(id)
                    .filter(m::status.ne(status::APPLIED))
                    .filter(m::status.ne(status::HELD)),
            )
            .set((
                m::status.eq(status::REPLAYED),
                m::processed_at.eq(now_micros()),
                m::error.eq(Some(format!(
                    "replayed: accepted as correlation id {}",
                    outcome.correlation_id
                ))),
            ))
            .execute(c)?;
            Ok(())
        })?;
    }
    Ok(Some(outcome))
}

/// Replay every message in the exception queue, oldest first; returns each id with its
/// outcome.
pub fn replay_failed(inbound: &Inbound) -> Result<Vec<(String, Outcome)>, StoreError> {
    let mut failed = inbound
        .ingest
        .store
        .read(|c| list(c, Some(status::FAILED), 10_000))?;
    failed.reverse();
    let mut out = Vec::new();
    for e in failed {
        if let Some(o) = replay(inbound, &e.id, None)? {
            out.push((e.id, o));
        }
    }
    Ok(out)
}
