//! What each delivery attempt came to, written back to its subscription's row: advanced on
//! success, scheduled for a retry with back-off on failure, and in both cases released. The
//! outcomes of attempts that end together are written in one transaction (a fan-out of one
//! change to 1,000 subscribers is then a few commits, not 1,000).

use super::delivery::DeliverySettings;
use super::notification::Kind;
use super::registry::{Subscriber, status};
use crate::fhir::FhirId;
use crate::fhir::resource::now_micros;
use crate::store::schema::subscriptions;
use crate::store::{DbConnection, Method, Store, StoreError, versions, write};
use diesel::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Outcomes written in one transaction at most.
const BATCH: usize = 512;

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Sent { through: i64, kind: Kind },
    Failed(String),
    Nothing,
}

impl Outcome {
    /// Whether the subscription has more to send at once (queued events beyond those just
    /// sent, or its events after the handshake): the claim loop should look again now, not at
    /// its next tick. `row` is the subscription as read when the outcome is written, so that
    /// events queued while the lease was held (a claim then passed them by) count too.
    fn leaves_more(&self, row: &Subscriber) -> bool {
        match self {
            Outcome::Sent {
                kind: Kind::Handshake,
                ..
            } => true,
            Outcome::Sent { through, .. } => *through < row.events_since_start,
            _ => false,
        }
    }
}

/// Hands outcomes to the one task that writes them (`Recording`).
#[derive(Clone)]
pub struct Recorder(mpsc::UnboundedSender<(Subscriber, Outcome)>);

type Outcomes = mpsc::UnboundedReceiver<(Subscriber, Outcome)>;

/// The task that writes outcomes, for the caller to run (and start again should it stop: the
/// outcomes not yet written wait in the channel).
pub struct Recording {
    store: Store,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    outcomes: Arc<tokio::sync::Mutex<Outcomes>>,
}

impl Recording {
    pub fn run(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let (store, settings, wake) =
            (self.store.clone(), self.settings.clone(), self.wake.clone());
        let outcomes = self.outcomes.clone();
        async move {
            let mut rx = outcomes.lock().await;
            record_loop(store, settings, wake, &mut rx).await
        }
    }
}

impl Recorder {
    /// The recorder, and its writing task; `wake` is rung after a batch that leaves more to
    /// send.
    pub fn new(
        store: Store,
        settings: DeliverySettings,
        wake: Arc<Notify>,
    ) -> (Recorder, Recording) {
        let (tx, rx) = mpsc::unbounded_channel();
        let recording = Recording {
            store,
            settings,
            wake,
            outcomes: Arc::new(tokio::sync::Mutex::new(rx)),
        };
        (Recorder(tx), recording)
    }

    pub fn record(&self, sub: Subscriber, outcome: Outcome) {
        if self.0.send((sub, outcome)).is_err() {
            // only at shutdown; the lease runs out and the attempt is made again
            tracing::warn!("delivery outcome dropped: the recorder has stopped");
        }
    }
}

async fn record_loop(
    store: Store,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    rx: &mut Outcomes,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        let settings = settings.clone();
        let written = tokio::task::spawn_blocking(move || record(&store, &settings, batch)).await;
        match written {
            Ok(Ok(true)) => wake.notify_one(),
            Ok(Ok(false)) => {}
            // the leases run out and those attempts are made again (at least once)
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record delivery outcomes"),
            Err(e) => tracing::error!(error = %e, "delivery bookkeeping task failed"),
        }
    }
}

/// Write a batch of outcomes in one transaction, then bring the Subscription resources whose
/// status changed in line. True when some subscription has more to send at once.
fn record(
    store: &Store,
    settings: &DeliverySettings,
    mut batch: Vec<(Subscriber, Outcome)>,
) -> Result<bool, StoreError> {
    // rows are locked in id order, as every writer of them takes them
    batch.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let now = now_micros();
    let (changed, more) = store.write_rows(|c| {
        let ids: Vec<&str> = batch.iter().map(|(s, _)| s.id.as_str()).collect();
        let mut current = current_rows(c, &ids)?;
        let (mut changed, mut more) = (Vec::new(), false);
        for (sub, outcome) in &batch {
            let Some(row) = current.remove(&sub.id) else {
                continue; // deleted since the claim
            };
            more |= outcome.leaves_more(&row);
            if let Some(st) = record_one(c, settings, now, sub, &row, outcome)? {
                changed.push((sub.id.clone(), st));
            }
        }
        Ok((changed, more))
    })?;
    for (id, st) in changed {
        set_resource_status(store, &id, st)?;
    }
    Ok(more)
}

/// The rows as they are now, locked on PostgreSQL until the transaction ends.
fn current_rows(
    c: &mut DbConnection,
    ids: &[&str],
) -> Result<HashMap<String, Subscriber>, StoreError> {
    use subscriptions::dsl as s;
    macro_rules! q {
        () => {
            s::subscriptions
                .filter(s::id.eq_any(ids))
                .order(s::id)
                .select(Subscriber::as_select())
        };
    }
    let rows: Vec<Subscriber> = match c {
        DbConnection::Pg(c) => q!().for_update().load(c)?,
        DbConnection::Sqlite(c) => q!().load(c)?,
    };
    Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Advance (or schedule the retry of) one subscription and release its lease; the status its
/// resource should now show, when that changed.
fn record_one(
    c: &mut DbConnection,
    settings: &DeliverySettings,
    now: i64,
    sub: &Subscriber,
    current: &Subscriber,
    outcome: &Outcome,
) -> Result<Option<&'static str>, StoreError> {
    use subscriptions::dsl as s;
    let row = s::subscriptions.find(&sub.id);
    // a client's update since the claim restarted the subscription (a new handshake is
    // due): this attempt's outcome no longer applies
    if sub.handshake_done && !current.handshake_done {
        diesel::update(row)
            .set(s::lease_until.eq(0i64))
            .execute(c)?;
        return Ok(None);
    }
    let new_status = match outcome {
        Outcome::Sent { through, kind } => {
            diesel::update(row)
                .set((
                    s::delivered_through.eq(current.delivered_through.max(*through)),
                    s::handshake_done.eq(current.handshake_done || *kind == Kind::Handshake),
                    s::attempts.eq(0),
                    s::next_attempt_at.eq(0i64),
                    s::last_error.eq(None::<String>),
                    s::last_sent_at.eq(now),
                    s::lease_until.eq(0i64),
                ))
                .execute(c)?;
            Some(status::ACTIVE)
        }
        Outcome::Failed(error) => {
            let attempts = current.attempts + 1;
            let delay = backoff(attempts, settings.retry_max);
            diesel::update(row)
                .set((
                    s::attempts.eq(attempts),
                    s::next_attempt_at.eq(now + delay.as_micros() as i64),
                    s::last_error.eq(Some(error)),
                    s::lease_until.eq(0i64),
                ))
                .execute(c)?;
            tracing::info!(subscription = %sub.id, attempts, %error, "notification not delivered; will retry");
            (attempts >= settings.error_after).then_some(status::ERROR)
        }
        Outcome::Nothing => {
            diesel::update(row)
                .set(s::lease_until.eq(0i64))
                .execute(c)?;
            None
        }
    };
    let Some(st) = new_status.filter(|st| *st != current.status) else {
        return Ok(None);
    };
    diesel::update(row).set(s::status.eq(st)).execute(c)?;
    Ok(Some(st))
}

/// The wait before attempt `attempts + 1`: doubling from one second up to `max`, less up to
/// a quarter at random so that many subscriptions failing together do not retry together.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let doublings = (attempts - 1).clamp(0, 16) as u32;
    let exp = Duration::from_millis(1000u64 << doublings);
    let capped = exp.min(max);
    capped.mul_f64(1.0 - fastrand::f64() * 0.25)
}

/// Write `status` into the Subscription resource (a new version), so that a client reading
/// it sees what `$status` says. A concurrent client update wins (it restarts the subscription).
pub fn set_resource_status(store: &Store, id: &str, st: &str) -> Result<(), StoreError> {
    let ctx = super::write_rules::server_context();
    let result = store.write(|tx| {
        let Some(current) = versions::current(tx.conn, "Subscription", id)? else {
            return Ok(());
        };
        if current.deleted {
            return Ok(());
        }
        let mut json = current.json();
        if json["status"] == st {
            return Ok(());
        }
        json["status"] = Value::String(st.to_string());
        let fid = FhirId::parse(id).map_err(|e| StoreError::Conflict(e.to_string()))?;
        write::put(
            tx,
            "Subscription",
            &fid,
            json,
            Method::Put,
            Some(current.version_id),
            &ctx,
        )?;
        Ok::<(), StoreError>(())
    });
    match result {
        Err(StoreError::PreconditionFailed { .. } | StoreError::Conflict(_)) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_never_waits_less_than_three_quarters() {
        let max = Duration::from_secs(60);
        for (attempts, full) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (7, 60_000),
            (40, 60_000),
        ] {
            let d = backoff(attempts, max).as_millis() as u64;
            assert!(d <= full && d >= full * 3 / 4, "attempt {attempts}: {d} ms");
        }
    }
}
