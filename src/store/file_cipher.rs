//! The embedded database encrypted at rest. SQLite is built from SQLCipher's amalgamation: with
//! a master key, every page of the database file and of its write-ahead log is encrypted
//! (AES-256-CBC with an HMAC-SHA-256 per page, see `settings`) under a key derived from
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
        format!("x'{}'", hex::encode(self.0))
    }

    /// The statements that key a connection: they must be the connection's first.
    pub fn keying(&self) -> String {
        // (SQLCipher would also write its own lines to stderr when a key does not fit, past
        // the server's log: `explain` says it in the log instead)
        format!(
            "PRAGMA cipher_log_level = NONE; PRAGMA key = \"{}\"; {}",
            self.raw(),
            settings("main")
        )
    }
}

/// The cipher settings of every encrypted file, beyond SQLCipher 4's defaults. Each page's
/// HMAC is HMAC-SHA-256 rather than SHA-512: as sound for detecting a changed page, and
/// with this CPU's SHA extensions twice as fast, which the writer feels (it encrypts every
/// page it writes). They are part of the format: a file opens only with the same settings.
fn settings(schema: &str) -> String {
    format!("PRAGMA {schema}.cipher_hmac_algorithm = HMAC_SHA256;")
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
        if to.is_some() {
            conn.batch_execute(&settings("rewritten"))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(QueryableByName)]
    struct Algorithm {
        #[diesel(sql_type = Text)]
        cipher_hmac_algorithm: String,
    }

    fn keyed(path: &Path, key: &FileKey) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        conn.batch_execute(&key.keying()).unwrap();
        conn
    }

    #[test]
    fn files_are_written_with_the_settings_and_open_only_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let key = FileKey([3; 32]);
        let mut conn = keyed(&path, &key);
        conn.batch_execute("CREATE TABLE t(x); INSERT INTO t VALUES ('kept')")
            .unwrap();
        let a = diesel::sql_query("PRAGMA cipher_hmac_algorithm")
            .get_result::<Algorithm>(&mut conn)
            .unwrap();
        assert_eq!(a.cipher_hmac_algorithm, "HMAC_SHA256");
        drop(conn);
        // the same key under SQLCipher's default settings does not open it
        let mut plain_settings = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        plain_settings
            .batch_execute(&format!("PRAGMA key = \"{}\"", key.raw()))
            .unwrap();
        let err = plain_settings
            .batch_execute("SELECT count(*) FROM t")
            .unwrap_err();
        assert!(err.to_string().contains(NOT_A_DATABASE), "{err}");
        // and a rewrite under another key keeps the rows and the settings
        let other = FileKey([4; 32]);
        rewrite(&path, Some(&key), Some(&other)).unwrap();
        assert!(!has_plain_header(&path));
        let mut conn = keyed(&path, &other);
        conn.batch_execute("SELECT x FROM t").unwrap();
        let a = diesel::sql_query("PRAGMA cipher_hmac_algorithm")
            .get_result::<Algorithm>(&mut conn)
            .unwrap();
        assert_eq!(a.cipher_hmac_algorithm, "HMAC_SHA256");
        drop(conn);
        // to clear and back
        rewrite(&path, Some(&other), None).unwrap();
        assert!(has_plain_header(&path) && is_plain(&path).unwrap());
        assert!(!sibling(&path, ".rewrite").exists());
    }
}
