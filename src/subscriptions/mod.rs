//! Topic-based Subscriptions (the R5 Backport IG for R4): the topic catalogue (`topics`), the
//! Subscription resource read and checked (`subscription`), each subscription's state and
//! numbered event queue (`registry`), the outbox matched against topics (`dispatch`),
//! notification Bundles (`notification`) and their delivery by REST hook (`delivery`); the
//! catalogue as R4 `Basic` resources clients can read (`topic_basic`).
//!
//! A change commits with its outbox row; the dispatcher, woken by the commit, turns it into
//! numbered events of the subscriptions it matches (in one transaction); the deliverer sends
//! each subscription's events in order and advances only on 2xx.

pub mod delivery;
pub mod dispatch;
pub mod endpoint;
pub mod lease;
pub mod notification;
pub mod outcome;
pub mod registry;
pub mod subscription;
pub mod topic_basic;
pub mod topics;
pub mod websocket;
pub mod write_rules;

use crate::store::Store;
use delivery::{Deliverer, DeliverySettings};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use websocket::Sockets;

/// Outbox rows one dispatch transaction takes at most.
const BATCH: i64 = 500;
/// How often the loops look even when nothing woke them (other processes' writes on a shared
/// PostgreSQL, retries and heartbeats coming due).
const TICK: Duration = Duration::from_millis(250);
/// How long the dispatcher waits after a wake-up for more commits to join the batch (20 ms
/// was measured too: no more write throughput on SQLite, twice the notification latency).
const COALESCE: Duration = Duration::from_millis(5);

/// The tasks of Subscriptions, for the caller to run (and watch): the dispatcher and the
/// deliverer. `sockets` are the websocket subscribers' open sockets (the API binds them).
/// Each may be started again after it stopped: their work is in the database.
pub struct Workers {
    store: Store,
    /// Who else a Patient is, for filters through identity (the MPI, when the server has one).
    persons: Option<Arc<dyn dispatch::SamePerson>>,
    deliverer: Arc<Deliverer>,
    recording: outcome::Recording,
    wake_delivery: Arc<Notify>,
}

impl Workers {
    pub fn new(store: Store, base: String, settings: DeliverySettings, sockets: Sockets) -> Self {
        let wake_delivery = sockets.wake.clone();
        let (deliverer, recording) = Deliverer::new(store.clone(), base, settings, sockets);
        Workers {
            store,
            persons: None,
            deliverer: Arc::new(deliverer),
            recording,
            wake_delivery,
        }
    }

    /// These workers with filters through identity answered by `persons`.
    pub fn with_persons(self, persons: Arc<dyn dispatch::SamePerson>) -> Self {
        Workers {
            persons: Some(persons),
            ..self
        }
    }

    /// Writes the outcomes of deliveries, for ever.
    pub fn recorder(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        self.recording.run()
    }

    /// Turns committed changes into subscriptions' events, for ever.
    pub fn dispatcher(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let cache = match &self.persons {
            Some(p) => dispatch::Listeners::with_persons(p.clone()),
            None => dispatch::Listeners::default(),
        };
        dispatch_loop(self.store.clone(), self.wake_delivery.clone(), cache)
    }

    /// Sends subscriptions' events, for ever.
    pub fn deliverer(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        self.deliverer.clone().run(TICK)
    }
}

async fn dispatch_loop(store: Store, wake_delivery: Arc<Notify>, cache: dispatch::Listeners) {
    let mut changes = store.changes();
    let cache = Arc::new(std::sync::Mutex::new(cache));
    loop {
        // a moment for the changes committing together to arrive together
        tokio::time::sleep(COALESCE).await;
        loop {
            let (s, cache) = (store.clone(), cache.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut cache = cache.lock().expect("not poisoned");
                let listeners = &mut *cache;
                // On SQLite too the matching runs on the writer: its page cache is the one that
                // stays warm, where a reader's is dropped after every commit and read again.
                s.write_rows(|c| dispatch::dispatch_batch(c, listeners, BATCH))
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
            _ = changes.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}
