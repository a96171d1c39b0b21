//! SMART on FHIR: the server's own token issuer and the checks every interaction goes through.
//!
//! - [`keys`]: the ES256 signing keys, kept in the database.
//! - [`token`]: access-token claims, signing and verification.
//! - [`scopes`]: SMART v1 and v2 scopes.
//! - [`access`]: a verified token as a [`Grant`], and the decisions made from it.
//! - [`clients`]: the registry of SMART clients.
//! - [`backend`]: the `client_credentials` grant of SMART Backend Services.

pub mod access;
pub mod authorize;
pub mod backend;
pub mod clients;
pub mod idp;
pub mod keys;
pub mod launch;
pub mod refresh;
pub mod revocation;
pub mod scopes;
pub mod secret;
pub mod sessions;
pub mod throttle;
pub mod token;
pub mod users;

pub use access::{Denied, Grant, Reach};
pub use scopes::Interaction;
pub use token::{AccessClaims, TokenError};

use crate::store::seal::Seal;
use crate::store::{Database, DbConnection, Store, StoreError};
use keys::KeyRing;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Verified tokens are kept this long (and never past their `exp`), so that a busy client's
/// requests do not each pay for an ECDSA verification.
/// It also bounds how long another process on the same database may still accept a token
/// revoked here.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// An unknown `kid` reloads the keys from the database (another process may have rotated them),
/// at most this often.
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// The largest JWK Set read from a `jwks_uri`.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long a client's fetched JWK Set is trusted before it is fetched again.
const CLIENT_KEYS_TTL: Duration = Duration::from_secs(600);

/// The token issuer of one FHIR base: mints, verifies and caches access tokens.
pub struct Authority {
    issuer: String,
    audience: String,
    pub(crate) store: Store,
    ring: RwLock<Arc<KeyRing>>,
    last_reload: Mutex<Instant>,
    verified: moka::sync::Cache<String, Arc<Grant>>,
    /// Client JWK Sets fetched from their `jwks_uri`, with when they were fetched.
    client_keys: moka::sync::Cache<String, (Arc<jsonwebtoken::jwk::JwkSet>, Instant)>,
    http: reqwest::Client,
    /// An external identity provider whose tokens are accepted too.
    idp: Option<idp::IdpConfig>,
    /// Failed sign-ins and client authentications, and the locks they earn.
    pub throttle: throttle::Throttle,
    /// The operator's master key, which the signing keys are sealed under.
    seal: Option<Arc<Seal>>,
}

/// What to put in a token that this server mints.
#[derive(Debug, Clone, Default)]
pub struct Mint {
    pub subject: String,
    pub scope: String,
    pub client_id: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub fhir_user: Option<String>,
    pub lifetime: Duration,
}

/// The issuer of the tokens for FHIR base `base_url`: its origin's `/auth`.
pub fn issuer_for(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    format!("{}/auth", base.strip_suffix("/fhir").unwrap_or(base))
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A signed access token for `audience` (a FHIR base), with `ring`'s newest key.
pub fn mint_with(ring: &KeyRing, issuer: &str, audience: &str, m: &Mint) -> (String, AccessClaims) {
    let now = now_secs();
    let claims = AccessClaims {
        iss: issuer.to_string(),
        aud: audience.trim_end_matches('/').to_string(),
        sub: m.subject.clone(),
        exp: now + m.lifetime.as_secs() as i64,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: m.scope.clone(),
        client_id: m.client_id.clone(),
        patient: m.patient.clone(),
        encounter: m.encounter.clone(),
        fhir_user: m.fhir_user.clone(),
    };
    (token::sign(ring, &claims), claims)
}

/// The installation value that holds the FHIR base URL `serve` last ran with: `emrsync token`
/// makes its tokens for it unless told otherwise.
pub const SERVED_BASE_URL: &str = "served base url";

/// `emrsync token`: a token signed with the key of the server that runs on `database`, for its
/// FHIR base (`base_url`, else the one it last ran with). A database no server has run on is
/// refused rather than given a store and key of its own, whose tokens every server would
/// refuse: most often the command was pointed at another directory than `serve`.
pub fn mint_for_server(
    database: &Database,
    base_url: Option<&str>,
    m: &Mint,
    seal: Option<&Seal>,
) -> anyhow::Result<String> {
    let never_served = || {
        anyhow::anyhow!(
            "no server has run on {}: give `token` the --data-dir (or --database-url) that \
             `serve` runs with",
            database.describe()
        )
    };
    if let Database::Sqlite(path, _) = database
        && !path.exists()
    {
        return Err(never_served());
    }
    let mut conn = database.connect()?;
    let ring = KeyRing::load(&mut conn, seal)?;
    if ring.signing().is_none() {
        return Err(never_served());
    }
    let served = crate::store::installation_row(&mut conn, SERVED_BASE_URL)?;
    let base_url = base_url
        .map(str::to_string)
        .or(served)
        .unwrap_or_else(|| "http://127.0.0.1:8080/fhir".into());
    Ok(mint_with(&ring, &issuer_for(&base_url), &base_url, m).0)
}

/// A token signed with the keys of `database` (created if it has none), for the server whose
/// FHIR base is `base_url`: for tests and tools that set a database up themselves.
pub fn mint_offline(
    database: &Database,
    base_url: &str,
    m: &Mint,
    seal: Option<&Seal>,
) -> anyhow::Result<String> {
    database.migrate()?;
    let mut conn = database.connect()?;
    let ring = KeyRing::load_or_create(&mut conn, seal)?;
    Ok(mint_with(&ring, &issuer_for(base_url), base_url, m).0)
}

impl Authority {
    /// The authority of `base_url`, with the store's keys (creating the first one if needed).
    pub fn open(
        store: &Store,
        base_url: &str,
        idp: Option<idp::IdpConfig>,
        seal: Option<Arc<Seal>>,
    ) -> Result<Authority, StoreError> {
        let ring = store.read(|c| KeyRing::load_or_create(c, seal.as_deref()))?;
        store.set_installation_value(SERVED_BASE_URL, base_url.trim_end_matches('/'))?;
        Ok(Authority {
            issuer: issuer_for(base_url),
            audience: base_url.trim_end_matches('/').to_string(),
            store: store.clone(),
            ring: RwLock::new(Arc::new(ring)),
            // a key unknown right after start-up reloads at once: processes started together
            // on one database may each have created a first key
            last_reload: Mutex::new(
                Instant::now()
                    .checked_sub(RELOAD_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            client_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CLIENT_KEYS_TTL)
                .build(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| StoreError::Database(format!("HTTP client: {e}")))?,
            idp,
            throttle: throttle::Throttle::new(Default::default()),
            seal,
        })
    }

    /// A credential check failed: count it against `keys` (the account and the address), say
    /// so in the log, and keep it in the audit trail (`action` such as `login`, `who` the name
    /// tried and the address it came from). Locks it starts are logged too.
    pub async fn failed_attempt(&self, keys: &[&str], action: &str, who: &str, detail: &str) {
        for lock in self.throttle.failed(keys) {
            tracing::warn!(key = %lock.key, seconds = lock.seconds(), "locked after failed attempts");
        }
        tracing::warn!(action, who, detail, "failed credential check");
        let correlation_id = crate::store::new_correlation_id();
        let actor = crate::store::Actor::named(who);
        let (store, action, detail) = (self.store.clone(), action.to_string(), detail.to_string());
        let _ = tokio::task::spawn_blocking(move || {
            store.audit_failure(&action, None, &detail, (&correlation_id, &actor))
        })
        .await;
    }

    /// Run store work off the async runtime (reads on a pooled connection).
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
    }

    /// Write the authorization server's own rows (codes, refresh tokens, `jti`, revocations)
    /// off the async runtime, through the store's writer.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_rows(f))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
    }

    /// A registered client.
    pub(crate) async fn find_client(
        &self,
        id: &str,
    ) -> Result<Option<clients::Client>, StoreError> {
        let id = id.to_string();
        self.read(move |c| clients::find(c, &id)).await
    }

    /// Where clients get tokens; the `aud` of their assertions.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The JWK Set at a client's `jwks_uri`: cached, and fetched again when it lacks the `kid`
    /// an assertion names (the client rotated its keys), at most every few seconds.
    pub async fn client_jwks(
        &self,
        url: &str,
        kid: Option<&str>,
    ) -> Result<Arc<jsonwebtoken::jwk::JwkSet>, backend::OAuthError> {
        if let Some((set, fetched)) = self.client_keys.get(url) {
            let has_kid = kid.is_none_or(|k| set.find(k).is_some());
            if has_kid || fetched.elapsed() < RELOAD_EVERY {
                return Ok(set);
            }
        }
        let fail = |e: String| {
            backend::OAuthError::invalid_client(format!(
                "cannot fetch the client's jwks_uri {url}: {e}"
            ))
        };
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        // a JWK Set is a few KiB: read no more than a bound, whatever the server sends
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
        }
        let set = Arc::new(backend::parse_jwks(&body)?);
        self.client_keys
            .insert(url.to_string(), (set.clone(), Instant::now()));
        Ok(set)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock").clone()
    }

    /// A signed access token.
    pub fn mint(&self, m: &Mint) -> (String, AccessClaims) {
        mint_with(&self.ring(), &self.issuer, &self.audience, m)
    }

    /// The grant of a bearer token, or why it is refused. A token seen before is answered from
    /// the cache; a new one is verified, then looked up among the revoked.
    pub async fn authenticate(&self, bearer: &str) -> Result<Arc<Grant>, TokenError> {
        if let Some(grant) = self.verified.get(bearer) {
            // no leeway, as when it was first verified (this server's own clock signed it)
            if grant.expires_at < now_secs() {
                self.verified.invalidate(bearer);
                return Err(TokenError::Expired);
            }
            return Ok(grant);
        }
        if let Some(idp) = self
            .idp
            .as_ref()
            .filter(|i| idp::claims_to_be_from(i, bearer))
        {
            // the provider's tokens are revoked at the provider; only this cache bounds them
            let grant = Arc::new(Grant::from_claims(idp::verify(self, idp, bearer).await?));
            self.verified.insert(bearer.to_string(), grant.clone());
            return Ok(grant);
        }
        let claims = self.verify(bearer, true)?;
        if self.is_revoked(&claims.jti).await? {
            return Err(TokenError::Invalid("the access token was revoked".into()));
        }
        let grant = Arc::new(Grant::from_claims(claims));
        self.verified.insert(bearer.to_string(), grant.clone());
        Ok(grant)
    }

    /// The claims of a token this server signed; `check_exp` false still checks everything else.
    pub fn verify(&self, bearer: &str, check_exp: bool) -> Result<AccessClaims, TokenError> {
        self.verify_as(bearer, &self.audience, check_exp)
    }

    /// Verify claims this server signed for `audience`, with its keys reloaded once if the
    /// `kid` is new to this process (another process may have rotated them).
    fn verify_as<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        check_exp: bool,
    ) -> Result<T, TokenError> {
        let verify =
            |ring: &KeyRing| token::verify_as(ring, token, &self.issuer, audience, check_exp);
        match verify(&self.ring()) {
            Err(TokenError::UnknownKey) if self.reload_keys() => verify(&self.ring()),
            other => other,
        }
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, TokenError> {
        let jti = jti.to_string();
        self.read(move |c| revocation::is_revoked(c, &jti))
            .await
            .map_err(|e| TokenError::Invalid(format!("revocation check failed: {e}")))
    }

    /// Revoke a token (RFC 7009): it is refused from now on, here at once and by other
    /// processes on the same database once their cache of it expires.
    pub async fn revoke(&self, bearer: &str, claims: &AccessClaims) -> Result<(), StoreError> {
        let (jti, exp) = (claims.jti.clone(), claims.exp);
        self.write(move |c| revocation::revoke(c, &jti, exp))
            .await?;
        self.verified.invalidate(bearer);
        Ok(())
    }

    /// RFC 7662: the claims of an active token, or `None`.
    pub async fn introspect(&self, bearer: &str) -> Option<AccessClaims> {
        let claims = self.verify(bearer, true).ok()?;
        match self.is_revoked(&claims.jti).await {
            Ok(false) => Some(claims),
            _ => None,
        }
    }

    /// Reload the keys if the last reload is old enough: true when the ring is worth trying
    /// again (reloaded now, or by another request moments ago). The lock is held through the
    /// reload, so that requests arriving together with a new key wait for the one reload and
    /// then verify with what it read, rather than being refused while it runs.
    fn reload_keys(&self) -> bool {
        let mut last = self.last_reload.lock().expect("reload lock");
        if last.elapsed() < RELOAD_EVERY {
            return true;
        }
        *last = Instant::now();
        match self.store.read(|c| KeyRing::load(c, self.seal.as_deref())) {
            Ok(ring) if ring.signing().is_some() => {
                *self.ring.write().expect("key ring lock") = Arc::new(ring);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the token signing keys");
                false
            }
        }
    }

    /// Sign any claims with the server's key (id tokens, login tickets).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> String {
        token::sign(&self.ring(), claims)
    }

    /// Verify claims this server signed for `audience`.
    pub fn verify_for<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        self.verify_as(token, audience, true)
    }

    /// The public keys (`GET /auth/jwks`).
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.ring().jwks()
    }
}
