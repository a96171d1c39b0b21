//! The canonical store: every version of every resource, with its outbox event and audit row
//! written in the same transaction, on SQLite (embedded default) or PostgreSQL (scale-out).

/// Insert `rows` into `table`: one multi-row statement on PostgreSQL, where round trips are
/// what costs; one cached statement per row on SQLite, which runs in-process (and for which
/// diesel cannot batch these rows through the multi-backend connection).
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConnection::Pg(c) => diesel::insert_into($table)
                .values($rows)
                .execute(c)
                .map(|_| ()),
            DbConnection::Sqlite(c) => $rows.into_iter().try_for_each(|row| {
                diesel::insert_into($table)
                    .values(row)
                    .execute(c)
                    .map(|_| ())
            }),
        }
    };
}
pub(crate) use insert_all;

pub mod audit;
mod backfill;
mod cache;
pub mod db;
mod error;
pub mod file_cipher;
mod group_commit;
pub mod lease;
mod move_head;
pub mod rules;
pub mod schema;
pub mod seal;
pub mod search;
pub mod search_index;
pub mod search_text;
pub mod secret;
pub mod versions;
mod wal_sync;
pub mod write;

pub use db::{Database, DbConnection};
pub use error::{StoreError, inserted};
pub use group_commit::Join;
pub use rules::{WriteKind, WriteRules};
pub use versions::{Actor, Current, HistoryQuery, Method, Version, WriteContext, Written};

/// A fresh correlation id (for a request or a message that brings none): a UUIDv7, whose start
/// is its time, so that the audit trail's and the HL7v2 archive's indexes on it grow at their
/// end. A random (v4) id put each message's index entries on a page of their own, and every
/// commit wrote those pages again.
pub fn new_correlation_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

use cache::ResourceCache;
use diesel::Connection;
use std::sync::Arc;
use std::time::Duration;

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub database: Database,
    /// The operator's master key: secrets the store keeps (channel headers) are sealed with it.
    pub seal: Option<Arc<seal::Seal>>,
    pub pool_size: u32,
    /// Bytes of resources the read cache may hold (0 turns it off).
    pub cache_bytes: u64,
    pub cache_ttl: Duration,
    /// Page cache of each SQLite connection that reads, in KiB.
    pub page_cache_kib: u32,
}

/// A handle on the store, cheap to clone and shared by every request.
#[derive(Clone)]
pub struct Store {
    pool: db::Pool,
    /// SQLite has one writer at a time: its writes go through one connection that commits
    /// concurrent writers together (see `group_commit`). PostgreSQL writes use the pool.
    group: Option<Arc<group_commit::GroupCommit>>,
    cache: ResourceCache,
    database: Database,
    /// Moved after every commit that recorded a change (the subscription dispatcher and the
    /// MPI's linker wait on it).
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    seal: Option<Arc<seal::Seal>>,
    /// This installation's values, as read (they never change once made).
    installation: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>>,
    /// Told of each version written by this process, after its commit: caches built from
    /// resources (the terminology's) learn there that theirs changed.
    observers: Arc<std::sync::RwLock<Vec<CommitObserver>>>,
    /// Accesses waiting for the audit flusher (`ops::audit`), and its end of the queue until
    /// it takes it.
    audit_queue: tokio::sync::mpsc::Sender<audit::Entry>,
    audit_taken: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<audit::Entry>>>>,
    /// Whether a flusher takes what is queued: a process with none (a command) or whose flusher
    /// has stopped (a server shutting down) writes each access at once, else it would be queued
    /// and lost at exit.
    audit_flushing: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this process publishes the outbox to the event stream: readings of the queues
    /// then include the stream's backlog (without a stream, every change stays unpublished).
    publishing: Arc<std::sync::atomic::AtomicBool>,
}

/// Accesses the audit queue holds at most; past that, `Store::audit` writes at once.
const AUDIT_QUEUE: usize = 100_000;

/// A function told of each version after its commit (`Store::observe_commits`).
pub type CommitObserver = Arc<dyn Fn(&Version) + Send + Sync>;

/// A write transaction: the connection, the versions written so far (they reach the cache once
/// committed) and the changes whose outbox events and audit rows are inserted before COMMIT.
pub struct Tx<'a> {
    pub conn: &'a mut DbConnection,
    written: Vec<Arc<Version>>,
    /// Every version written (creates included), for the commit observers.
    observed: Vec<Arc<Version>>,
    changes: Vec<write::Change>,
    /// What the writers' rules took out of resources, by id, until their changes are recorded.
    headers: Vec<(String, rules::SetAside)>,
    /// The master key they are sealed with when stored.
    seal: Option<&'a seal::Seal>,
}

/// The resource as the writer's rules let it be stored, and what they took out of it.
fn set_aside(
    rtype: &str,
    resource: serde_json::Value,
    ctx: &WriteContext,
) -> (serde_json::Value, Option<rules::SetAside>) {
    ctx.rules.set_aside(rtype, resource, ctx)
}

impl Tx<'_> {
    /// Hold what the rules set aside from resource `id` until its change is recorded.
    fn keep_headers(&mut self, id: &str, headers: Option<rules::SetAside>) {
        if let Some(headers) = headers {
            self.headers.push((id.to_string(), headers));
        }
    }

    /// Note a change made in this transaction (see `store::write`).
    fn record(
        &mut self,
        w: &Written,
        action: &'static str,
        ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let at = self.headers.iter().position(|(id, _)| *id == w.version.id);
        let set_aside = at.map(|i| self.headers.swap_remove(i).1);
        ctx.rules.recorded(rules::Recorded {
            conn: self.conn,
            version: &w.version,
            action,
            set_aside,
            ctx,
            seal: self.seal,
        })?;
        self.changes.push(write::Change::new(w, action, ctx));
        // A POST creates a fresh id that no reader can have cached, so the cache is left alone
        // (bulk loads would otherwise churn it). Other writes must refresh it: a reader that
        // loaded the previous version could otherwise put it back after this commit.
        let version = Arc::new(w.version.clone());
        if w.version.method != Method::Post {
            self.written.push(version.clone());
        }
        // commit observers hear of creates too (a new code system changes what is known)
        self.observed.push(version);
        Ok(())
    }
}

/// The installation's value `name` as stored, if any (see `Store::installation_value`).
pub fn installation_row(conn: &mut DbConnection, name: &str) -> Result<Option<String>, StoreError> {
    use diesel::prelude::*;
    use schema::installation as i;
    Ok(i::table
        .find(name)
        .select(i::value)
        .get_result(conn)
        .optional()?)
}

impl Store {
    /// Open (creating and migrating the database first).
    pub fn open(settings: &StoreSettings) -> anyhow::Result<Store> {
        let applied = settings.database.migrate()?;
        if applied > 0 {
            tracing::info!(applied, database = %settings.database.describe(), "applied migrations");
        }
        let pool = settings
            .database
            .pool(settings.pool_size, settings.page_cache_kib)?;
        let group = match &settings.database {
            Database::Sqlite(path, _) => Some(Arc::new(group_commit::GroupCommit::new(
                settings.database.connect_writer()?,
                wal_sync::WalSync::new(path),
                search_text::flush,
            )?)),
            Database::Postgres(_) => None,
        };
        let (audit_queue, taken) = tokio::sync::mpsc::channel(AUDIT_QUEUE);
        Ok(Store {
            audit_queue,
            audit_taken: Arc::new(std::sync::Mutex::new(Some(taken))),
            audit_flushing: Arc::default(),
            pool,
            group,
            cache: ResourceCache::new(settings.cache_bytes, settings.cache_ttl),
            database: settings.database.clone(),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
            seal: settings.seal.clone(),
            installation: Arc::default(),
            publishing: Arc::default(),
            observers: Arc::default(),
        })
    }

    /// Record an access in the audit trail: queued for the flusher, which inserts it within
    /// its interval; written at once (on a blocking thread when called from async code) when
    /// the queue is full or no flusher runs (a command, or a server past its flusher's end).
    pub fn audit(&self, entry: audit::Entry) {
        use std::sync::atomic::Ordering;
        use tokio::sync::mpsc::error::TrySendError;
        let entry = match self.audit_flushing.load(Ordering::Acquire) {
            false => entry,
            true => match self.audit_queue.try_send(entry) {
                Ok(()) => return,
                Err(TrySendError::Full(e) | TrySendError::Closed(e)) => e,
            },
        };
        let store = self.clone();
        let write = move || {
            // its patients named here, as the flusher would have
            let entries = audit::name_patients(&store, vec![entry]);
            if let Err(e) = store.write_rows(|c| audit::insert_unsealed(c, &entries)) {
                tracing::error!(error = %e, "an audit entry could not be written");
            }
        };
        // never a blocking write on an async runtime's thread
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }

    /// The audit queue's receiving end, to the one flusher that asks first: accesses are
    /// queued for it from then on.
    pub fn take_audit_queue(&self) -> Option<tokio::sync::mpsc::Receiver<audit::Entry>> {
        let taken = self
            .audit_taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if taken.is_some() {
            self.set_audit_flushing(true);
        }
        taken
    }

    /// Say whether the flusher takes the queue (false once it drains it for the last time).
    pub fn set_audit_flushing(&self, on: bool) {
        self.audit_flushing
            .store(on, std::sync::atomic::Ordering::Release);
    }

    /// Have `observer` told of each version this process writes, once it is committed.
    pub fn observe_commits(&self, observer: CommitObserver) {
        self.observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The operator's master key, when one was given.
    pub fn seal(&self) -> Option<&seal::Seal> {
        self.seal.as_deref()
    }

    /// The installation's value `name`, made by `make` (in a write transaction) the first time
    /// any process asks for it, then kept: values that must never change once used, such as
    /// the secret HL7v2 resource ids are derived under.
    pub fn installation_value(
        &self,
        name: &str,
        make: impl FnOnce(&mut DbConnection) -> Result<String, StoreError> + Send,
    ) -> Result<Arc<str>, StoreError> {
        use diesel::prelude::*;
        use schema::installation as i;
        let mut known = self.installation.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = known.get(name) {
            return Ok(v.clone());
        }
        let read = |tx: &mut Tx| installation_row(tx.conn, name);
        let made = self.write(|tx| {
            if let Some(v) = read(tx)? {
                return Ok::<_, StoreError>(v);
            }
            let made = make(tx.conn)?;
            let row = diesel::insert_into(i::table).values((i::name.eq(name), i::value.eq(&made)));
            match inserted(row.execute(tx.conn))? {
                true => Ok(made),
                false => Err(StoreError::Conflict(format!(
                    "{name} was made by another process"
                ))),
            }
        });
        // another process made it at the same moment: what it stored is what holds
        let value = match made {
            Err(StoreError::Conflict(_)) => self
                .write(|tx| read(tx))?
                .ok_or_else(|| StoreError::Database(format!("{name} vanished")))?,
            other => other?,
        };
        let value: Arc<str> = value.into();
        known.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Set the installation's `name` to `value`: for facts that follow the configuration (the
    /// base URL `serve` last ran with), unlike the ones `installation_value` makes once.
    pub fn set_installation_value(&self, name: &str, value: &str) -> Result<(), StoreError> {
        use diesel::prelude::*;
        use schema::installation as i;
        self.write(|tx| {
            let changed = diesel::update(i::table.find(name))
                .set(i::value.eq(value))
                .execute(tx.conn)?;
            if changed == 0 {
                // (another process inserting the same moment is as good: one of them holds)
                let row =
                    diesel::insert_into(i::table).values((i::name.eq(name), i::value.eq(value)));
                inserted(row.execute(tx.conn))?;
            }
            Ok(())
        })
    }

    /// The same, to share with the parts that keep it (the token authority).
    pub fn master_key(&self) -> Option<Arc<seal::Seal>> {
        self.seal.clone()
    }

    /// Run `f` in one database transaction: all its writes commit together or none do.
    /// `E` is the caller's error type; any error rolls the transaction back. On SQLite `f`
    /// runs on the writer's own thread (hence `Send`; the caller's thread-locals and tracing
    /// span are not there), and the call returns once its commit is durable.
    pub fn write<T, E>(&self, f: impl FnOnce(&mut Tx) -> Result<T, E> + Send) -> Result<T, E>
    where
        T: Send,
        E: From<StoreError> + From<diesel::result::Error> + Send,
    {
        self.write_as(Join::Alone, f)
    }

    /// `write`, saying what an error of `f` may undo on SQLite, where concurrent writes share
    /// a transaction: `Join::MayRetry` is for a caller that tries again when told
    /// `StoreError::Conflict`, whose work can then skip its savepoint (see `group_commit`).
    pub fn write_as<T, E>(
        &self,
        join: Join,
        f: impl FnOnce(&mut Tx) -> Result<T, E> + Send,
    ) -> Result<T, E>
    where
        T: Send,
        E: From<StoreError> + From<diesel::result::Error> + Send,
    {
        let mut written = Vec::new();
        let mut observed = Vec::new();
        let mut changed = false;
        let work = |c: &mut DbConnection| {
            let mut tx = Tx {
                conn: c,
                written: Vec::new(),
                observed: Vec::new(),
                changes: Vec::new(),
                headers: Vec::new(),
                seal: self.seal.as_deref(),
            };
            let out = f(&mut tx)?;
            write::flush_changes(tx.conn, &tx.changes)?;
            written = tx.written;
            observed = tx.observed;
            changed = !tx.changes.is_empty();
            Ok::<T, E>(out)
        };
        let out = match &self.group {
            Some(group) => group.write(work, join)?,
            None => {
                let mut conn = self.pool.get().map_err(|e| E::from(StoreError::from(e)))?;
                let conn: &mut DbConnection = &mut conn;
                conn.transaction(work)?
            }
        };
        if !observed.is_empty() {
            let observers = self.observers.read().unwrap_or_else(|e| e.into_inner());
            for v in &observed {
                observers.iter().for_each(|o| o(v));
            }
        }
        for v in written {
            self.cache.offer(v);
        }
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(out)
    }

    /// Run small writes that are not resource changes (the authorization server's codes,
    /// refresh tokens, revocations) in a write transaction: on SQLite through the one writer,
    /// so that they never contend with it for the database's write lock.
    pub fn write_rows<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        self.write(|tx| f(tx.conn))
    }

    /// Run read-only work on a pooled connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// The current version of a resource (from the cache when hot); errors for absent or deleted.
    pub fn current(&self, rtype: &str, id: &str) -> Result<Arc<Version>, StoreError> {
        let version = self
            .cached_or_read(rtype, id)?
            .ok_or_else(|| StoreError::NotFound {
                resource_type: rtype.into(),
                id: id.into(),
            })?;
        if version.deleted {
            return Err(version.gone());
        }
        Ok(version)
    }

    /// A resource's current version as this process last saw it (the cache when hot, else
    /// read now), for a writer that prepares a change before its transaction and has it
    /// checked there (`write::commit` moves the head only from this version; `write::unmoved`
    /// checks one it leaves alone). A SQLite reader's page cache is emptied by every commit,
    /// so a read costs several page fetches, where the cache costs none.
    pub fn last_known(&self, rtype: &str, id: &str) -> Result<Current, StoreError> {
        let version = self.cached_or_read(rtype, id)?;
        Ok(Current::of(version.map(|v| (*v).clone())))
    }

    fn cached_or_read(&self, rtype: &str, id: &str) -> Result<Option<Arc<Version>>, StoreError> {
        if let Some(v) = self.cache.get(rtype, id) {
            return Ok(Some(v));
        }
        let Some(v) = self.read(|c| versions::current(c, rtype, id))? else {
            return Ok(None);
        };
        let v = Arc::new(v);
        self.cache.offer(v.clone());
        Ok(Some(v))
    }

    /// Record a refused change in the audit trail; a failure to do so is logged, not raised,
    /// because the client's error matters more than the audit row of it.
    pub fn audit_failure(
        &self,
        action: &str,
        target: Option<(&str, &str)>,
        detail: &str,
        (correlation_id, actor): (&str, &Actor),
    ) {
        let who = (correlation_id, actor);
        let result: Result<(), StoreError> =
            self.write(|tx| write::audit_failure(tx.conn, action, target, detail, who));
        if let Err(e) = result {
            tracing::error!(error = %e, %correlation_id, "could not write failure audit row");
        }
    }

    /// Can a pooled connection reach the database (cheap: no table is read).
    pub fn ping(&self) -> Result<(), StoreError> {
        use diesel::RunQueryDsl;
        // a probe is answered within its own timeout: a lost database is told in 2 s, not
        // after the pool's 10 s wait for a connection
        let mut c = self.pool.get_timeout(std::time::Duration::from_secs(2))?;
        diesel::sql_query("SELECT 1").execute(&mut *c)?;
        Ok(())
    }

    /// Say that this process publishes the outbox to the event stream (`stream::run`).
    pub fn set_publishing(&self) {
        self.publishing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this process publishes the outbox to the event stream.
    pub fn publishing(&self) -> bool {
        self.publishing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changed after each commit that recorded a resource change: each task that follows the
    /// changes (the subscription dispatcher, the MPI's linker) holds a receiver of its own.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The pool's connections, and how many of them are idle.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Migrations this binary has that the database has not (`/ready`).
    pub fn pending_migrations(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            db::Database::pending_migrations(c).map_err(|e| StoreError::Database(e.to_string()))
        })
    }
}
