//! Access tokens: JWTs signed with the server's own key (`keys`), carrying the granted scopes
//! and the launch context. Verification accepts only ES256 with a known `kid`, this issuer and
//! this audience, and an `exp` in the future: an `alg: none` token, an HS256 token signed with
//! the public key, a tampered one or one minted for another server are all refused.

use super::keys::{ALG, KeyRing};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user, or the client for Backend Services.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Launch context: the patient whose compartment `patient/` scopes open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// Why a token was refused: said in the 401's `WWW-Authenticate` header.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was signed by a key this server does not know")]
    UnknownKey,
    #[error("the access token is not valid: {0}")]
    Invalid(String),
}

/// Sign `claims` (an access token's, or an id token's, or a login ticket's) with the ring's
/// newest key.
pub fn sign<T: Serialize>(ring: &KeyRing, claims: &T) -> String {
    let key = ring
        .signing()
        .expect("a key ring always holds a key once loaded");
    let mut header = Header::new(ALG);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("ES256 signing does not fail")
}

/// The header's key id, read before the signature is checked (to pick the key).
pub fn key_id(token: &str) -> Result<String, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if header.alg != ALG {
        return Err(TokenError::Invalid(format!(
            "alg {:?} is not accepted (ES256 only)",
            header.alg
        )));
    }
    header
        .kid
        .ok_or_else(|| TokenError::Invalid("the header has no kid".into()))
}

/// Verify a token this server signed against `ring`, `issuer` and `audience`; the audience
/// tells its kinds apart (an access token is
/// for the FHIR base, a login ticket for the authorize endpoint), so none passes for another.
pub fn verify_as<T: serde::de::DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    audience: &str,
    check_exp: bool,
) -> Result<T, TokenError> {
    let kid = key_id(token)?;
    let key = ring.get(&kid).ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(ALG);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // our own clock signed it: no leeway, a token is dead the second it expires
    validation.leeway = 0;
    validation.validate_exp = check_exp;
    jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| claim_error(&e, issuer, audience))
}

/// What failed, in words a client's developer can act on: which claim, and what this server
/// expected of it (a token minted for another port or base is the usual case).
pub fn claim_error(e: &jsonwebtoken::errors::Error, issuer: &str, audience: &str) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidAudience => TokenError::Invalid(format!(
            "its aud is not {audience}, which this server expects"
        )),
        ErrorKind::InvalidIssuer => TokenError::Invalid(format!(
            "its iss is not {issuer}, which this server expects"
        )),
        ErrorKind::MissingRequiredClaim(claim) => {
            TokenError::Invalid(format!("it has no {claim} claim"))
        }
        ErrorKind::ImmatureSignature => TokenError::Invalid("it is not valid yet (nbf)".into()),
        ErrorKind::InvalidSignature => TokenError::Invalid("its signature does not verify".into()),
        _ => TokenError::Invalid(e.to_string()),
    }
}
