//! The queues' states, read when `/metrics` is asked for: the outbox (changes not yet
//! dispatched, and not yet routed), each subscription's undelivered events, each route
//! target's pending and failed messages, the HL7v2 exception queue. Every query here runs on
//! an index (`outbox_pending`, `outbox_unrouted`, `route_messages_queue`,
//! `hl7v2_messages_status`) or on the subscriptions' own row, so a scrape costs a few index
//! reads however much history is kept.

use crate::fhir::resource::now_micros;
use crate::routing::{queue, revisions};
use crate::store::db::DbConnection;
use crate::store::schema::{
    hl7v2_messages as h, outbox as o, route_messages as m, subscriptions as s,
};
use crate::store::{Store, StoreError};
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

/// Subscriptions reported one by one at most (the deepest queues first); the rest are in the
/// totals.
const MAX_SUBSCRIPTIONS: i64 = 500;

fn age(created_at: Option<i64>) -> f64 {
    created_at.map_or(0.0, |t| (now_micros() - t).max(0) as f64 / 1e6)
}

/// The gauges of one stage of the outbox: how many wait, and the first one's age.
fn outbox_stage(
    c: &mut DbConnection,
    stage: &'static str,
    (depth, first): (i64, Option<i64>),
) -> Result<(), StoreError> {
    let oldest = match first {
        Some(seq) => o::table
            .find(seq)
            .select(o::created_at)
            .get_result(c)
            .optional()?,
        None => None,
    };
    metrics::gauge!("emrsync_outbox_depth", "stage" => stage).set(depth as f64);
    metrics::gauge!("emrsync_outbox_oldest_age_seconds", "stage" => stage).set(age(oldest));
    Ok(())
}

/// Set the queue gauges from the database.
pub fn observe(store: &Store) -> Result<(), StoreError> {
    store.read(|c| {
        // the outbox: waiting for the dispatcher (subscriptions) and for the router (targets)
        let waiting: (i64, Option<i64>) = o::table
            .filter(o::dispatched_at.is_null())
            .select((count_star(), min(o::seq)))
            .get_result(c)?;
        outbox_stage(c, "dispatch", waiting)?;
        let waiting: (i64, Option<i64>) = o::table
            .filter(o::routed_at.is_null())
            .select((count_star(), min(o::seq)))
            .get_result(c)?;
        outbox_stage(c, "route", waiting)?;

        // subscriptions: events queued and not yet delivered, and whether each is failing
        let subs: Vec<(String, String, String, i64, i64, i32)> = s::table
            .select((
                s::id,
                s::status,
                s::channel,
                s::events_since_start,
                s::delivered_through,
                s::attempts,
            ))
            .order((s::events_since_start - s::delivered_through).desc())
            .limit(MAX_SUBSCRIPTIONS)
            .load(c)?;
        for (id, status, channel, events, delivered, attempts) in subs {
            let labels = [("subscription", id), ("channel", channel)];
            metrics::gauge!("emrsync_subscription_queue_depth", &labels)
                .set((events - delivered).max(0) as f64);
            metrics::gauge!("emrsync_subscription_failing", &labels)
                .set(f64::from(u8::from(status == "error" || attempts > 0)));
        }

        // route targets: pending (with the oldest's age) and in the exception queue
        let targets = revisions::current(c)?
            .map(|(_, r)| r.targets)
            .unwrap_or_default();
        for t in targets {
            let (pending, oldest): (i64, Option<i64>) = m::table
                .filter(m::target.eq(&t.name))
                .filter(m::status.eq(queue::status::PENDING))
                .select((count_star(), min(m::created_at)))
                .get_result(c)?;
            let failed: i64 = m::table
                .filter(m::target.eq(&t.name))
                .filter(m::status.eq(queue::status::FAILED))
                .select(count_star())
                .get_result(c)?;
            let label = [("target", t.name.clone())];
            metrics::gauge!("emrsync_target_queue_depth", &label).set(pending as f64);
            metrics::gauge!("emrsync_target_queue_oldest_age_seconds", &label).set(age(oldest));
            metrics::gauge!("emrsync_target_failed_messages", &label).set(failed as f64);
        }

        // the HL7v2 exception queue, and what waits for review
        for st in ["failed", "held"] {
            let n: i64 = h::table
                .filter(h::status.eq(st))
                .select(count_star())
                .get_result(c)?;
            metrics::gauge!("emrsync_hl7v2_queue_messages", "status" => st).set(n as f64);
        }
        Ok(())
    })
}
