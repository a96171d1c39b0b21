//! Connections: one diesel `MultiConnection` over SQLite and PostgreSQL, a pool that knows which
//! backend its URL names, and the embedded migrations of each backend.

use super::file_cipher::{self, FileKey};
use super::secret::Secret;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to whichever backend the configuration chose.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(diesel::SqliteConnection),
    Pg(diesel::PgConnection),
}

/// Where the data lives: an embedded SQLite file (encrypted when it has a key), or a PostgreSQL
/// server shared by processes.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf, Option<FileKey>),
    Postgres(Secret<String>),
}

impl Database {
    /// `DATABASE_URL` when given (postgres://, postgresql://, sqlite://), else `<data_dir>/emrsync.db`.
    pub fn from_settings(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        match database_url {
            None | Some("") => Ok(Database::Sqlite(data_dir.join("emrsync.db"), None)),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(Secret::new(url.to_string())))
            }
            Some(url) => match url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                Some(path) => Ok(Database::Sqlite(PathBuf::from(path), None)),
                None => anyhow::bail!(
                    "unsupported database URL '{url}': use postgres://... or sqlite://PATH"
                ),
            },
        }
    }

    /// The same database, its SQLite file encrypted under `key` (PostgreSQL is left as it is:
    /// its disks are encrypted by the database server's host).
    pub fn with_file_key(self, key: Option<FileKey>) -> Self {
        match self {
            Database::Sqlite(path, _) => Database::Sqlite(path, key),
            pg => pg,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Database::Sqlite(..))
    }

    /// A description safe for logs: no password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p, None) => format!("sqlite {}", p.display()),
            Database::Sqlite(p, Some(_)) => format!("sqlite {} (encrypted)", p.display()),
            Database::Postgres(url) => format!("postgres {}", redacted(url.expose())),
        }
    }

    /// One connection, outside any pool (migrations, tools, tests).
    pub fn connect(&self) -> ConnectionResult<DbConnection> {
        match self {
            Database::Sqlite(path, key) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                if let Some(key) = key {
                    conn.batch_execute(&key.keying())
                        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                }
                // WAL lets readers run beside the single writer; FULL sync makes a commit
                // durable before the client hears "created" (an ACK must never be lost; the
                // writer's own connection syncs its log itself, see `connect_writer`).
                // 16 MiB of page cache (SQLite's default is 2 MiB; the pool's readers set
                // their own, see `Manager`). Not memory mapped: at 1M Observations mmap sped
                // up some searches but gave random-access ones (a patient's results) 100 ms
                // stalls at p99 under concurrency.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                     PRAGMA cache_size = -16384;",
                )
                .map_err(|e| {
                    let why = file_cipher::explain(path, key.is_some(), e.to_string());
                    ConnectionError::BadConnection(why)
                })?;
                // Sorts and temporary b-trees too big for the page cache (an alert rule's
                // distinct patients over days of the audit trail, a 5,000-match `_text`) spill
                // to a temporary file rather than the heap: held in memory they took the
                // process from 120 to 320 MB at 100,000 Patients, and glibc kept it. Not when
                // the database is encrypted: SQLCipher keeps temporary tables in memory so
                // that no clear text reaches the disk.
                if key.is_none() {
                    conn.batch_execute("PRAGMA temp_store = FILE")
                        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                }
                Ok(DbConnection::Sqlite(conn))
            }
            Database::Postgres(url) => {
                let mut conn = diesel::PgConnection::establish(url.expose())?;
                // Searches read a page of rows through indexes: a parallel plan spends more
                // starting its workers (about 40 ms measured at 1M Observations) than it saves.
                conn.batch_execute("SET max_parallel_workers_per_gather = 0")
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                Ok(DbConnection::Pg(conn))
            }
        }
    }

    /// The one SQLite connection that writes (see `store::group_commit`). Its commits do not
    /// wait for the disk (`synchronous = NORMAL`): `GroupCommit` syncs the log itself before
    /// it answers anyone, after handing the connection on (see `store::wal_sync`). It
    /// checkpoints every 50,000 pages of log (200 MB) rather than SQLite's 1,000: a checkpoint
    /// copies each page once however often the log holds it, and the index pages that
    /// messages touch repeat, so a longer log is copied for far less per commit. Over 60 s of
    /// HL7v2 load, 10,000 pages gave 1,777-1,922 msg/s, 50,000 2,015-2,052 and 100,000
    /// 2,042-2,305; the price is the longest stall (the writer waits for its checkpoint):
    /// the slowest ACK 76 ms, 176 ms and 218-240 ms. Its page cache stays at 16 MiB,
    /// which holds a group's dirty pages: a larger one made every COMMIT slower as it filled.
    /// A b-tree balance renumbers pages through a page number far past the end of the file,
    /// and the COMMIT after it then walks the whole page cache to drop pages past the end
    /// (SQLite's pcache1TruncateUnsafe, seen on each of 116 commits in a row under MLLP load).
    /// With 128 MiB, HL7v2 throughput over 60 s was 947/919 msg/s against 1,097/1,017 with
    /// 16 MiB.
    pub fn connect_writer(&self) -> anyhow::Result<DbConnection> {
        let mut conn = self.connect()?;
        conn.batch_execute("PRAGMA wal_autocheckpoint = 50000; PRAGMA synchronous = NORMAL;")?;
        Ok(conn)
    }

    /// Create the database if needed and apply pending migrations; returns how many ran.
    /// Several processes may start at once on one database.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        if let Database::Sqlite(path, key) = self {
            keep_private(path)?;
            if let Some(key) = key
                && file_cipher::is_plain(path)?
            {
                tracing::warn!(database = %path.display(), "the database is kept in clear: encrypting it under the master key");
                file_cipher::rewrite(path, None, Some(key))?;
                tracing::info!(database = %path.display(), "the database is encrypted");
            }
        }
        let mut conn = self.connect()?;
        let applied = match &mut conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            DbConnection::Pg(c) => {
                // Processes started together on one database would otherwise both create the
                // first tables (and one fail): the first to take this lock migrates, the others
                // wait and then find nothing pending. It ends with the session.
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
                c.run_pending_migrations(POSTGRES_MIGRATIONS)
            }
        }
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        let applied: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
        // what migrations left to be done in Rust (still under PostgreSQL's lock)
        super::backfill::run_pending(&mut conn)?;
        Ok(applied.len())
    }

    /// How many migrations this binary knows that the database has not had (0 once `migrate`
    /// ran; more when the database was replaced or rolled back under a running server).
    pub fn pending_migrations(conn: &mut DbConnection) -> anyhow::Result<usize> {
        let pending = match conn {
            DbConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|p| p.len()),
            DbConnection::Pg(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|p| p.len()),
        }
        .map_err(|e| anyhow::anyhow!("migrations cannot be read: {e}"))?;
        Ok(pending)
    }

    /// A connection pool of `size` connections; on SQLite each keeps `page_cache_kib` of
    /// pages (they read: SQLite's writes go through `connect_writer`).
    pub fn pool(&self, size: u32, page_cache_kib: u32) -> anyhow::Result<Pool> {
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .connection_timeout(Duration::from_secs(10))
            .build(Manager {
                db: self.clone(),
                page_cache_kib,
            })?;
        Ok(pool)
    }
}

/// A database URL without its credentials (`postgres://***@host:port/db`): for logs and `Debug`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// `describe`, so that no `{:?}` of the settings prints a password.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.describe())
    }
}

/// The PostgreSQL advisory lock key migrations hold ("emrsync" in ASCII).
const MIGRATION_LOCK: i64 = 0x0065_6d72_7379_6e63;

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// r2d2 manager that opens connections of the backend its `Database` names.
#[derive(Debug)]
pub struct Manager {
    db: Database,
    page_cache_kib: u32,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        let mut conn = self.db.connect().map_err(r2d2::Error::ConnectionError)?;
        if let DbConnection::Sqlite(c) = &mut conn {
            let pragma = format!("PRAGMA cache_size = -{}", self.page_cache_kib.max(64));
            c.batch_execute(&pragma).map_err(r2d2::Error::QueryError)?;
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map(|_| ()).map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// The SQLite database holds patient data and the server's secrets: its folder (when we make
/// it) and its files are the owner's alone (0700, 0600). The file is made before SQLite opens
/// it, because SQLite gives the `-wal` and `-shm` files it creates the database file's mode;
/// files left readable to others by an earlier version are tightened, and the log says so.
fn keep_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            tracing::warn!(file = %file.display(), "the database file was readable by others; now 0600");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_debug_or_description_prints_a_database_password() {
        let url = "postgres://emrsync:s3cret-pw@db.hospital.example:5432/emrsync";
        let db = Database::from_settings(Some(url), Path::new("unused")).unwrap();
        for shown in [format!("{db:?}"), db.describe()] {
            assert!(!shown.contains("s3cret-pw"), "{shown}");
            assert!(
                shown.contains("db.hospital.example:5432/emrsync"),
                "{shown}"
            );
        }
        // a URL with no credentials is shown whole
        assert_eq!(redacted("postgres://h/db"), "postgres://h/db");
    }
}
