//! An ADT event about a visit the sender names by no number (PV1-19) nor admission time: a
//! transfer, discharge or update of the patient's open visit, not a new one each time. The map
//! marks it (`map::OpenVisit`); here, before the message is written, the patient's open
//! Encounter (not finished, cancelled or in error; the latest updated) is looked up, and the
//! message mapped again in it, so that what hangs off the visit (diagnoses keyed by it) is
//! the same resource on every message. A patient with no open visit gets the new one.
//!
//! Read outside the message's transaction: two such messages about one patient arriving at
//! the same instant could both find no open visit and make two; a sender without visit
//! numbers sends one patient's events in order on one connection, so they do not.

use super::map::{self, Mapped, Unmapped};
use super::message::Message;
use super::zone::Zone;
use crate::store::search_index::referring_of;
use crate::store::{Store, StoreError};

const CLOSED: [&str; 3] = ["finished", "cancelled", "entered-in-error"];

/// `mapped` (of `msg`), or `msg` mapped again in the patient's open visit when it names its
/// visit by no number and the patient has one.
pub fn in_open_visit(
    store: &Store,
    msg: &Message,
    secret: &[u8],
    zone: Zone,
    mapped: Mapped,
) -> Result<Mapped, Unmapped> {
    let Some(visit) = &mapped.open_visit else {
        return Ok(mapped);
    };
    match open_visit(store, &visit.patient) {
        Ok(Some(open)) if open != visit.provisional => {
            map::map_in_visit(msg, secret, zone, Some(open))
        }
        Ok(_) => Ok(mapped),
        Err(e) => {
            tracing::warn!(control_id = %msg.header().control_id, error = %e, "the patient's open visit could not be looked up; the message makes a new one");
            Ok(mapped)
        }
    }
}

/// The patient's open Encounter, the latest updated.
fn open_visit(store: &Store, patient: &str) -> Result<Option<String>, StoreError> {
    let visits = store.read(|conn| referring_of(conn, "Encounter", "Patient", patient))?;
    let subject = format!("Patient/{patient}");
    let mut open: Vec<(i64, String)> = Vec::new();
    for id in visits {
        let Ok(version) = store.current("Encounter", &id) else {
            continue;
        };
        let body = version.json();
        let status = body["status"].as_str().unwrap_or_default();
        if !CLOSED.contains(&status) && body["subject"]["reference"] == subject.as_str() {
            open.push((version.last_updated, id));
        }
    }
    Ok(open.into_iter().max().map(|(_, id)| id))
}
