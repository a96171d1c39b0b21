//! The keys this server signs access tokens with: ES256 (ECDSA P-256), generated on first start
//! and kept in the database (`auth_signing_keys`), so that `emrsync token` and every process on
//! one PostgreSQL sign and verify alike. The newest key signs; every key not retired verifies.

use crate::fhir::resource::now_micros;
use crate::store::schema::auth_signing_keys;
use crate::store::seal::{Seal, is_sealed};
use crate::store::{DbConnection, StoreError};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::collections::HashMap;

/// The signing algorithm of the server's own tokens.
pub const ALG: Algorithm = Algorithm::ES256;

/// One key: its id, what signs with it, what verifies with it, and its public JWK.
pub struct Key {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
}

/// The keys not retired, newest first: the first signs.
pub struct KeyRing {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
}

impl KeyRing {
    /// The keys of the database, creating the first one when there is none. With a master key,
    /// keys stored unsealed (before one was given) are sealed first.
    pub fn load_or_create(
        conn: &mut DbConnection,
        seal: Option<&Seal>,
    ) -> Result<KeyRing, StoreError> {
        if let Some(seal) = seal {
            seal_stored_keys(conn, seal)?;
        }
        let ring = KeyRing::load(conn, seal)?;
        if !ring.keys.is_empty() {
            return Ok(ring);
        }
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| StoreError::Database("cannot generate a signing key".into()))?;
        let key = key_from_pkcs8(pkcs8.as_ref())?;
        diesel::insert_into(auth_signing_keys::table)
            .values((
                auth_signing_keys::kid.eq(&key.kid),
                auth_signing_keys::alg.eq("ES256"),
                auth_signing_keys::private_pkcs8.eq(stored_form(pkcs8.as_ref(), seal)),
                auth_signing_keys::created_at.eq(now_micros()),
            ))
            .execute(conn)?;
        tracing::info!(kid = %key.kid, sealed = seal.is_some(), "generated a new token signing key");
        // Read back rather than use `key`: another process may have created one at the same time.
        KeyRing::load(conn, seal)
    }

    /// The keys of the database that are not retired.
    pub fn load(conn: &mut DbConnection, seal: Option<&Seal>) -> Result<KeyRing, StoreError> {
        let rows: Vec<String> = auth_signing_keys::table
            .filter(auth_signing_keys::retired_at.is_null())
            .filter(auth_signing_keys::alg.eq("ES256"))
            .order((
                auth_signing_keys::created_at.desc(),
                auth_signing_keys::kid.asc(),
            ))
            .select(auth_signing_keys::private_pkcs8)
            .load(conn)?;
        let keys = rows
            .iter()
            .map(|stored| key_from_pkcs8(&opened(stored, seal)?))
            .collect::<Result<Vec<Key>, StoreError>>()?;
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid.clone(), i))
            .collect();
        Ok(KeyRing { keys, by_kid })
    }

    pub fn signing(&self) -> Option<&Key> {
        self.keys.first()
    }

    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).map(|i| &self.keys[*i])
    }

    /// The public keys, as `GET /auth/jwks` serves them.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
}

/// What a signing key is sealed as (bound into its seal).
pub const SEALED_AS: &str = "token signing key";

/// A private key as the database keeps it: sealed under the master key when there is one,
/// else its PKCS#8 document in base64.
fn stored_form(pkcs8: &[u8], seal: Option<&Seal>) -> String {
    match seal {
        Some(seal) => seal.seal(SEALED_AS, pkcs8),
        None => STANDARD.encode(pkcs8),
    }
}

/// The PKCS#8 document of a stored key.
fn opened(stored: &str, seal: Option<&Seal>) -> Result<Vec<u8>, StoreError> {
    if !is_sealed(stored) {
        return STANDARD
            .decode(stored)
            .map_err(|e| StoreError::Database(format!("stored signing key: {e}")));
    }
    let seal = seal.ok_or_else(|| {
        StoreError::Database(
            "the token signing keys are sealed: give the master key (--master-key-file or \
             EMRSYNC_MASTER_KEY)"
                .into(),
        )
    })?;
    seal.open(SEALED_AS, stored)
        .map_err(|e| StoreError::Database(format!("the token signing keys: {e}")))
}

/// Seal every key stored unsealed (retired ones too); says how many it sealed.
fn seal_stored_keys(conn: &mut DbConnection, seal: &Seal) -> Result<usize, StoreError> {
    let plain: Vec<(String, String)> = auth_signing_keys::table
        .select((auth_signing_keys::kid, auth_signing_keys::private_pkcs8))
        .load(conn)?;
    let mut sealed = 0;
    for (kid, stored) in plain.into_iter().filter(|(_, s)| !is_sealed(s)) {
        let der = opened(&stored, None)?;
        sealed += diesel::update(
            auth_signing_keys::table
                .filter(auth_signing_keys::kid.eq(&kid))
                .filter(auth_signing_keys::private_pkcs8.eq(&stored)),
        )
        .set(auth_signing_keys::private_pkcs8.eq(stored_form(&der, Some(seal))))
        .execute(conn)?;
    }
    if sealed > 0 {
        tracing::info!(sealed, "sealed the token signing keys under the master key");
    }
    Ok(sealed)
}

/// A key from its PKCS#8 document; its id is the RFC 7638 thumbprint of its public JWK.
fn key_from_pkcs8(der: &[u8]) -> Result<Key, StoreError> {
    let bad = |e: jsonwebtoken::errors::Error| StoreError::Database(format!("signing key: {e}"));
    let encoding = EncodingKey::from_ec_der(der);
    let mut jwk = Jwk::from_encoding_key(&encoding, ALG).map_err(bad)?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(bad)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(bad)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    Ok(Key {
        kid,
        encoding,
        decoding,
        jwk,
    })
}
