//! Topic-based Subscriptions (the R5 Backport IG for R4): the topic catalogue (`topics`), the
//! Subscription resource read and checked (`subscription`), each subscription's state and
//! numbered event queue (`registry`), the outbox matched against topics (`dispatch`),
//! notification Bundles (`notification`) and their delivery by REST hook (`delivery`).
//!
//! A change commits with its outbox row; the dispatcher, woken by the commit, turns it into
//! numbered events of the subscriptions it matches (in one transaction); the deliverer sends
//! each subscription's events in order and advances only on 2xx.

pub mod delivery;
pub mod dispatch;
pub mod notification;
pub mod registry;
pub mod subscription;
pub mod topics;

use crate::store::Store;
use delivery::{Deliverer, DeliverySettings};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Outbox rows one dispatch transaction takes at most.
const BATCH: i64 = 500;
/// How often the loops look even when nothing woke them (other processes' writes on a shared
/// PostgreSQL, retries and heartbeats coming due).
const TICK: Duration = Duration::from_millis(250);

/// Start the dispatcher and the deliverer on the current tokio runtime.
pub fn start(store: Store, base: String, settings: DeliverySettings) {
    let wake_delivery = Arc::new(Notify::new());
    tokio::spawn(dispatch_loop(store.clone(), wake_delivery.clone()));
    let deliverer = Arc::new(Deliverer::new(store, base, settings, wake_delivery));
    tokio::spawn(deliverer.run(TICK));
}

async fn dispatch_loop(store: Store, wake_delivery: Arc<Notify>) {
    let changes = store.changes();
    loop {
        loop {
            let s = store.clone();
            let done = tokio::task::spawn_blocking(move || {
                s.write_rows(|c| dispatch::dispatch_batch(c, BATCH))
            })
            .await;
            match done {
                Ok(Ok(d)) => {
                    if d.events > 0 {
                        wake_delivery.notify_one();
                    }
                    if (d.changes as i64) < BATCH {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "dispatching changes to subscriptions failed; will retry");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "dispatch task failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = changes.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}
