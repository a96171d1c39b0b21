//! Group commit for SQLite, whose single writer makes every commit wait for its own fsync.
//!
//! Writers share one connection, owned by one thread: each writer hands its work to that
//! thread, which runs it inside a SAVEPOINT of the transaction that is open; then, if no
//! other writer is waiting to join, it commits for everybody in the group, else it leaves the
//! commit to the last one in. A writer's result is handed back only after the COMMIT that
//! made its changes durable (and if that COMMIT fails, every writer of the group gets the
//! error). Concurrent writes thus share one fsync and one copy of the pages they all touch;
//! the answer to a client still comes after its data is on disk (`wal_sync`: the group's
//! COMMIT writes the log, and the log is synced after the next group has the connection). A
//! group is committed when it reaches `MAX_GROUP` writers even if others are waiting, so that
//! a steady stream of writers cannot hold a commit back, and so that while one group's
//! writers prepare their next work, another's is being written.
//!
//! Why a thread of its own: when each writer ran its work on its own thread, taking the
//! connection's lock in turn, the connection sat idle for every hand-over (a futex wake and a
//! wait for the next thread to be scheduled): 16% of the time under HL7v2 load on 2 cores.
//! The writer thread goes from one writer's work to the next without a hand-over, its caches
//! stay warm, and the writers wait for their answers off its path. HL7v2 over MLLP went from
//! about 2,200 to 2,800 messages/s (16 senders), REST creates from 1,680 to 2,230/s.
//!
//! A savepoint is not free: SQLite copies every page a savepoint changes to its sub-journal
//! first (malloc'd 1 KiB chunks, freed at RELEASE). Writers that try again anyway when told
//! of a Conflict (the HL7v2 adapter's first try) can therefore join without one
//! (`Join::MayRetry`), as long as every writer before them in the group can try again too:
//! if one of them fails, the whole transaction is rolled back, and the others of the group
//! are told Conflict and try again (with a savepoint, so that a writer that keeps failing
//! cannot make others fail twice).
//!
//! Before its COMMIT, with every writer's savepoint released, a group runs the store's
//! `BeforeCommit` work once for all its writers (the full-text index's queued words,
//! `search_text::flush`); if that fails, the group is rolled back and every writer told so.

use super::db::DbConnection;
use super::error::StoreError;
use super::wal_sync::WalSync;
use diesel::Connection;
use diesel::connection::TransactionManager;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Writers committed together at most. A group's writers are answered together and come
/// back together: with 16 HL7v2 senders, groups of 16 left the writer idle while all of them
/// prepared their next message at once. Groups of 4 to 12 measured alike, about 10% more
/// messages/s than 64 (one more commit's pages written per group is the price).
const MAX_GROUP: usize = 8;

/// The writer thread's state.
struct State {
    conn: DbConnection,
    /// A transaction is open (a group is being formed).
    open: bool,
    /// Writers whose work is in the open transaction.
    members: usize,
    /// Every writer in the open transaction may be told to try again (`Join::MayRetry`).
    all_retry: bool,
    /// Groups ended so far (the open one's number).
    epoch: u64,
}

/// What the writers waiting for their group read.
struct Ended {
    /// Groups ended so far (committed, or rolled back); a writer waits for the end of the
    /// epoch it joined in.
    epoch: u64,
    /// Groups that did not commit, by epoch, for their writers (few: kept for a while).
    failures: Vec<(u64, Failure)>,
}

/// How a group ended without committing.
enum Failure {
    /// Its COMMIT failed: nothing of it is durable.
    Commit(String),
    /// A writer without a savepoint failed, and the transaction was rolled back for it.
    RolledBack,
}

/// What a writer's failure may undo, and so whether it needs a savepoint of its own when it
/// joins a group (SQLite; on PostgreSQL every write is a transaction of its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Join {
    /// Its own changes only; nor may another writer's failure undo them.
    Alone,
    /// The writer tries again when told `StoreError::Conflict`: if every writer before it in
    /// the group may too, it joins without a savepoint, and its failure rolls back the whole
    /// group, whose other writers are told Conflict.
    MayRetry,
}

/// Work a group does once for all its writers just before its COMMIT, outside their savepoints.
pub type BeforeCommit = fn(&mut DbConnection) -> Result<(), StoreError>;

pub struct GroupCommit {
    /// Locked by the writer thread only (a Mutex makes `GroupCommit` shareable).
    state: Mutex<State>,
    ended: Mutex<Ended>,
    /// Signalled when a group ends (`ended` moves on).
    committed: Condvar,
    /// Writers handed to the writer thread and not yet started: while some wait, a finished
    /// writer leaves the commit to them.
    queued: AtomicUsize,
    /// Makes each group's commit durable once the connection is handed on.
    wal: WalSync,
    /// The one thread that runs writers' work, in turn (see the module's doc).
    writer: rayon_core::ThreadPool,
    before_commit: BeforeCommit,
}

/// BEGIN IMMEDIATE: the write lock is taken when the group starts (waiting `busy_timeout` for
/// another process, an `emrsync replay` say, to finish), never by a read turning into a write
/// midway, which SQLite refuses at once ("database is locked") when another connection
/// committed since that read.
pub(super) fn begin_immediate(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => {
            diesel::connection::AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        other => <DbConnection as Connection>::TransactionManager::begin_transaction(other),
    }
}

impl GroupCommit {
    /// `conn` commits with `synchronous = NORMAL`; `wal` syncs its log; `before_commit` runs
    /// before each group's COMMIT.
    pub fn new(
        conn: DbConnection,
        wal: WalSync,
        before_commit: BeforeCommit,
    ) -> anyhow::Result<GroupCommit> {
        let writer = rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "emrsync-writer".into())
            .build()?;
        Ok(GroupCommit {
            state: Mutex::new(State {
                conn,
                open: false,
                members: 0,
                all_retry: true,
                epoch: 0,
            }),
            ended: Mutex::new(Ended {
                epoch: 0,
                failures: Vec::new(),
            }),
            committed: Condvar::new(),
            queued: AtomicUsize::new(0),
            wal,
            writer,
            before_commit,
        })
    }

    /// Run `work` in the group's transaction and return its result once that transaction is
    /// committed. An error of `work` rolls back what `join` says.
    pub fn write<T, E>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E> + Send,
        join: Join,
    ) -> Result<T, E>
    where
        T: Send,
        E: From<StoreError> + From<diesel::result::Error> + Send,
    {
        self.wal.check()?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        // `install` runs the closure on the writer thread and returns its result here
        let (result, joined) = self.writer.install(|| self.take_turn(work, join))?;
        // wait for my group to end (epoch `joined`)
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        while ended.epoch == joined {
            ended = self
                .committed
                .wait(ended)
                .unwrap_or_else(|p| p.into_inner());
        }
        match ended.failures.iter().find(|(epoch, _)| *epoch == joined) {
            // the group's COMMIT failed: nothing of this writer's is durable
            Some((_, Failure::Commit(e))) => {
                return Err(E::from(StoreError::Unavailable(format!(
                    "commit failed: {e}"
                ))));
            }
            Some((_, Failure::RolledBack)) => {
                return Err(E::from(StoreError::Conflict(
                    "rolled back with another write of its group".into(),
                )));
            }
            None => {}
        }
        drop(ended);
        if result.is_ok() {
            self.wal.make_durable(joined + 1)?;
        }
        result
    }

    /// A writer's turn, on the writer thread: run `work` in the open group (opening one if
    /// none is), and commit the group unless another writer is waiting to join it. Returns
    /// `work`'s result and the group's epoch; an error here (or of `work` that rolled back
    /// the transaction) is the writer's answer at once.
    fn take_turn<T, E>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
        join: Join,
    ) -> Result<(Result<T, E>, u64), E>
    where
        E: From<StoreError> + From<diesel::result::Error>,
    {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.open {
            begin_immediate(&mut st.conn)?;
            st.open = true;
        }
        // The first writer of a group needs no savepoint: if it fails, the transaction holds
        // only its changes and is rolled back whole. Nor does a writer that may be told to
        // try again, when all the writers before it may be too.
        let bare = st.members == 0 || (join == Join::MayRetry && st.all_retry);
        st.all_retry &= join == Join::MayRetry;
        let conn = &mut st.conn;
        let result = if bare {
            match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                Ok(Ok(v)) => Ok(v),
                failed => {
                    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                        &mut st.conn,
                    );
                    // the others' changes, if any, went with it: they try again
                    let others = st.members > 0;
                    self.end(&mut st, others.then_some(Failure::RolledBack));
                    return Err(match failed {
                        Ok(Err(e)) => e,
                        _ => panicked(),
                    });
                }
            }
        } else {
            // diesel makes a nested transaction a SAVEPOINT: an error rolls back this
            // writer's changes only
            match catch_unwind(AssertUnwindSafe(|| conn.transaction(work))) {
                Ok(r) => r,
                Err(_) => {
                    // a panic inside the work left its savepoint open: undo it, keep the group
                    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                        &mut st.conn,
                    );
                    Err(panicked())
                }
            }
        };
        st.members += 1;
        let joined = st.epoch;
        if self.queued.load(Ordering::SeqCst) == 0 || st.members >= MAX_GROUP {
            self.commit(&mut st);
        }
        Ok((result, joined))
    }

    fn commit(&self, st: &mut State) {
        metrics::histogram!("emrsync_group_commit_writers").record(st.members as f64);
        let outcome = (self.before_commit)(&mut st.conn)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                <DbConnection as Connection>::TransactionManager::commit_transaction(&mut st.conn)
                    .map_err(|e| e.to_string())
            });
        if outcome.is_err() {
            // leave no half transaction behind for the next group
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                &mut st.conn,
            );
        }
        match &outcome {
            Err(e) => tracing::error!(error = %e, writers = st.members, "group commit failed"),
            Ok(()) => tracing::trace!(writers = st.members, "group committed"),
        }
        self.end(st, outcome.err().map(Failure::Commit));
    }

    /// End the open group (its transaction committed or rolled back) and wake its writers.
    /// A group that ends empty-handed (its only writer failed) still counts as an epoch:
    /// nobody waits for it, and `WalSync` only needs the count to grow.
    fn end(&self, st: &mut State, failure: Option<Failure>) {
        let ending = st.epoch;
        st.open = false;
        st.members = 0;
        st.all_retry = true;
        st.epoch += 1;
        self.wal.committed(st.epoch);
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = failure {
            ended.failures.push((ending, f));
            let keep_after = ending.saturating_sub(10_000);
            ended.failures.retain(|(epoch, _)| *epoch >= keep_after);
        }
        ended.epoch = st.epoch;
        drop(ended);
        self.committed.notify_all();
    }
}

/// A writer's answer when its work panicked (its changes were rolled back).
fn panicked<E: From<StoreError>>() -> E {
    tracing::error!("a write panicked; its changes were rolled back");
    E::from(StoreError::Database("the write failed unexpectedly".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Database;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    /// A group committer on a new database with one table of numbers.
    fn group(dir: &std::path::Path) -> Arc<GroupCommit> {
        group_with(dir, |_| Ok(()))
    }

    /// The same, running `before_commit` before each COMMIT; with a table `queue` besides.
    fn group_with(dir: &std::path::Path, before_commit: BeforeCommit) -> Arc<GroupCommit> {
        let path = dir.join("g.db");
        let mut conn = Database::Sqlite(path.clone(), None)
            .connect_writer()
            .unwrap();
        conn.batch_execute(
            "CREATE TABLE t (x INTEGER PRIMARY KEY); CREATE TABLE queue (x INTEGER)",
        )
        .unwrap();
        Arc::new(GroupCommit::new(conn, WalSync::new(&path), before_commit).unwrap())
    }

    /// What the queue holds goes into `t`, a hundred higher (as the text index's queued words
    /// go into it); a number already there fails it.
    fn move_queue(c: &mut DbConnection) -> Result<(), StoreError> {
        c.batch_execute("INSERT INTO t SELECT x + 100 FROM queue; DELETE FROM queue")?;
        Ok(())
    }

    fn insert(c: &mut DbConnection, x: i32) -> Result<(), StoreError> {
        diesel::sql_query(format!("INSERT INTO t VALUES ({x})")).execute(c)?;
        Ok(())
    }

    /// The numbers committed, in order.
    fn committed(gc: &GroupCommit) -> String {
        gc.write(
            |c| {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                    "coalesce((SELECT group_concat(x) FROM (SELECT x FROM t ORDER BY x)), '')",
                ))
                .get_result::<String>(c)
                .map_err(StoreError::from)
            },
            Join::Alone,
        )
        .unwrap()
    }

    /// Insert `x`, then fail: with an error, or by panicking.
    fn insert_and_fail(c: &mut DbConnection, x: i32, panics: bool) -> Result<(), StoreError> {
        insert(c, x)?;
        if panics {
            panic!("a bug in the work");
        }
        Err(StoreError::Database("the mapping failed".into()))
    }

    /// Writer 1 inserts 1 and waits in the group for writer 2, which runs `second_work`:
    /// returns both results. `first` and `second` say how each joins.
    fn two_in_a_group(
        gc: &Arc<GroupCommit>,
        first: Join,
        second: Join,
        second_work: impl FnOnce(&mut DbConnection) -> Result<(), StoreError> + Send,
    ) -> (Result<(), StoreError>, Result<(), StoreError>) {
        let (inside, entered) = mpsc::channel();
        let one = {
            let gc = gc.clone();
            std::thread::spawn(move || {
                gc.write(
                    |c| {
                        insert(c, 1)?;
                        inside.send(()).unwrap();
                        // stay in the group until writer 2 waits for its turn
                        while gc.queued.load(Ordering::SeqCst) == 0 {
                            std::thread::yield_now();
                        }
                        Ok(())
                    },
                    first,
                )
            })
        };
        entered.recv().unwrap();
        let two = gc.write(second_work, second);
        (one.join().unwrap(), two)
    }

    #[test]
    fn a_failure_without_savepoint_rolls_back_its_group_whose_writers_are_told_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let gc = group(dir.path());
        let (one, two) = two_in_a_group(&gc, Join::MayRetry, Join::MayRetry, |c| {
            insert_and_fail(c, 2, false)
        });
        assert!(matches!(one, Err(StoreError::Conflict(_))), "{one:?}");
        assert!(matches!(two, Err(StoreError::Database(_))), "{two:?}");
        assert_eq!(committed(&gc), "");
        // the next group starts afresh
        gc.write(|c| insert(c, 3), Join::MayRetry).unwrap();
        assert_eq!(committed(&gc), "3");
    }

    /// The writer thread serves every writer: one that fails alone, by an error or a panic, is
    /// answered with the error and rolled back, and the writes after it go through.
    #[test]
    fn a_writer_failing_or_panicking_alone_leaves_nothing_behind_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let gc = group(dir.path());
        for panics in [false, true] {
            for join in [Join::Alone, Join::MayRetry] {
                let failed = gc.write(|c| insert_and_fail(c, 1, panics), join);
                assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
            }
        }
        gc.write(|c| insert(c, 2), Join::Alone).unwrap();
        assert_eq!(committed(&gc), "2");
    }

    #[test]
    fn a_writer_that_cannot_retry_never_loses_its_changes_to_another_writers_failure_or_panic() {
        for (first, second) in [
            (Join::Alone, Join::MayRetry),
            (Join::MayRetry, Join::Alone),
            (Join::Alone, Join::Alone),
        ] {
            for panics in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let gc = group(dir.path());
                let (one, two) =
                    two_in_a_group(&gc, first, second, |c| insert_and_fail(c, 2, panics));
                assert!(one.is_ok(), "{one:?}");
                assert!(matches!(two, Err(StoreError::Database(_))), "{two:?}");
                assert_eq!(committed(&gc), "1");
            }
        }
    }

    /// What writers queue is moved once for the group before it commits: a failed writer's
    /// queued rows went with its savepoint, and a failure of the move fails the whole group.
    #[test]
    fn the_work_before_commit_sees_what_the_group_kept_and_its_failure_fails_the_group() {
        let queue = |c: &mut DbConnection, x: i32| -> Result<(), StoreError> {
            diesel::sql_query(format!("INSERT INTO queue VALUES ({x})")).execute(c)?;
            Ok(())
        };
        let dir = tempfile::tempdir().unwrap();
        let gc = group_with(dir.path(), move_queue);
        let (one, two) = two_in_a_group(&gc, Join::Alone, Join::Alone, |c| {
            queue(c, 2)?;
            insert_and_fail(c, 2, false)
        });
        assert!(one.is_ok() && two.is_err(), "{one:?} {two:?}");
        // writer 1's number, and nothing of writer 2's
        assert_eq!(committed(&gc), "1");
        gc.write(|c| queue(c, 5), Join::Alone).unwrap();
        assert_eq!(committed(&gc), "1,105");
        // two 6s make two 106s: the move fails, and the group with it
        let dir = tempfile::tempdir().unwrap();
        let gc = group_with(dir.path(), move_queue);
        let (one, two) = two_in_a_group(&gc, Join::Alone, Join::Alone, |c| {
            queue(c, 6)?;
            queue(c, 6)
        });
        assert!(matches!(one, Err(StoreError::Unavailable(_))), "{one:?}");
        assert!(matches!(two, Err(StoreError::Unavailable(_))), "{two:?}");
        assert_eq!(committed(&gc), "");
    }

    /// A COMMIT that fails (here a deferred foreign key that the group's second writer broke)
    /// fails every writer of the group, as unavailable, and leaves nothing of the group behind.
    #[test]
    fn a_failed_commit_fails_every_writer_of_its_group_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gc = group(dir.path());
        gc.write(
            |c| {
                c.batch_execute(
                    "CREATE TABLE child (p INTEGER REFERENCES t (x) DEFERRABLE INITIALLY DEFERRED)",
                )?;
                Ok::<_, StoreError>(())
            },
            Join::Alone,
        )
        .unwrap();
        let (one, two) = two_in_a_group(&gc, Join::Alone, Join::Alone, |c| {
            c.batch_execute("INSERT INTO child VALUES (99)")?;
            Ok(())
        });
        assert!(matches!(one, Err(StoreError::Unavailable(_))), "{one:?}");
        assert!(matches!(two, Err(StoreError::Unavailable(_))), "{two:?}");
        assert_eq!(committed(&gc), "");
        gc.write(|c| insert(c, 3), Join::Alone).unwrap();
        assert_eq!(committed(&gc), "3");
    }
}
