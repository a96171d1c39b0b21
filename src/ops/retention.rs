//! What may be forgotten, and when (a sweep over the rows of the parts that own them): the HL7v2 archive's messages once applied (or refused,
//! or replayed) and older than its retention; subscription events once delivered and older
//! than theirs; outbox rows once dispatched and routed and as old; outbound messages to target
//! systems once sent (or skipped) and as old; audit rows after their own retention (by
//! default never). Resource versions are never swept here. Messages waiting in the exception queue (`failed`) or for review (`held`) and events not yet
//! delivered are kept however old: forgetting them would lose work.
//!
//! Deletes go in small batches, each its own transaction, so that a sweep after a long time
//! never holds SQLite's one writer (or PostgreSQL's locks) for long.

use crate::adapters::hl7v2::ingest::status;
use crate::fhir::resource::now_micros;
use crate::routing::queue;
use crate::store::schema::{
    hl7v2_messages as m, outbox as o, route_messages as r, subscription_events as e, subscriptions,
};
use crate::store::{DbConnection, Store, StoreError};
use diesel::prelude::*;
use std::time::Duration;

/// Rows deleted per transaction.
const BATCH: i64 = 1_000;
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// How long things are kept, in days; 0 keeps them for ever.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub hl7v2_archive_days: u32,
    pub event_days: u32,
    pub audit_days: u32,
    /// The event stream is on: outbox rows also wait until the broker has them.
    pub stream: bool,
}

/// What one sweep deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub hl7v2_messages: usize,
    pub subscription_events: usize,
    pub outbox: usize,
    pub route_messages: usize,
    pub audit_events: usize,
}

/// Sweep every `every` until the process ends (the first at once).
pub async fn run(store: Store, retention: Retention, every: Duration) {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || sweep(&s, retention, now_micros())).await {
            Ok(Ok(swept)) if swept != Swept::default() => {
                tracing::info!(?swept, "retention sweep deleted old rows")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "retention sweep failed; next time"),
            Err(e) => tracing::error!(error = %e, "retention sweep task failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Delete what `retention` lets go as of `now` (microseconds).
pub fn sweep(store: &Store, retention: Retention, now: i64) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    if retention.hl7v2_archive_days > 0 {
        let cutoff = now - i64::from(retention.hl7v2_archive_days) * DAY_MICROS;
        swept.hl7v2_messages = batches(store, |c| {
            let ids: Vec<String> = m::table
                // what waits for a person (the exception queue, held for review) stays
                .filter(m::status.ne_all([status::FAILED, status::HELD]))
                .filter(m::received_at.lt(cutoff))
                .select(m::id)
                .limit(BATCH)
                .load(c)?;
            Ok(diesel::delete(m::table.filter(m::id.eq_any(&ids))).execute(c)?)
        })?;
    }
    if retention.event_days > 0 {
        let cutoff = now - i64::from(retention.event_days) * DAY_MICROS;
        let subs: Vec<(String, i64)> = store.read(|c| {
            Ok(subscriptions::table
                .select((subscriptions::id, subscriptions::delivered_through))
                .load(c)?)
        })?;
        for (id, delivered) in subs {
            swept.subscription_events += batches(store, |c| {
                let numbers: Vec<i64> = e::table
                    .filter(e::subscription_id.eq(&id))
                    .filter(e::event_number.le(delivered))
                    .filter(e::occurred_at.lt(cutoff))
                    .select(e::event_number)
                    .order(e::event_number)
                    .limit(BATCH)
                    .load(c)?;
                Ok(diesel::delete(
                    e::table
                        .filter(e::subscription_id.eq(&id))
                        .filter(e::event_number.eq_any(&numbers)),
                )
                .execute(c)?)
            })?;
        }
        // oldest first by position, which follows time: stop at the first one too young
        swept.outbox = batches(store, |c| {
            let mut old = o::table
                .filter(o::dispatched_at.is_not_null())
                .filter(o::routed_at.is_not_null())
                .filter(o::created_at.lt(cutoff))
                .select(o::seq)
                .order(o::seq)
                .limit(BATCH)
                .into_boxed();
            if retention.stream {
                old = old.filter(o::published_at.is_not_null());
            }
            let old: Vec<i64> = old.load(c)?;
            Ok(diesel::delete(o::table.filter(o::seq.eq_any(&old))).execute(c)?)
        })?;
        // outbound messages once sent (or skipped) and as old; the exception queue's and the
        // pending ones stay
        swept.route_messages = batches(store, |c| {
            let old: Vec<i64> = r::table
                .filter(r::status.eq_any([queue::status::SENT, queue::status::SKIPPED]))
                .filter(r::created_at.lt(cutoff))
                .select(r::seq)
                .order(r::seq)
                .limit(BATCH)
                .load(c)?;
            Ok(diesel::delete(r::table.filter(r::seq.eq_any(&old))).execute(c)?)
        })?;
    }
    if retention.audit_days > 0 {
        let cutoff = now - i64::from(retention.audit_days) * DAY_MICROS;
        // oldest first along the chain, so that what is kept is one unbroken stretch of it;
        // a few blocks a transaction (each up to 512 entries and their postings)
        const BLOCKS: i64 = 20;
        loop {
            let (blocks, entries) =
                store.write_rows(|c| crate::store::audit::forget_before(c, cutoff, BLOCKS))?;
            swept.audit_events += entries;
            if blocks < BLOCKS as usize {
                break;
            }
        }
    }
    Ok(swept)
}

/// Run `one` (which deletes at most `BATCH` rows) in its own transaction until it deletes
/// fewer; the total deleted.
fn batches(
    store: &Store,
    mut one: impl FnMut(&mut DbConnection) -> Result<usize, StoreError> + Send,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = store.write_rows(&mut one)?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}
