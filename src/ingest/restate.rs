//! A sender's resources restated whole (each a PUT to its own id), written in one
//! transaction with the sender's own work (an HL7v2 message's archive row and merges): the way
//! in of every feed that says "this is how the record stands" rather than "change this". A
//! resource that says what its current version says is not written again; one the sender gives
//! twice is written once, as it last gives it.
//!
//! The first try prepares its versions before the writer's turn, from the versions this
//! process last knew (SQLite has one writer, and preparing was a third of its time; its
//! readers' page caches are emptied by every commit, so the cache of current versions is what
//! makes the reads cheap). In the transaction, each version's head must still be the one it
//! was prepared over, and each resource left alone must not have moved: else it is a
//! Conflict. A try after a conflict prepares in the writer's transaction, with the resources'
//! heads locked (nothing can move under it): updates of one patient arriving together all get
//! through.

use super::Writer;
use crate::fhir::FhirId;
use crate::store::{Current, Join, Store, StoreError, Tx, Written, write};
use serde_json::Value;
use std::ops::ControlFlow;

/// How many times a unit is tried when other writers keep winning the race.
const TRIES: u32 = 5;

/// One resource as a sender states it.
#[derive(Debug, Clone)]
pub struct Stated {
    pub rtype: &'static str,
    pub id: String,
    pub body: Value,
}

impl Stated {
    pub fn reference(&self) -> String {
        format!("{}/{}", self.rtype, self.id)
    }
}

/// What a source adds to the transaction of its restated resources.
pub trait Unit: Sync {
    type Done: Send;
    /// What `look` learnt that `finish` needs (the archive row found, say).
    type Seen: Send;

    /// Before anything is written, in the transaction: `Break` with an answer that makes the
    /// writes unneeded (a resend of a message already applied), else `Continue`.
    fn look(&self, tx: &mut Tx) -> Result<ControlFlow<Self::Done, Self::Seen>, StoreError>;

    /// What a resource's body becomes over its current version (fields the source never
    /// states, kept as they are).
    fn over(&self, stated: &Stated, current: &Current) -> Value {
        let _ = current;
        stated.body.clone()
    }

    /// After the resources, in the same transaction: the rest of the unit's work, given the
    /// versions written (as `Type/id/_history/n`).
    fn finish(
        &self,
        tx: &mut Tx,
        seen: Self::Seen,
        written: Vec<String>,
    ) -> Result<Self::Done, StoreError>;
}

/// A unit that adds nothing: the resources alone in their transaction.
pub struct Plain;

impl Unit for Plain {
    type Done = ();
    type Seen = ();

    fn look(&self, _: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, _: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Write `resources` (accepted: see `Writer::accept`) and `unit`'s work in one transaction,
/// trying again while another writer wins a race on the same resources.
pub fn restate_all<U: Unit>(
    store: &Store,
    writer: &Writer,
    resources: &[Stated],
    unit: &U,
) -> Result<U::Done, StoreError> {
    let once = |in_writer: bool| {
        let early = match in_writer {
            true => None,
            false => Some(prepare(resources, unit, writer, |t, id| {
                store.last_known(t, id)
            })?),
        };
        // The first try runs without a savepoint where it can (SQLite's sub-journal copies
        // every page a savepoint changes): a failure then rolls back its group, whose other
        // units are told Conflict and try again, with a savepoint.
        let join = match in_writer {
            false => Join::MayRetry,
            true => Join::Alone,
        };
        store.write_as(join, |tx| {
            let seen = match unit.look(tx)? {
                ControlFlow::Break(done) => return Ok(done),
                ControlFlow::Continue(seen) => seen,
            };
            let ready = match early {
                Some(ready) => {
                    for u in &ready.unchanged {
                        write::unmoved(tx, u.rtype, &u.id, u.head)?;
                    }
                    ready
                }
                None => prepare(resources, unit, writer, |t, id| {
                    Current::read_locked(tx.conn, t, id)
                })?,
            };
            let mut written = Vec::with_capacity(ready.versions.len());
            for version in ready.versions {
                written.push(versioned(&write::commit(tx, version, &writer.ctx)?));
            }
            unit.finish(tx, seen, written)
        })
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match once(tries > 1) {
            // Another connection wrote one of these resources at the same moment. Preparing
            // is pure, so trying again on the new versions is safe; a unit whose work was
            // done meanwhile (this very message, sent twice) stops at `look`.
            Err(StoreError::Conflict(why)) if tries < TRIES => {
                tracing::debug!(%why, tries, "restated resources raced another writer; trying again");
            }
            Err(StoreError::Conflict(why)) => {
                return match store.write(|tx| unit.look(tx))? {
                    ControlFlow::Break(done) => Ok(done),
                    ControlFlow::Continue(_) => Err(StoreError::Conflict(why)),
                };
            }
            other => return other,
        }
    }
}

/// The versions to write, and the resources restated as they are.
struct Ready {
    versions: Vec<write::Prepared>,
    unchanged: Vec<Unchanged>,
}

/// A resource restated as it is: the head it was found at must not move before the unit
/// commits.
struct Unchanged {
    rtype: &'static str,
    id: String,
    head: Option<(i64, bool)>,
}

/// Prepare the versions of the resources that change, given each one's current version
/// (`current`).
fn prepare<U: Unit>(
    resources: &[Stated],
    unit: &U,
    writer: &Writer,
    mut current: impl FnMut(&str, &str) -> Result<Current, StoreError>,
) -> Result<Ready, StoreError> {
    let mut ready = Ready {
        versions: Vec::with_capacity(resources.len()),
        unchanged: Vec::new(),
    };
    for (n, res) in resources.iter().enumerate() {
        let again = |later: &Stated| later.rtype == res.rtype && later.id == res.id;
        if resources[n + 1..].iter().any(again) {
            continue;
        }
        let now = current(res.rtype, &res.id)?;
        let body = unit.over(res, &now);
        if now.says(&body) {
            ready.unchanged.push(Unchanged {
                rtype: res.rtype,
                id: res.id.clone(),
                head: now.head(),
            });
            continue;
        }
        let id = fhir_id(&res.id)?;
        ready.versions.push(write::prepare_over(
            res.rtype,
            &id,
            body,
            &now,
            &writer.ctx,
        )?);
    }
    Ok(ready)
}

/// Write `body` as `rtype/id` over `current` (its version as read in this transaction), unless
/// it says what `current` says: a practitioner or location named by many messages is written
/// when it changes, not each time. The version written, as `Type/id/_history/n`.
pub fn restate(
    tx: &mut Tx,
    rtype: &str,
    id: &str,
    current: &Current,
    body: Value,
    writer: &Writer,
) -> Result<Option<String>, StoreError> {
    if current.says(&body) {
        return Ok(None);
    }
    // over the version just read: no second read of the same row
    let w = write::put_over(tx, rtype, &fhir_id(id)?, body, current, &writer.ctx)?;
    Ok(Some(versioned(&w)))
}

/// A stated resource's id; one that is not a valid FHIR id is an invalid write, not a
/// conflict (trying again would not make it valid).
fn fhir_id(id: &str) -> Result<FhirId, StoreError> {
    FhirId::parse(id)
        .map_err(|e| StoreError::Invalid(vec![crate::fhir::Issue::error("value", e.to_string())]))
}

/// A version written, as an archive lists it: `Type/id/_history/n`.
pub fn versioned(w: &Written) -> String {
    let v = &w.version;
    format!("{}/{}/_history/{}", v.resource_type, v.id, v.version_id)
}

#[cfg(test)]
#[path = "restate_tests.rs"]
mod tests;
