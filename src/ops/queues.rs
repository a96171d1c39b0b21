//! The queues' states: the outbox (changes not yet dispatched to subscriptions, and not yet
//! routed to targets), each subscription's undelivered events, each route target's pending
//! and failed messages, the HL7v2 exception queue. `/metrics` and the dashboard show the
//! same reading; and each vendor source's exception queue. Every query here runs on an index
//! (`outbox_pending`, `outbox_unrouted`, `outbox_unpublished`, `route_messages_queue`,
//! `hl7v2_messages_status`, `vendor_exceptions_open`) or on the subscriptions' own rows, so a
//! reading costs a few index reads however much history is kept.

use crate::fhir::resource::now_micros;
use crate::routing::{queue, revisions};
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::schema::{
    hl7v2_messages as h, outbox as o, route_messages as m, subscriptions as s,
    vendor_exceptions as v,
};
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

/// Subscriptions reported one by one at most (the deepest queues first).
pub const MAX_SUBSCRIPTIONS: i64 = 500;

/// How many wait, and for how long the oldest has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Depth {
    pub waiting: i64,
    /// Seconds; 0 when none waits.
    pub oldest_age: f64,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub channel: String,
    pub status: String,
    /// Events not yet delivered.
    pub depth: i64,
    /// In error, or retrying its last delivery.
    pub failing: bool,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub pending: Depth,
    /// In its outbound exception queue.
    pub failed: i64,
    /// The first pending message has been tried and not taken (the target is down or slow).
    pub retrying: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Queues {
    /// Committed changes the subscription dispatcher has not taken.
    pub dispatch: Depth,
    /// Committed changes the router has not taken.
    pub route: Depth,
    /// Committed changes the event stream's broker has not acknowledged (when this process
    /// publishes one).
    pub stream: Option<Depth>,
    /// The deepest first.
    pub subscriptions: Vec<Subscription>,
    pub targets: Vec<Target>,
    /// HL7v2 messages in the exception queue (`failed`), the oldest's age since receipt, and
    /// those held for review.
    pub hl7v2_failed: i64,
    pub hl7v2_failed_age: f64,
    pub hl7v2_held: i64,
    /// Each vendor source's records waiting in its exception queue, by source name.
    pub vendors: Vec<(String, Depth)>,
}

fn age(created_at: Option<i64>) -> f64 {
    created_at.map_or(0.0, |t| (now_micros() - t).max(0) as f64 / 1e6)
}

/// One stage of the outbox: how many wait, and the first one's age.
fn outbox_stage(c: &mut DbConnection, (n, first): (i64, Option<i64>)) -> Result<Depth, StoreError> {
    let oldest = match first {
        Some(seq) => o::table
            .find(seq)
            .select(o::created_at)
            .get_result(c)
            .optional()?,
        None => None,
    };
    Ok(Depth {
        waiting: n,
        oldest_age: age(oldest),
    })
}

/// Read every queue's state; `stream`: the event stream's backlog too (this process
/// publishes one).
pub fn read(c: &mut DbConnection, stream: bool) -> Result<Queues, StoreError> {
    let waiting: (i64, Option<i64>) = o::table
        .filter(o::dispatched_at.is_null())
        .select((count_star(), min(o::seq)))
        .get_result(c)?;
    let dispatch = outbox_stage(c, waiting)?;
    let waiting: (i64, Option<i64>) = o::table
        .filter(o::routed_at.is_null())
        .select((count_star(), min(o::seq)))
        .get_result(c)?;
    let route = outbox_stage(c, waiting)?;
    let stream = match stream {
        true => {
            let waiting: (i64, Option<i64>) = o::table
                .filter(o::published_at.is_null())
                .select((count_star(), min(o::seq)))
                .get_result(c)?;
            Some(outbox_stage(c, waiting)?)
        }
        false => None,
    };

    type SubRow = (String, String, String, i64, i64, i32, Option<String>);
    let subs: Vec<SubRow> = s::table
        .select((
            s::id,
            s::status,
            s::channel,
            s::events_since_start,
            s::delivered_through,
            s::attempts,
            s::last_error,
        ))
        .order((s::events_since_start - s::delivered_through).desc())
        .limit(MAX_SUBSCRIPTIONS)
        .load(c)?;
    let subscriptions = subs
        .into_iter()
        .map(
            |(id, status, channel, events, delivered, attempts, last_error)| Subscription {
                failing: status == "error" || attempts > 0,
                depth: (events - delivered).max(0),
                id,
                channel,
                status,
                last_error,
            },
        )
        .collect();

    let names = revisions::current(c)?
        .map(|(_, r)| r.targets)
        .unwrap_or_default();
    let mut targets = Vec::new();
    for t in names {
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
        let retrying: Option<Option<String>> = m::table
            .filter(m::target.eq(&t.name))
            .filter(m::status.eq(queue::status::PENDING))
            .filter(m::attempts.gt(0))
            .order(m::seq.asc())
            .limit(1)
            .select(m::last_error)
            .get_result(c)
            .optional()?;
        targets.push(Target {
            name: t.name,
            pending: Depth {
                waiting: pending,
                oldest_age: age(oldest),
            },
            failed,
            retrying: retrying.map(|e| e.unwrap_or_else(|| "no answer yet".into())),
        });
    }

    let (failed, oldest_failed): (i64, Option<i64>) = h::table
        .filter(h::status.eq("failed"))
        .select((count_star(), min(h::received_at)))
        .get_result(c)?;
    let held: i64 = h::table
        .filter(h::status.eq("held"))
        .select(count_star())
        .get_result(c)?;
    let vendors: Vec<(String, i64, Option<i64>)> = v::table
        .filter(v::status.eq("open"))
        .group_by(v::source)
        .select((v::source, count_star(), min(v::created_at)))
        .order(v::source)
        .load(c)?;
    Ok(Queues {
        vendors: vendors
            .into_iter()
            .map(|(source, waiting, oldest)| {
                let oldest_age = age(oldest);
                (
                    source,
                    Depth {
                        waiting,
                        oldest_age,
                    },
                )
            })
            .collect(),
        hl7v2_failed_age: age(oldest_failed),
        dispatch,
        route,
        stream,
        subscriptions,
        targets,
        hl7v2_failed: failed,
        hl7v2_held: held,
    })
}
