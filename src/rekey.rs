//! Rotating the master key (`emrsync rekey`): the embedded database file is rewritten under a
//! key derived from the new master key, and every secret sealed under the old one (token
//! signing keys, Subscription channel headers, the HL7v2 archive's raw text) is opened and
//! sealed again under the new one, on SQLite and PostgreSQL alike.
//!
//! Every step can be run again: the file is rewritten only while the new key does not open it
//! (and a rewrite replaces the file only once its copy is complete), and a value is sealed
//! again only while the new key does not open it. A rotation cut short is finished by running
//! the same command again. Servers must be stopped first: they hold the old key.

use crate::adapters::hl7v2::ingest::ARCHIVE_SEALED_AS;
use crate::auth::keys::SEALED_AS as SIGNING_KEY_SEALED_AS;
use crate::store::file_cipher::{self, FileKey};
use crate::store::schema::{auth_signing_keys, hl7v2_messages, subscriptions};
use crate::store::seal::{Seal, is_sealed};
use crate::store::{Database, DbConnection};
use diesel::prelude::*;

/// Rows resealed in one transaction (the HL7v2 archive may hold millions).
const PAGE: i64 = 500;

/// Reseal the `$value` column of `$table` page by page (in `$key` order), one transaction a
/// page; the update matches the value it read, so a row changed meanwhile is left alone.
macro_rules! reseal {
    ($conn:expr, $table:ident, $key:ident, $value:ident, $what:expr, $old:expr, $new:expr) => {{
        let conn: &mut DbConnection = $conn;
        let mut after = String::new();
        let mut changed = 0usize;
        loop {
            let page: Vec<(String, String)> = $table::table
                .filter($table::$key.gt(&after))
                .order($table::$key)
                .select(($table::$key, $table::$value))
                .limit(PAGE)
                .load(conn)?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            changed += conn.transaction(|conn| -> anyhow::Result<usize> {
                let mut n = 0;
                for (key, stored) in &page {
                    if let Some(sealed) = resealed($old, $new, $what, stored)? {
                        n += diesel::update(
                            $table::table
                                .filter($table::$key.eq(key))
                                .filter($table::$value.eq(stored)),
                        )
                        .set($table::$value.eq(sealed))
                        .execute(conn)?;
                    }
                }
                Ok(n)
            })?;
        }
        changed
    }};
}
/// What a rotation changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    /// The SQLite file was rewritten under the new key (false: PostgreSQL, or done before).
    pub file_rewritten: bool,
    pub signing_keys: usize,
    pub channel_headers: usize,
    pub archived_messages: usize,
}

/// Move `database` (whose SQLite file, if any, is keyed from `old` or kept in clear) and its
/// sealed values from `old` to `new`.
pub fn rotate(database: &Database, old: &Seal, new: &Seal) -> anyhow::Result<Rotated> {
    let mut rotated = Rotated::default();
    let new_key = FileKey::from_seal(new);
    let database = database.clone().with_file_key(Some(new_key.clone()));
    if let Database::Sqlite(path, _) = &database {
        let plain = file_cipher::is_plain(path)?;
        // (when the new key opens it already, an earlier run rewrote it)
        if plain || database.connect().is_err() {
            let from = (!plain).then(|| FileKey::from_seal(old));
            file_cipher::rewrite(path, from.as_ref(), Some(&new_key))?;
            rotated.file_rewritten = true;
        }
    }
    let mut conn = database.connect()?;
    rotated.signing_keys = reseal!(
        &mut conn,
        auth_signing_keys,
        kid,
        private_pkcs8,
        SIGNING_KEY_SEALED_AS,
        old,
        new
    );
    rotated.channel_headers = reseal!(
        &mut conn,
        subscriptions,
        id,
        headers,
        crate::subscriptions::registry::HEADERS_SEALED_AS,
        old,
        new
    );
    rotated.archived_messages = reseal!(
        &mut conn,
        hl7v2_messages,
        id,
        raw,
        ARCHIVE_SEALED_AS,
        old,
        new
    );
    Ok(rotated)
}

/// `stored` sealed under `new`, when it is sealed under `old`; `None` when there is nothing to
/// do (kept in clear, or sealed under `new` already).
fn resealed(old: &Seal, new: &Seal, what: &str, stored: &str) -> anyhow::Result<Option<String>> {
    if !is_sealed(stored) || new.open(what, stored).is_ok() {
        return Ok(None);
    }
    let plain = old
        .open(what, stored)
        .map_err(|e| anyhow::anyhow!("a {what}: {e}"))?;
    Ok(Some(new.seal(what, &plain)))
}
