//! The embedded database encrypted at rest. SQLite is built from SQLCipher's amalgamation: with
//! a master key, every page of the database file and of its write-ahead log is encrypted
//! (AES-256-CBC with an HMAC-SHA-512 per page, SQLCipher 4's defaults) under a key derived from
//! the master key, so a copy of the files, a backup or a stolen disk holds no patient data.
//!
//! The key is given raw (`x'…'`), not as a passphrase: SQLCipher then skips its 256,000-round
//! PBKDF2, which would otherwise run on every connection the pool opens. The master key is
//! random already, and is never the file's key itself (see `Seal::derive`).
//!
//! A database that was kept in clear is rewritten encrypted at the first start that has a
//! master key (`rewrite`), and `emrsync rekey` rewrites it under a new one the same way: a copy
//! is made beside it and takes its place only once complete, so a crash leaves the original.

use super::seal::Seal;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::path::{Path, PathBuf};

/// What the database file's key is derived for (changing it would lose every database).
const PURPOSE: &str = "emrsync sqlite file v1";

/// The key of an encrypted database file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey([u8; 32]);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileKey {
    pub fn from_seal(seal: &Seal) -> FileKey {
        FileKey(seal.derive(PURPOSE))
    }

    /// The key as SQLCipher takes a raw one: `x'<64 hex digits>'`.
    fn raw(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("x'{hex}'")
    }

    /// The statement that keys a connection: it must be the connection's first.
    pub fn keying(&self) -> String {
        // (SQLCipher would also write its own lines to stderr when a key does not fit, past
        // the server's log: `explain` says it in the log instead)
        format!(
            "PRAGMA cipher_log_level = NONE; PRAGMA key = \"{}\";",
            self.raw()
        )
    }
}

/// What SQLite says when a file does not open with the key given (or without one).
const NOT_A_DATABASE: &str = "file is not a database";

/// The words for a connection that could not read the database: when the key (or its absence)
/// is why, say which way round; other errors pass as they are.
pub fn explain(path: &Path, keyed: bool, error: String) -> String {
    if !error.contains(NOT_A_DATABASE) {
        return error;
    }
    let file = path.display();
    match (keyed, has_plain_header(path)) {
        (true, true) => format!(
            "the database {file} is not encrypted yet: `emrsync serve` or `emrsync migrate` \
             with this master key encrypts it"
        ),
        (true, false) => format!(
            "the database {file} does not open with this master key (another key encrypted \
             it, or the file is damaged)"
        ),
        (false, false) => format!(
            "the database {file} is encrypted: give its master key (--master-key-file or \
             EMRSYNC_MASTER_KEY)"
        ),
        (false, true) => format!("the database {file} is damaged: {error}"),
    }
}

fn has_plain_header(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|_| &header == b"SQLite format 3\0")
}

/// Whether `path` holds a database kept in clear (with something in it, or in its log).
pub fn is_plain(path: &Path) -> anyhow::Result<bool> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if size(path) == 0 && size(&sibling(path, "-wal")) == 0 {
        return Ok(false);
    }
    let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
    match conn.batch_execute("SELECT count(*) FROM sqlite_master") {
        Ok(()) => Ok(true),
        Err(e) if e.to_string().contains(NOT_A_DATABASE) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[derive(QueryableByName)]
struct Mode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

/// Copy the database at `path` (opened with `from`, or in clear) into a new file under `to`
/// (or in clear), then put the copy in the original's place. Nothing else may have the
/// database open: the copy starts by taking it out of WAL mode, which SQLite allows only to
/// its sole user, and stops if that is refused.
pub fn rewrite(path: &Path, from: Option<&FileKey>, to: Option<&FileKey>) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let copy = sibling(path, ".rewrite");
    // a copy left by an interrupted rewrite: the original is still whole, and is copied again
    let _ = std::fs::remove_file(&copy);
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&copy)?;
    let done = (|| -> anyhow::Result<()> {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
        if let Some(key) = from {
            conn.batch_execute(&key.keying())?;
        }
        conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| anyhow::anyhow!(explain(path, from.is_some(), e.to_string())))?;
        let in_use = || {
            anyhow::anyhow!(
                "the database {} is in use by another process: stop it first",
                path.display()
            )
        };
        let mode = diesel::sql_query("PRAGMA journal_mode = DELETE")
            .get_result::<Mode>(&mut conn)
            .map_err(|e| match e.to_string().contains("locked") {
                true => in_use(),
                false => e.into(),
            })?;
        if mode.journal_mode != "delete" {
            return Err(in_use());
        }
        diesel::sql_query("ATTACH DATABASE ? AS rewritten KEY ?")
            .bind::<Text, _>(copy.to_string_lossy())
            .bind::<Text, _>(to.map(FileKey::raw).unwrap_or_default())
            .execute(&mut conn)?;
        conn.batch_execute("SELECT sqlcipher_export('rewritten'); DETACH DATABASE rewritten;")?;
        Ok(())
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&copy);
        return Err(e);
    }
    std::fs::File::open(&copy)?.sync_all()?;
    std::fs::rename(&copy, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
