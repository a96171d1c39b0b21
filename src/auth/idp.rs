//! External identity provider mode: an organisation that already runs an OAuth server points
//! emrsync at it (`--idp-issuer`, `--idp-jwks-uri`). Its access tokens are verified with its
//! published keys (fetched, cached, fetched again for an unknown `kid`) and their `scope`
//! (or `scp`) claim is enforced exactly like this server's own.

use super::Authority;
use super::token::{AccessClaims, TokenError};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// The identity provider whose tokens this server accepts besides its own.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub issuer: String,
    pub jwks_uri: String,
    /// The `aud` its tokens must carry for this server (the FHIR base URL unless set).
    pub audience: String,
}

/// The claims an identity provider's token may carry; most are optional there.
#[derive(Debug, Deserialize)]
struct IdpClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    /// Some providers list scopes as an array.
    #[serde(default)]
    scp: Option<Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    encounter: Option<String>,
    #[serde(default, rename = "fhirUser")]
    fhir_user: Option<String>,
}

/// Whether `token` claims to come from `idp` (read before its signature is checked, only to
/// choose which keys check it).
pub fn claims_to_be_from(idp: &IdpConfig, token: &str) -> bool {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode::<Iss>(token)
        .ok()
        .and_then(|d| d.claims.iss)
        .is_some_and(|iss| iss == idp.issuer)
}

/// Verify a token of the identity provider and read it as this server's claims.
pub async fn verify(
    authority: &Authority,
    idp: &IdpConfig,
    token: &str,
) -> Result<AccessClaims, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::ES256 | Algorithm::ES384
    ) {
        return Err(TokenError::Invalid(format!(
            "alg {:?} is not accepted from the identity provider",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Invalid("the header has no kid".into()))?;
    let keys = authority
        .client_jwks(&idp.jwks_uri, Some(&kid))
        .await
        .map_err(|e| TokenError::Invalid(e.description))?;
    let jwk = keys.find(&kid).ok_or(TokenError::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&idp.issuer]);
    validation.set_audience(&[&idp.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    let c: IdpClaims = jsonwebtoken::decode(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| super::token::claim_error(&e, &idp.issuer, &idp.audience))?;
    let scope = match (c.scope, c.scp) {
        (Some(s), _) => s,
        (None, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        (None, Some(Value::String(s))) => s,
        _ => String::new(),
    };
    Ok(AccessClaims {
        iss: idp.issuer.clone(),
        aud: idp.audience.clone(),
        sub: c.sub,
        exp: c.exp,
        iat: c.iat.unwrap_or_default(),
        jti: c.jti.unwrap_or_default(),
        scope,
        client_id: c.client_id.or(c.azp),
        patient: c.patient,
        encounter: c.encounter,
        fhir_user: c.fhir_user,
    })
}
