//! The linker: links each Patient the index holds pending (`index::file` marks it so in its
//! write transaction) to its person, right after the write committed, in batches, in the order
//! they were filed.
//!
//! Why not in the write's transaction: on SQLite every write runs on the one writer thread, and
//! finding and scoring the candidates (reads of the index, then the comparisons) took twice as
//! long as filing the Patient did. Here the scoring runs on a reader, beside the writer, and the
//! writer is left only the link rows, for a whole batch in one write. A Patient is a candidate
//! for others as soon as it commits (it is filed with it); its own link follows within a batch.
//!
//! Nothing is lost: a pending mark is committed with the Patient and cleared in the transaction
//! that writes its link. Two linkers (two processes on one PostgreSQL) may score the same
//! Patient; the one whose transaction clears the mark links it, the other passes it by. A
//! Patient filed again after its scores were taken (a newer version) keeps its newer mark and
//! is linked again in a later batch.

use super::index::{self, mpi_people};
use super::links;
use super::model::Scored;
use super::mpi::Mpi;
use super::person::Person;
use crate::ingest::Ingest;
use crate::store::{DbConnection, Store, StoreError};
use diesel::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Patients linked in one batch: one write for all of them.
const BATCH: i64 = 200;
/// Patients filed again in one write at start (those written while the index did not hold them).
const REFILE_BATCH: i64 = 500;
/// Batches of one task (linking, golden records) in one turn of the linker, before the others
/// get theirs.
const TURN: usize = 10;
/// How long the linker waits for a commit before it looks anyway.
const TICK: Duration = Duration::from_millis(250);

/// A Patient waiting for its link.
struct Pending {
    id: String,
    person: Person,
    /// When it was filed: the mark that its link clears.
    at: i64,
    /// The source whose write filed it.
    by: String,
}

/// The oldest pending Patients, first filed first, at most `limit`.
fn pending(conn: &mut DbConnection, limit: i64) -> Result<Vec<Pending>, StoreError> {
    use mpi_people::dsl as p;
    let rows: Vec<(String, String, Option<i64>, String)> = p::mpi_people
        .filter(p::pending.is_not_null())
        .order(p::pending)
        .select((p::patient_id, p::person, p::pending, p::filed_by))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, text, at, by)| Pending {
            id,
            person: serde_json::from_str(&text).unwrap_or_default(),
            at: at.unwrap_or_default(),
            by,
        })
        .collect())
}

/// Clear the pending mark of each of `batch` whose mark is still the one read: the Patients
/// this linker is the one to link. On PostgreSQL in one statement (a statement per Patient was
/// a round trip per Patient); on SQLite one per Patient, calls in this process.
fn claim(
    conn: &mut DbConnection,
    batch: &[Pending],
) -> Result<std::collections::HashSet<String>, StoreError> {
    use mpi_people::dsl as p;
    match conn {
        DbConnection::Pg(c) => {
            use diesel::sql_types::{Array, BigInt, Text};
            #[derive(QueryableByName)]
            struct Claimed {
                #[diesel(sql_type = Text)]
                patient_id: String,
            }
            let rows: Vec<Claimed> = diesel::sql_query(
                "UPDATE mpi_people AS p SET pending = NULL \
                 FROM unnest($1::text[], $2::bigint[]) AS v(id, at) \
                 WHERE p.patient_id = v.id AND p.pending = v.at RETURNING p.patient_id",
            )
            .bind::<Array<Text>, _>(batch.iter().map(|p| p.id.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(batch.iter().map(|p| p.at).collect::<Vec<_>>())
            .load(c)?;
            Ok(rows.into_iter().map(|r| r.patient_id).collect())
        }
        DbConnection::Sqlite(c) => {
            let mut claimed = std::collections::HashSet::new();
            for one in batch {
                let cleared =
                    diesel::update(p::mpi_people.find(&one.id).filter(p::pending.eq(one.at)))
                        .set(p::pending.eq(None::<i64>))
                        .execute(c)?;
                if cleared == 1 {
                    claimed.insert(one.id.clone());
                }
            }
            Ok(claimed)
        }
    }
}

/// Whether the Patient `id` is waiting for its link; `None` when it is not filed.
pub fn is_pending(conn: &mut DbConnection, id: &str) -> Result<Option<bool>, StoreError> {
    use mpi_people::dsl as p;
    let at: Option<Option<i64>> = p::mpi_people
        .find(id)
        .select(p::pending)
        .get_result(conn)
        .optional()?;
    Ok(at.map(|at| at.is_some()))
}

/// When the oldest Patient waiting for its link was filed (`None`: none waits).
pub fn oldest_pending(conn: &mut DbConnection) -> Result<Option<i64>, StoreError> {
    use mpi_people::dsl as p;
    Ok(p::mpi_people
        .filter(p::pending.is_not_null())
        .select(diesel::dsl::min(p::pending))
        .get_result(conn)?)
}

/// How far the linker is behind: Patients pending, and when the oldest of them was filed.
pub fn backlog(conn: &mut DbConnection) -> Result<(i64, Option<i64>), StoreError> {
    use mpi_people::dsl as p;
    let waiting = p::mpi_people.filter(p::pending.is_not_null());
    let count: i64 = waiting.count().get_result(conn)?;
    let oldest: Option<i64> = waiting
        .select(diesel::dsl::min(p::pending))
        .get_result(conn)?;
    Ok((count, oldest))
}

impl Mpi {
    /// Link one batch of pending Patients; how many it found pending (some may have been
    /// linked by another linker meanwhile).
    pub fn link_pending(&self, store: &Store) -> Result<usize, StoreError> {
        let batch = store.read(|c| pending(c, BATCH))?;
        if batch.is_empty() {
            return Ok(0);
        }
        for p in &batch {
            self.known(&p.id, &p.person);
        }
        let started = std::time::Instant::now();
        let asked: Vec<(&Person, Option<&str>)> = batch
            .iter()
            .map(|p| (&p.person, Some(p.id.as_str())))
            .collect();
        let scored: Vec<Vec<(String, Scored)>> = store.read(|c| self.scores_many(c, &asked))?;
        let scoring = started.elapsed();
        store.write_rows(|c| {
            // the marks are cleared first, all at once, in the transaction the links are
            // written in: linking reads no mark, so the order makes no difference
            let claimed = claim(c, &batch)?;
            let ids: Vec<&str> = claimed.iter().map(String::as_str).collect();
            let mut links = links::links_of(c, &ids)?;
            // linking one Patient may write the links of its candidates and of the Patient it
            // is replaced by (`Mpi::link`): one of those later in the batch is read again
            let mut touched = std::collections::HashSet::new();
            for (p, found) in batch.iter().zip(scored) {
                if !claimed.contains(&p.id) {
                    continue;
                }
                let current = match touched.contains(&p.id) {
                    true => links::link_of(c, &p.id)?,
                    false => links.remove(&p.id),
                };
                touched.extend(found.iter().map(|(other, _)| other.clone()));
                touched.extend(p.person.replaced_by.clone());
                self.link(c, (&p.id, &p.person), current, found, &p.by)?;
            }
            Ok(())
        })?;
        tracing::debug!(
            patients = batch.len(),
            scoring_us = scoring.as_micros() as u64,
            linking_us = (started.elapsed() - scoring).as_micros() as u64,
            "MPI: linked a batch"
        );
        Ok(batch.len())
    }

    /// File the current Patients the index does not hold (written before it existed, or before
    /// its tables were rebuilt), pending, in batches; how many.
    pub fn refile(&self, store: &Store) -> Result<usize, StoreError> {
        let (patients, filed) = store.read(|c| Ok((index::patients(c)?, index::size(c)?)))?;
        if patients == filed {
            return Ok(0);
        }
        let mut done = 0;
        let mut after = String::new();
        loop {
            let (page, last) = store.read(|c| index::unfiled(c, &after, REFILE_BATCH))?;
            let Some(last) = last else {
                break;
            };
            after = last;
            if page.is_empty() {
                continue;
            }
            let versions =
                store.read(|c| crate::store::versions::current_many(c, "Patient", &page))?;
            let n = store.write_rows(|c| {
                let mut n = 0;
                for v in versions.iter().filter(|v| !v.deleted) {
                    let json = v.json();
                    if super::golden::is_golden(&json) {
                        continue;
                    }
                    let person = Person::of(&json);
                    // a write may have filed it since the page was read: replace, never add twice
                    index::file(c, &v.id, &person, false, (v.last_updated, "refile"))?;
                    n += 1;
                }
                Ok(n)
            })?;
            done += n;
        }
        store.read(|c| self.count(c))?;
        Ok(done)
    }
}

/// Files what the index (and the provider registry) lacks, then links pending Patients (and
/// providers) as they are committed and writes the golden records their links made stale
/// (through `ingest`), for ever.
pub async fn run(ingest: Ingest, mpi: Arc<Mpi>) {
    let store = ingest.store.clone();
    {
        let (store, mpi) = (store.clone(), mpi.clone());
        match tokio::task::spawn_blocking(move || mpi.refile(&store)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(patients = n, "filed Patients the index did not hold"),
            Ok(Err(e)) => tracing::warn!(error = %e, "filing Patients in the index failed"),
            Err(e) => tracing::error!(error = %e, "filing task failed"),
        }
        let store = ingest.store.clone();
        match tokio::task::spawn_blocking(move || super::providers::linking::refile(&store)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(records = n, "filed providers the registry did not hold"),
            Ok(Err(e)) => tracing::warn!(error = %e, "filing providers in the registry failed"),
            Err(e) => tracing::error!(error = %e, "filing task failed"),
        }
    }
    let mut changes = store.changes();
    loop {
        // each task a bounded turn: under a sustained load linking never runs dry, and golden
        // records and the index's own u (which scoring depends on) must not wait for it to
        let (s, m) = (store.clone(), mpi.clone());
        let more_links = drain("linking Patients", TURN, move || {
            Ok(m.link_pending(&s)? as i64 == BATCH)
        })
        .await;
        let (i, m) = (ingest.clone(), mpi.clone());
        let more_golden = drain("writing golden records", TURN, move || {
            Ok(m.refresh_golden(&i)? > 0)
        })
        .await;
        let s = store.clone();
        let more_providers = drain("linking providers", TURN, move || {
            Ok(super::providers::linking::link_pending(&s)? as i64
                == super::providers::linking::BATCH)
        })
        .await;
        let (i, m) = (ingest.clone(), mpi.clone());
        let more_provider_golden = drain("writing providers' golden records", TURN, move || {
            Ok(super::providers::golden::refresh(&i, &m.provider_rules)? > 0)
        })
        .await;
        // the planner's statistics, for a store filling from empty (PostgreSQL)
        if mpi.should_analyze() {
            let (s, m) = (store.clone(), mpi.clone());
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || m.analyze(&s)).await {
                tracing::warn!(error = %e, "analyzing the index's tables failed; tried again when it has doubled");
            }
        }
        // the index's own u, when it is first big enough and each time it grew by a quarter
        if mpi.should_learn() {
            let (s, m) = (store.clone(), mpi.clone());
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || m.learn(&s)).await {
                tracing::warn!(error = %e, "taking u from the index failed; tried again when it has doubled");
            }
        }
        if more_links || more_golden || more_providers || more_provider_golden {
            continue;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Run `step` on a blocking thread again while it says there is more to do, at most `turn`
/// times; whether there is more. A failure is logged, and tried again at the linker's next
/// wake.
async fn drain<F>(what: &'static str, turn: usize, step: F) -> bool
where
    F: Fn() -> Result<bool, StoreError> + Clone + Send + 'static,
{
    for _ in 0..turn {
        let step = step.clone();
        match tokio::task::spawn_blocking(step).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{what} failed; will retry");
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "{what}: the task failed");
                return false;
            }
        }
    }
    true
}
