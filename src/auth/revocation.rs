//! Revoked access tokens, by `jti`, until they would have expired anyway.

use super::now_secs;
use crate::store::schema::auth_revoked;
use crate::store::{DbConnection, StoreError, inserted};
use diesel::prelude::*;

pub fn is_revoked(conn: &mut DbConnection, jti: &str) -> Result<bool, StoreError> {
    let n: i64 = auth_revoked::table
        .filter(auth_revoked::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Record a revocation (revoking twice is fine) and forget those past their expiry.
pub fn revoke(conn: &mut DbConnection, jti: &str, expires_at: i64) -> Result<(), StoreError> {
    diesel::delete(auth_revoked::table.filter(auth_revoked::expires_at.lt(now_secs() - 60)))
        .execute(conn)?;
    inserted(
        diesel::insert_into(auth_revoked::table)
            .values((
                auth_revoked::jti.eq(jti),
                auth_revoked::expires_at.eq(expires_at),
            ))
            .execute(conn),
    )?;
    Ok(())
}
