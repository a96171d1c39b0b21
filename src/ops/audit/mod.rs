//! The audit trail as the people who ask about it see it: the flusher that writes and seals
//! the queued accesses (`run`), what HTTP requests record (`http`), the rows as FHIR
//! AuditEvents in the IHE Basic Audit Log Patterns shape (`event`) and their search (`search`).

use crate::store::Store;
use crate::store::audit::{self, Entry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

pub mod event;
pub mod http;
pub mod search;

/// Entries one flush writes at most (the rest at the next, at once).
const MAX_BATCH: usize = 20_000;

/// Write and seal the queued accesses every `every`, for ever; also seals the rows writes
/// inserted in their transactions. Once `stop` turns true, what is queued is written before
/// it returns.
pub async fn run(
    store: Store,
    queue: Arc<tokio::sync::Mutex<Receiver<Entry>>>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut queue = queue.lock().await;
    let mut behind = false;
    let mut carried: Vec<Entry> = Vec::new();
    let mut owed = audit::Owed::default();
    loop {
        let deadline = tokio::time::Instant::now() + every;
        let mut batch: Vec<Entry> = std::mem::take(&mut carried);
        let mut stopping = *stop.borrow();
        // wait out the interval (or the start of shutdown), then take what is queued: the
        // queue is not awaited entry by entry, which would wake this task on every request
        if !stopping && !behind {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.wait_for(|s| *s) => stopping = true,
            }
        }
        if stopping {
            // from now on accesses are written as they come: what is queued is drained below
            store.set_audit_flushing(false);
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(e) => batch.push(e),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    stopping = true;
                    break;
                }
            }
        }
        // a full batch: more is waiting, taken at once
        behind = batch.len() >= MAX_BATCH;
        let s = store.clone();
        let post = owed.due(stopping && !behind);
        // (a task that panics loses what is owed: the next run, as at a start, finds it)
        let mut owed_now = std::mem::take(&mut owed);
        // one try per turn, on a blocking thread; a failure keeps the batch for the next turn
        // (never a retry loop there: a blocked thread would hold the runtime at its shutdown)
        let written = tokio::task::spawn_blocking(move || {
            batch = audit::name_patients(&s, batch);
            // serialised and indexed here, sealed and stored by the writer
            let blocks = audit::blocks_of(&batch);
            let r = s
                .write_rows(|c| {
                    let fresh = audit::flush(c, &blocks)?;
                    if post {
                        owed_now.post(c, &fresh, &blocks)?;
                    }
                    Ok(fresh)
                })
                .map(|fresh| owed_now.flushed(fresh, blocks, post));
            (batch, owed_now, r)
        })
        .await
        .map(|(batch, kept, r)| {
            owed = kept;
            (batch, r)
        });
        match written {
            Ok((rows, Ok(_))) => {
                metrics::counter!("emrsync_audit_entries_total").increment(rows.len() as u64)
            }
            Ok((kept, Err(e))) => {
                tracing::warn!(error = %e, entries = kept.len(), "audit entries could not be written; next turn");
                carried = kept;
                behind = false;
                if stopping {
                    tracing::error!(
                        entries = carried.len(),
                        "audit entries not written at shutdown"
                    );
                    return;
                }
                continue;
            }
            Err(e) => tracing::error!(error = %e, "the audit flush failed"),
        }
        if stopping && !behind {
            return;
        }
    }
}
