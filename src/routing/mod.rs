//! Sync out: the integration team's targets and routes as data (`config`), kept with who
//! changed them and when (`revisions`); every committed change matched against them into each
//! target's ordered queue (`dispatch`, `queue`); each queue sent by its own sender over its
//! target's channel (`send`, `render`; HL7v2 over MLLP), with refusals kept in the outbound
//! exception queue for replay.
//!
//! The router runs for ever: it reads the routes in force when their version moves, starts a
//! sender per enabled target (and stops those of targets removed or changed), and routes the
//! outbox as changes commit.

pub mod channel;
pub mod config;
pub mod dispatch;
pub mod fhir_client;
pub mod fhir_out;
pub mod messages;
pub mod notify_out;
pub mod queue;
pub mod render;
pub mod revisions;
pub mod send;
pub mod truth;
pub mod value_maps;

use crate::store::Store;
use config::Target;
use dispatch::Compiled;
use send::Senders;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Outbox rows one routing transaction takes at most.
const BATCH: i64 = 500;
/// How often the router looks even when nothing woke it (routes changed by another process,
/// changes committed by another process on a shared PostgreSQL).
const TICK: Duration = Duration::from_millis(250);

/// The router of one process.
pub struct Router {
    pub senders: Senders,
    /// The source-of-truth rules on this process's ingest path, set when the routes change.
    pub truth: Arc<truth::Truth>,
}

/// A running sender: the target it was started with, how to wake and stop it.
struct Running {
    target: Target,
    wake: Arc<Notify>,
    task: AbortHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Router {
    /// Route and send, for ever.
    pub async fn run(self) {
        let store = self.senders.store.clone();
        let mut changes = store.changes();
        let mut compiled = Compiled::default();
        let mut running: HashMap<String, Running> = HashMap::new();
        loop {
            if let Err(e) = self.reconcile(&store, &mut compiled, &mut running).await {
                tracing::warn!(error = %e, "the routes in force cannot be read; will retry");
            }
            loop {
                let s = store.clone();
                let c = std::mem::take(&mut compiled);
                let done = tokio::task::spawn_blocking(move || {
                    let r = s.write_rows(|conn| dispatch::route_batch(conn, &c, BATCH));
                    (c, r)
                })
                .await;
                let Ok((c, result)) = done else {
                    tracing::error!("routing task failed");
                    break;
                };
                compiled = c;
                match result {
                    Ok((taken, queued)) => {
                        if queued > 0 {
                            running.values().for_each(|r| r.wake.notify_one());
                        }
                        if (taken as i64) < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "routing changes failed; will retry");
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

    /// Read the routes again when their version moved; start and stop senders to match.
    async fn reconcile(
        &self,
        store: &Store,
        compiled: &mut Compiled,
        running: &mut HashMap<String, Running>,
    ) -> Result<(), crate::store::StoreError> {
        let s = store.clone();
        let version = tokio::task::spawn_blocking(move || s.read(revisions::version))
            .await
            .map_err(|e| crate::store::StoreError::Database(e.to_string()))??;
        // a sender that ended (it should not: it panicked) is started again below
        running.retain(|_, r| !r.task.is_finished());
        let all_running = compiled.targets().all(|name| running.contains_key(name));
        if version == compiled.version() && all_running {
            return Ok(());
        }
        let s = store.clone();
        let routes = tokio::task::spawn_blocking(move || s.read(revisions::current))
            .await
            .map_err(|e| crate::store::StoreError::Database(e.to_string()))??
            .map(|(_, r)| r)
            .unwrap_or_default();
        *compiled = Compiled::new(version, &routes);
        self.truth.set(&routes);
        let wanted: Vec<&Target> = routes.targets.iter().filter(|t| t.enabled).collect();
        running.retain(|name, r| wanted.iter().any(|t| &t.name == name && **t == r.target));
        for t in wanted {
            if running.contains_key(&t.name) {
                continue;
            }
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(send::run(self.senders.clone(), t.clone(), wake.clone()));
            tracing::info!(target = %t.name, "sending to target");
            running.insert(
                t.name.clone(),
                Running {
                    target: t.clone(),
                    wake,
                    task: task.abort_handle(),
                },
            );
        }
        Ok(())
    }
}
