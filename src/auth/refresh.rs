//! Refresh tokens (`offline_access`: 30 days; `online_access`: 12 hours), rotated on every use.
//! A token already used that comes back means it leaked: its whole family is revoked, so the
//! thief and the app both lose it and the user signs in again.

use super::authorize::{CodeTokenResponse, Holder, identify_client, tokens};
use super::backend::{Credentials, OAuthError};
use super::scopes::grant;
use super::secret::{random_token, sha256_b64url};
use super::{Authority, now_secs};
use crate::store::schema::auth_refresh;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;

const OFFLINE_LIFETIME: i64 = 30 * 24 * 3600;
const ONLINE_LIFETIME: i64 = 12 * 3600;

/// A new refresh token for `holder`, in `family` (a fresh family when `None`).
pub fn issue(
    conn: &mut DbConnection,
    family: Option<(&str, i64)>,
    holder: &Holder,
) -> Result<String, StoreError> {
    let token = random_token();
    let (family, expires_at) = match family {
        // a rotated token keeps its family's end: rotation never extends a grant
        Some((f, exp)) => (f.to_string(), exp),
        None => (
            uuid::Uuid::new_v4().to_string(),
            now_secs()
                + if holder.offline() {
                    OFFLINE_LIFETIME
                } else {
                    ONLINE_LIFETIME
                },
        ),
    };
    diesel::insert_into(auth_refresh::table)
        .values((
            auth_refresh::token_hash.eq(sha256_b64url(&token)),
            auth_refresh::family.eq(&family),
            auth_refresh::client_id.eq(&holder.client_id),
            auth_refresh::username.eq(&holder.username),
            auth_refresh::fhir_user.eq(&holder.fhir_user),
            auth_refresh::scope.eq(&holder.scope),
            auth_refresh::patient.eq(&holder.patient),
            auth_refresh::expires_at.eq(expires_at),
            auth_refresh::used.eq(false),
            auth_refresh::revoked.eq(false),
        ))
        .execute(conn)?;
    Ok(token)
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    bool,
    bool,
);

enum Taken {
    Fresh(Row),
    Unknown,
    /// Revoked, used before (the family is now revoked), or refused by the caller's check.
    Refused(String),
}

/// Take a refresh token for one use if `check` accepts it (a refused request leaves it
/// unspent). Safe under races: the UPDATE that marks it used decides who got it.
fn take(
    conn: &mut DbConnection,
    hash: &str,
    check: impl Fn(&Row) -> Result<(), String>,
) -> Result<Taken, StoreError> {
    let row: Option<Row> = auth_refresh::table
        .filter(auth_refresh::token_hash.eq(hash))
        .select((
            auth_refresh::family,
            auth_refresh::client_id,
            auth_refresh::username,
            auth_refresh::fhir_user,
            auth_refresh::scope,
            auth_refresh::patient,
            auth_refresh::expires_at,
            auth_refresh::used,
            auth_refresh::revoked,
        ))
        .get_result(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(Taken::Unknown);
    };
    if row.8 {
        return Ok(Taken::Refused("the refresh token was revoked".into()));
    }
    if !row.7
        && let Err(why) = check(&row)
    {
        return Ok(Taken::Refused(why));
    }
    let taken = diesel::update(
        auth_refresh::table
            .filter(auth_refresh::token_hash.eq(hash))
            .filter(auth_refresh::used.eq(false)),
    )
    .set(auth_refresh::used.eq(true))
    .execute(conn)?;
    if taken == 0 {
        diesel::update(auth_refresh::table.filter(auth_refresh::family.eq(&row.0)))
            .set(auth_refresh::revoked.eq(true))
            .execute(conn)?;
        tracing::warn!(client = %row.1, "a used refresh token came back: its family is revoked");
        return Ok(Taken::Refused(
            "the refresh token was already used; every token of its grant is now revoked".into(),
        ));
    }
    Ok(Taken::Fresh(row))
}

/// `grant_type=refresh_token`: a new access token and a new refresh token, for the client the
/// token was issued to, with at most the scopes first granted.
pub async fn refresh(
    authority: &Authority,
    params: &[(String, String)],
    credentials: Option<Credentials>,
) -> Result<CodeTokenResponse, OAuthError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let token = get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let client_id = identify_client(authority, get("client_id"), credentials).await?;
    let asked = get("scope").map(str::to_string);
    let who = client_id.clone();
    let check = move |row: &Row| -> Result<(), String> {
        if row.1 != who {
            return Err("the refresh token was issued to another client".into());
        }
        if row.6 < now_secs() {
            return Err("the refresh token has expired".into());
        }
        if asked
            .as_deref()
            .is_some_and(|a| grant(a, &row.4).is_empty())
        {
            return Err("a refresh cannot widen the grant".into());
        }
        Ok(())
    };
    let hash = sha256_b64url(token);
    let taken = authority.write(move |c| take(c, &hash, check)).await?;
    let (family, _, username, fhir_user, scope, patient, expires_at, _, _) = match taken {
        Taken::Fresh(row) => row,
        Taken::Unknown => return Err(OAuthError::invalid_grant("the refresh token is unknown")),
        Taken::Refused(why) if why.contains("widen") => {
            return Err(OAuthError::invalid_scope(why));
        }
        Taken::Refused(why) => return Err(OAuthError::invalid_grant(&why)),
    };
    let scope = match get("scope") {
        Some(asked) => grant(asked, &scope).join(" "),
        None => scope,
    };
    // the launch's encounter and other context belong to the first token only
    let holder = Holder {
        client_id,
        username,
        fhir_user,
        scope,
        patient,
        encounter: None,
        launch: None,
    };
    let h = holder.clone();
    let next = authority
        .write(move |c| issue(c, Some((&family, expires_at)), &h))
        .await?;
    Ok(tokens(authority, &holder, Some(next)))
}
