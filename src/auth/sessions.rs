//! Sessions of the dashboard (`/admin`): a person signs in with the server's own login (a user
//! of `emrsync user add` with the role `admin`) and is known by a cookie after. The cookie's
//! token is random and kept here only as its hash; each session has its own anti-forgery token
//! for the forms it posts. A session ends when it expires, when its user signs out, or as
//! soon as its user no longer has the role.

use super::secret::{random_token, sha256_b64url};
use crate::fhir::resource::now_micros;
use crate::store::schema::{admin_sessions as s, auth_users as u};
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;

/// The role a user needs for the dashboard.
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    /// Posted back by every form of the session (a form from elsewhere does not have it).
    pub csrf: String,
}

/// Start a session of `username` for `ttl_secs`: the token for the cookie, and the session.
pub fn open(
    conn: &mut DbConnection,
    username: &str,
    ttl_secs: i64,
) -> Result<(String, Session), StoreError> {
    let now = now_micros();
    // the expired are forgotten as new ones start: the table holds the living
    diesel::delete(s::table.filter(s::expires_at.lt(now))).execute(conn)?;
    let token = random_token();
    let session = Session {
        username: username.to_string(),
        csrf: random_token(),
    };
    diesel::insert_into(s::table)
        .values((
            s::token_hash.eq(sha256_b64url(&token)),
            s::username.eq(username),
            s::csrf.eq(&session.csrf),
            s::created_at.eq(now),
            s::expires_at.eq(now + ttl_secs * 1_000_000),
        ))
        .execute(conn)?;
    Ok((token, session))
}

/// The living session of this cookie token whose user is still an admin.
pub fn find(conn: &mut DbConnection, token: &str) -> Result<Option<Session>, StoreError> {
    let row: Option<(String, String, String)> = s::table
        .inner_join(u::table.on(u::username.eq(s::username)))
        .filter(s::token_hash.eq(sha256_b64url(token)))
        .filter(s::expires_at.gt(now_micros()))
        .select((s::username, s::csrf, u::roles))
        .get_result(conn)
        .optional()?;
    Ok(row
        .filter(|(_, _, roles)| has_role(roles, ADMIN))
        .map(|(username, csrf, _)| Session { username, csrf }))
}

/// End the session of this token (signing out).
pub fn close(conn: &mut DbConnection, token: &str) -> Result<(), StoreError> {
    diesel::delete(s::table.filter(s::token_hash.eq(sha256_b64url(token)))).execute(conn)?;
    Ok(())
}

/// Whether a user's roles (space-separated) hold `role`.
pub fn has_role(roles: &str, role: &str) -> bool {
    roles.split_whitespace().any(|r| r == role)
}
