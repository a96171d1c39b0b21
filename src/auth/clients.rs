//! The SMART client registry (`emrsync client add|list|remove`): how each client proves who it
//! is, and the most it may be granted. Secrets are kept as argon2 hashes, never in clear.

use super::secret;
use crate::fhir::resource::now_micros;
use crate::store::schema::auth_clients;
use crate::store::secret::Secret;
use crate::store::{DbConnection, StoreError, inserted};
use diesel::prelude::*;
use jsonwebtoken::jwk::JwkSet;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// A browser or mobile app: no secret, PKCE only.
    Public,
    /// `client_secret_basic`: a shared secret.
    Symmetric,
    /// `private_key_jwt`: assertions signed by a key of its JWK Set (inline or at a URL).
    Asymmetric,
}

impl ClientKind {
    fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Symmetric => "symmetric",
            ClientKind::Asymmetric => "asymmetric",
        }
    }

    fn parse(s: &str) -> Option<ClientKind> {
        match s {
            "public" => Some(ClientKind::Public),
            "symmetric" => Some(ClientKind::Symmetric),
            "asymmetric" => Some(ClientKind::Asymmetric),
            _ => None,
        }
    }
}

/// Where an asymmetric client's public keys are.
#[derive(Debug, Clone)]
pub enum ClientKeys {
    Inline(JwkSet),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub kind: ClientKind,
    secret_hash: Option<String>,
    pub keys: Option<ClientKeys>,
    /// The most this client may be granted.
    pub scope: String,
    pub redirect_uris: Vec<String>,
}

/// A registration, as `emrsync client add` takes it.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: String,
    pub kind: ClientKind,
    pub scope: String,
    pub redirect_uris: Vec<String>,
    pub secret: Option<Secret<String>>,
    /// A JWK Set, as JSON.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ClientError {
    fn from(e: diesel::result::Error) -> Self {
        ClientError::Store(e.into())
    }
}

impl Client {
    /// Whether `secret` is this client's secret (constant-time inside argon2).
    pub fn secret_matches(&self, secret: &str) -> bool {
        self.secret_hash
            .as_deref()
            .is_some_and(|h| secret::matches(h, secret))
    }
}

/// Register a client; refuses a registration that could never authenticate.
pub fn add(conn: &mut DbConnection, new: &NewClient) -> Result<(), ClientError> {
    let invalid = |m: &str| Err(ClientError::Invalid(m.to_string()));
    if new.client_id.trim().is_empty() {
        return invalid("the client id is empty");
    }
    if new.scope.split_ascii_whitespace().next().is_none() {
        return invalid("give the client at least one scope (--scope)");
    }
    let secret_hash = match (new.kind, &new.secret) {
        (ClientKind::Symmetric, Some(s)) if s.expose().len() >= 16 => {
            Some(secret::hash(s.expose()).map_err(ClientError::Invalid)?)
        }
        (ClientKind::Symmetric, _) => {
            return invalid("a symmetric client needs --secret of at least 16 characters");
        }
        (_, Some(_)) => return invalid("only a symmetric client has a secret"),
        (_, None) => None,
    };
    match (new.kind, &new.jwks, &new.jwks_uri) {
        (ClientKind::Asymmetric, Some(jwks), None) => {
            let set: JwkSet = serde_json::from_str(jwks)
                .map_err(|e| ClientError::Invalid(format!("the JWK Set is not valid: {e}")))?;
            if set.keys.is_empty() {
                return invalid("the JWK Set has no keys");
            }
        }
        (ClientKind::Asymmetric, None, Some(uri))
            if uri.starts_with("https://") || uri.starts_with("http://") => {}
        (ClientKind::Asymmetric, _, _) => {
            return invalid(
                "an asymmetric client needs exactly one of --jwks-file and --jwks-uri (http or https)",
            );
        }
        (_, None, None) => {}
        _ => return invalid("only an asymmetric client has public keys"),
    }
    if new.kind == ClientKind::Public && new.redirect_uris.is_empty() {
        return invalid("a public client needs at least one --redirect-uri");
    }
    if !inserted(
        diesel::insert_into(auth_clients::table)
            .values((
                auth_clients::client_id.eq(&new.client_id),
                auth_clients::kind.eq(new.kind.as_str()),
                auth_clients::secret_hash.eq(&secret_hash),
                auth_clients::jwks.eq(&new.jwks),
                auth_clients::jwks_uri.eq(&new.jwks_uri),
                auth_clients::scope.eq(&new.scope),
                auth_clients::redirect_uris
                    .eq(serde_json::to_string(&new.redirect_uris).expect("strings serialise")),
                auth_clients::created_at.eq(now_micros()),
            ))
            .execute(conn),
    )? {
        return Err(ClientError::Invalid(format!(
            "a client '{}' is already registered",
            new.client_id
        )));
    }
    Ok(())
}

/// A new ES384 key pair for a Backend Services client (`emrsync client keygen`): the private
/// key as PKCS#8 PEM, and the public JWK Set (with `kid`) to register.
pub fn generate_es384(kid: &str) -> Result<(String, String), String> {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
    use base64::Engine;
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
        .and_then(|k| k.to_pkcs8v1())
        .map_err(|_| "cannot generate a key".to_string())?;
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::ES384)
            .map_err(|e| e.to_string())?;
    jwk.common.key_id = Some(kid.to_string());
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let jwks =
        serde_json::to_string_pretty(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())?;
    Ok((pem, jwks))
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn from_row(row: Row) -> Result<Client, StoreError> {
    let (client_id, kind, secret_hash, jwks, jwks_uri, scope, redirect_uris) = row;
    let bad = |what: &str| {
        StoreError::Database(format!("client {client_id}: stored {what} is not valid"))
    };
    let keys = match (jwks, jwks_uri) {
        (Some(j), _) => Some(ClientKeys::Inline(
            serde_json::from_str(&j).map_err(|_| bad("JWK Set"))?,
        )),
        (None, Some(u)) => Some(ClientKeys::Url(u)),
        (None, None) => None,
    };
    Ok(Client {
        kind: ClientKind::parse(&kind).ok_or_else(|| bad("kind"))?,
        redirect_uris: serde_json::from_str(&redirect_uris).map_err(|_| bad("redirect URIs"))?,
        client_id,
        secret_hash,
        keys,
        scope,
    })
}

macro_rules! client_columns {
    () => {
        (
            auth_clients::client_id,
            auth_clients::kind,
            auth_clients::secret_hash,
            auth_clients::jwks,
            auth_clients::jwks_uri,
            auth_clients::scope,
            auth_clients::redirect_uris,
        )
    };
}

pub fn find(conn: &mut DbConnection, client_id: &str) -> Result<Option<Client>, StoreError> {
    let row: Option<Row> = auth_clients::table
        .filter(auth_clients::client_id.eq(client_id))
        .select(client_columns!())
        .get_result(conn)
        .optional()?;
    row.map(from_row).transpose()
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Client>, StoreError> {
    let rows: Vec<Row> = auth_clients::table
        .order(auth_clients::client_id)
        .select(client_columns!())
        .load(conn)?;
    rows.into_iter().map(from_row).collect()
}

/// Remove a client; false when there was none of that id.
pub fn remove(conn: &mut DbConnection, client_id: &str) -> Result<bool, StoreError> {
    let n = diesel::delete(auth_clients::table.filter(auth_clients::client_id.eq(client_id)))
        .execute(conn)?;
    Ok(n > 0)
}
