//! Which process does a job only one may do at a time, when several share one PostgreSQL (a
//! routing target's sender, the event stream's publisher): a named lease, renewed while held;
//! a process that dies holding it blocks the job only until it runs out. SQLite is one
//! process: there is nothing to share.

use crate::fhir::resource::now_micros;
use crate::store::db::DbConnection;
use crate::store::schema::leases as t;
use crate::store::{Store, StoreError};
use diesel::prelude::*;
use std::time::Duration;

/// How long a lease lasts unless renewed.
const LEASE: Duration = Duration::from_secs(15);
/// How often a process without the lease looks whether it is free.
pub const RETRY: Duration = Duration::from_secs(2);

/// Whether the workers of several processes may share the database (PostgreSQL): only then is a
/// lease needed, and taken (SQLite's one process would spend a turn of its one writer on it
/// every window).
pub async fn shared(store: &Store) -> Result<bool, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.read(|c| Ok(matches!(c, DbConnection::Pg(_)))))
        .await
        .map_err(|e| StoreError::Database(format!("lease task: {e}")))?
}

/// Take or renew the lease `name` for `owner`: whether it is held now.
pub async fn hold(store: &Store, name: &str, owner: &str) -> Result<bool, StoreError> {
    let (store, name, owner) = (store.clone(), name.to_string(), owner.to_string());
    tokio::task::spawn_blocking(move || hold_now(&store, &name, &owner))
        .await
        .map_err(|e| StoreError::Database(format!("lease task: {e}")))?
}

/// `hold`, from a blocking thread.
pub fn hold_now(store: &Store, name: &str, owner: &str) -> Result<bool, StoreError> {
    store.write_rows(|c| {
        let now = now_micros();
        let known: Option<String> = t::table
            .find(&name)
            .select(t::name)
            .get_result(c)
            .optional()?;
        if known.is_none() {
            diesel::insert_into(t::table)
                .values((t::name.eq(&name), t::lease_until.eq(0i64)))
                .execute(c)?;
        }
        let taken = diesel::update(
            t::table
                .filter(t::name.eq(&name))
                .filter(t::lease_until.lt(now).or(t::lease_owner.eq(&owner))),
        )
        .set((
            t::lease_owner.eq(&owner),
            t::lease_until.eq(now + LEASE.as_micros() as i64),
        ))
        .execute(c)?;
        Ok(taken == 1)
    })
}
