//! Group commit for SQLite, whose single writer makes every commit wait for its own fsync.
//!
//! Writers share one connection. Each runs its work, on its own thread, inside a SAVEPOINT of
//! the transaction that is open; then, if no other writer is waiting to join, it commits for
//! everybody in the group, else it leaves the commit to the last one in. A writer's result is
//! handed back only after the COMMIT that made its changes durable (and if that COMMIT fails,
//! every writer of the group gets the error). Concurrent writes thus share one fsync and one
//! copy of the pages they all touch; the answer to a client still comes after its data is on
//! disk (`wal_sync`: the group's COMMIT writes the log, and the log is synced after the next
//! group has the connection). A group is committed when it reaches `MAX_GROUP` writers even
//! if others are waiting, so that a steady stream of writers cannot hold a commit back, and so
//! that while one group's writers prepare their next work, another's is being written.

use super::db::DbConnection;
use super::error::StoreError;
use super::wal_sync::WalSync;
use diesel::Connection;
use diesel::connection::TransactionManager;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Writers committed together at most. A group's writers are answered together and come
/// back together: with 16 HL7v2 senders, groups of 16 left the writer idle while all of them
/// prepared their next message at once. Groups of 4 to 12 measured alike, about 10% more
/// messages/s than 64 (one more commit's pages written per group is the price).
const MAX_GROUP: usize = 8;

struct State {
    conn: DbConnection,
    /// A transaction is open (a group is being formed).
    open: bool,
    /// Writers whose work is in the open transaction.
    members: usize,
    /// Commits made so far; a writer waits for the one after the epoch it joined in.
    epoch: u64,
    /// Commits that failed, by epoch, for the writers of that group (few: kept for a while).
    failures: Vec<(u64, String)>,
}

pub struct GroupCommit {
    state: Mutex<State>,
    committed: Condvar,
    /// Writers that want the connection: while some wait, a finished writer leaves the
    /// commit to them.
    queued: AtomicUsize,
    /// Makes each group's commit durable once the connection is handed on.
    wal: WalSync,
}

/// BEGIN IMMEDIATE: the write lock is taken when the group starts (waiting `busy_timeout` for
/// another process, an `emrsync replay` say, to finish), never by a read turning into a write
/// midway, which SQLite refuses at once ("database is locked") when another connection
/// committed since that read.
fn begin_immediate(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => {
            diesel::connection::AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        other => <DbConnection as Connection>::TransactionManager::begin_transaction(other),
    }
}

impl GroupCommit {
    /// `conn` commits with `synchronous = NORMAL`; `wal` syncs its log.
    pub fn new(conn: DbConnection, wal: WalSync) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(State {
                conn,
                open: false,
                members: 0,
                epoch: 0,
                failures: Vec::new(),
            }),
            committed: Condvar::new(),
            queued: AtomicUsize::new(0),
            wal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `work` in the group's transaction and return its result once that transaction is
    /// committed. `work`'s error rolls back its own changes only.
    pub fn write<T, E>(&self, work: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError> + From<diesel::result::Error>,
    {
        self.wal.check()?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut st = self.lock();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let first = !st.open;
        if first {
            if let Err(e) = begin_immediate(&mut st.conn) {
                return Err(E::from(e));
            }
            st.open = true;
        }
        let conn = &mut st.conn;
        // The first writer of a group needs no savepoint: if it fails, the transaction holds
        // only its changes and is rolled back whole (savepoints cost SQLite noticeably on a
        // large database: about 15% of the CPU time of transaction Bundles in a profile).
        // Later writers get one (diesel makes a nested transaction a SAVEPOINT), so that an
        // error rolls back their own changes only.
        let result = if first {
            match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                Ok(Ok(v)) => Ok(v),
                failed => {
                    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                        &mut st.conn,
                    );
                    st.open = false;
                    return match failed {
                        Ok(Err(e)) => Err(e),
                        _ => {
                            tracing::error!("a write panicked; its changes were rolled back");
                            Err(E::from(StoreError::Database(
                                "the write failed unexpectedly".into(),
                            )))
                        }
                    };
                }
            }
        } else {
            match catch_unwind(AssertUnwindSafe(|| conn.transaction(work))) {
                Ok(r) => r,
                Err(_) => {
                    // a panic inside the work left its savepoint open: undo it, keep the group
                    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                        &mut st.conn,
                    );
                    tracing::error!("a write panicked; its changes were rolled back");
                    Err(E::from(StoreError::Database(
                        "the write failed unexpectedly".into(),
                    )))
                }
            }
        };
        st.members += 1;
        let joined = st.epoch;
        let others_waiting = self.queued.load(Ordering::SeqCst) > 0;
        if !others_waiting || st.members >= MAX_GROUP {
            self.commit(&mut st);
        } else {
            while st.epoch == joined {
                st = self.committed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        // my group is the commit that ended epoch `joined`
        if let Some((_, e)) = st.failures.iter().find(|(epoch, _)| *epoch == joined) {
            // the group's COMMIT failed: nothing of this writer's is durable
            return Err(E::from(StoreError::Unavailable(format!(
                "commit failed: {e}"
            ))));
        }
        // the next group writes while this one's commit goes to disk
        drop(st);
        if result.is_ok() {
            self.wal.make_durable(joined + 1)?;
        }
        result
    }

    fn commit(&self, st: &mut State) {
        let outcome =
            <DbConnection as Connection>::TransactionManager::commit_transaction(&mut st.conn)
                .map_err(|e| e.to_string());
        if outcome.is_err() {
            // leave no half transaction behind for the next group
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                &mut st.conn,
            );
        }
        if let Err(e) = outcome {
            tracing::error!(error = %e, writers = st.members, "group commit failed");
            st.failures.push((st.epoch, e));
            let keep_after = st.epoch.saturating_sub(10_000);
            st.failures.retain(|(epoch, _)| *epoch >= keep_after);
        }
        tracing::trace!(writers = st.members, "group committed");
        st.open = false;
        st.members = 0;
        st.epoch += 1;
        self.wal.committed(st.epoch);
        self.committed.notify_all();
    }
}
