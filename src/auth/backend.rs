//! The token endpoint's `client_credentials` grant (SMART Backend Services): a confidential
//! client proves who it is with a JWT it signed (`private_key_jwt`, RS384 or ES384, at most five
//! minutes ahead, each `jti` once) or with its secret (`client_secret_basic`), and gets a
//! short-lived token with the `system/` scopes it asked for and is allowed.

use super::clients::{Client, ClientKeys, ClientKind};
use super::scopes::{Context, ResourceScope, grant};
use super::{Authority, Mint, now_secs};
use crate::store::schema::auth_assertions;
use crate::store::{DbConnection, StoreError, inserted};
use diesel::prelude::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may be valid for (SMART: `exp` at most five minutes ahead).
const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Clock skew tolerated on `exp`.
const LEEWAY: i64 = 30;
/// Lifetime of a Backend Services access token.
pub const SYSTEM_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// An RFC 6749 error answer: `{"error": ..., "error_description": ...}` with its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Seconds until a locked account or address may try again (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn invalid_client(d: impl Into<String>) -> Self {
        OAuthError {
            status: 401,
            error: "invalid_client",
            description: d.into(),
            retry_after: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_request",
            description: d.into(),
            retry_after: None,
        }
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_scope",
            description: d.into(),
            retry_after: None,
        }
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_grant",
            description: d.into(),
            retry_after: None,
        }
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "unsupported_grant_type",
            description: d.into(),
            retry_after: None,
        }
    }
    /// A failure of the server's own (the database, say): its words go to the log, not to
    /// the client.
    pub fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "authorization server failure");
        OAuthError {
            status: 500,
            error: "server_error",
            description: "the server could not complete the request (logged)".into(),
            retry_after: None,
        }
    }

    /// Too many failed attempts on this client, user or address: refused until the lock ends.
    pub fn locked(l: super::throttle::Locked) -> Self {
        OAuthError {
            status: 429,
            error: "invalid_client",
            description: format!(
                "too many failed attempts; try again in {} seconds",
                l.seconds()
            ),
            retry_after: Some(l.seconds()),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::server(e)
    }
}

/// A successful token response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

/// How the client authenticated: an assertion, or `client_secret_basic`'s id and secret.
pub enum Credentials {
    Assertion(String),
    Basic { client_id: String, secret: String },
}

/// `grant_type=client_credentials`: authenticate the client, then grant the `system/` scopes
/// it asked for (all it is allowed when it asks none) within those it is allowed.
pub async fn client_credentials(
    authority: &Authority,
    credentials: Credentials,
    requested_scope: &str,
) -> Result<TokenResponse, OAuthError> {
    let client = authenticate_client(authority, credentials).await?;
    // No scope asked: the client's registered ones (OAuth 2.0 lets a server default them,
    // RFC 6749 3.3; Medplum's client asks none). The answer's `scope` says what was granted.
    let requested_scope = match requested_scope.trim() {
        "" => client.scope.as_str(),
        asked => asked,
    };
    let scopes: Vec<String> = grant(requested_scope, &client.scope)
        .into_iter()
        .filter(|s| ResourceScope::parse(s).is_some_and(|r| r.context == Context::System))
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "none of the scopes asked for ('{requested_scope}') is a system scope this client may have ('{}')",
            client.scope
        )));
    }
    let scope = scopes.join(" ");
    let (access_token, _) = authority.mint(&Mint {
        subject: client.client_id.clone(),
        scope: scope.clone(),
        client_id: Some(client.client_id.clone()),
        lifetime: SYSTEM_TOKEN_LIFETIME,
        ..Default::default()
    });
    Ok(TokenResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: SYSTEM_TOKEN_LIFETIME.as_secs(),
        scope,
    })
}

/// The registered client that `credentials` prove to be.
pub async fn authenticate_client(
    authority: &Authority,
    credentials: Credentials,
) -> Result<Client, OAuthError> {
    match credentials {
        Credentials::Assertion(jwt) => authenticate_assertion(authority, &jwt).await,
        Credentials::Basic { client_id, secret } => {
            // a client's secret can be guessed at: its failures lock it for a while
            let account = format!("client:{client_id}");
            let throttle = &authority.throttle;
            throttle.admit(&[&account]).map_err(OAuthError::locked)?;
            let client = load_client(authority, &client_id).await?;
            if client.kind != ClientKind::Symmetric || !client.secret_matches(&secret) {
                for lock in throttle.failed(&[&account]) {
                    tracing::warn!(key = %lock.key, seconds = lock.seconds(), "locked after failed client authentications");
                }
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
            throttle.succeeded(&account);
            Ok(client)
        }
    }
}

async fn load_client(authority: &Authority, client_id: &str) -> Result<Client, OAuthError> {
    authority
        .find_client(client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client(format!("no client '{client_id}' is registered")))
}

/// Verify a client assertion: signed by a key of the registered client, for this token
/// endpoint, short-lived, and not seen before.
async fn authenticate_assertion(authority: &Authority, jwt: &str) -> Result<Client, OAuthError> {
    let unverified: AssertionClaims = jsonwebtoken::dangerous::insecure_decode(jwt)
        .map(|d| d.claims)
        .map_err(|e| {
            OAuthError::invalid_client(format!("the client assertion is not a JWT: {e}"))
        })?;
    let client = load_client(authority, &unverified.iss).await?;
    if client.kind != ClientKind::Asymmetric {
        return Err(OAuthError::invalid_client(
            "this client is not registered for private_key_jwt",
        ));
    }
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|e| OAuthError::invalid_client(format!("bad assertion header: {e}")))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(OAuthError::invalid_client(format!(
            "assertions must be signed with RS384 or ES384, not {:?}",
            header.alg
        )));
    }
    let keys = match &client.keys {
        Some(ClientKeys::Inline(set)) => Arc::new(set.clone()),
        Some(ClientKeys::Url(url)) => authority.client_jwks(url, header.kid.as_deref()).await?,
        None => {
            return Err(OAuthError::invalid_client(
                "the client has no registered keys",
            ));
        }
    };
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| {
        OAuthError::invalid_client("the assertion was signed by a key the client did not register")
    })?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| OAuthError::invalid_client(format!("registered key unusable: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&client.client_id]);
    validation.set_audience(&[authority.token_endpoint()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
    validation.leeway = LEEWAY as u64;
    let claims: AssertionClaims = jsonwebtoken::decode(jwt, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| OAuthError::invalid_client(format!("client assertion refused: {e}")))?;
    if claims.sub != client.client_id {
        return Err(OAuthError::invalid_client(
            "the assertion's sub is not its iss",
        ));
    }
    if claims.exp > now_secs() + MAX_ASSERTION_LIFETIME + LEEWAY {
        return Err(OAuthError::invalid_client(
            "the assertion's exp is more than five minutes ahead",
        ));
    }
    let (id, jti, exp) = (client.client_id.clone(), claims.jti.clone(), claims.exp);
    let fresh = authority
        .write(move |c| record_jti(c, &id, &jti, exp))
        .await?;
    if !fresh {
        return Err(OAuthError::invalid_client(
            "this assertion's jti was already used: assertions are single-use",
        ));
    }
    Ok(client)
}

/// Remember an assertion's `jti` until it expires; false when it was already there (a replay).
fn record_jti(
    conn: &mut DbConnection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    diesel::delete(
        auth_assertions::table.filter(auth_assertions::expires_at.lt(now_secs() - LEEWAY)),
    )
    .execute(conn)?;
    inserted(
        diesel::insert_into(auth_assertions::table)
            .values((
                auth_assertions::client_id.eq(client_id),
                auth_assertions::jti.eq(jti),
                auth_assertions::expires_at.eq(expires_at),
            ))
            .execute(conn),
    )
}

/// Parse and check a JWK Set fetched from a client's `jwks_uri`.
pub fn parse_jwks(body: &[u8]) -> Result<JwkSet, OAuthError> {
    serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_client(format!(
            "the client's jwks_uri did not serve a JWK Set: {e}"
        ))
    })
}
