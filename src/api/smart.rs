//! The authorization server's HTTP face: SMART discovery (`/fhir/.well-known/smart-configuration`),
//! the signing keys (`GET /auth/jwks`), the token endpoint (`POST /auth/token`), revocation
//! (`POST /auth/revoke`, RFC 7009) and introspection (`POST /auth/introspect`, RFC 7662). The
//! grants themselves live in `auth`; these handlers parse and answer in OAuth's terms.

use super::AppState;
use crate::auth::backend::{self, ASSERTION_TYPE, Credentials, OAuthError};
use crate::auth::clients::Client;
use crate::auth::{authorize, refresh};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.authority.jwks())
}

/// SMART App Launch 2.x discovery: only what this server really does.
pub async fn smart_configuration(state: web::Data<AppState>) -> HttpResponse {
    let a = &state.authority;
    HttpResponse::Ok()
        .content_type("application/json")
        .json(json!({
            "issuer": a.issuer(),
            "jwks_uri": format!("{}/jwks", a.issuer()),
            "authorization_endpoint": format!("{}/authorize", a.issuer()),
            "token_endpoint": a.token_endpoint(),
            "revocation_endpoint": format!("{}/revoke", a.issuer()),
            "introspection_endpoint": format!("{}/introspect", a.issuer()),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": [
                "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
                "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs",
                "system/*.cruds", "system/*.rs"
            ],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "context-ehr-patient",
                "context-ehr-encounter",
                "client-public",
                "client-confidential-asymmetric",
                "client-confidential-symmetric",
                "sso-openid-connect",
                "context-standalone-patient",
                "permission-patient",
                "permission-user",
                "permission-v1",
                "permission-v2"
            ]
        }))
}

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    super::body::Form(body): super::body::Form,
) -> HttpResponse {
    let result = guarded(&state, &req, "token", token_response(&state, &req, &body)).await;
    if let Ok(t) = &result {
        audit_issued(&state, &req, t);
    }
    answer(result)
}

/// A token issued, in the audit trail: to whom (client and user), for which patient, with
/// which scopes, from which address. (Refusals are kept by `failed_attempt`.)
fn audit_issued(state: &AppState, req: &HttpRequest, answer: &serde_json::Value) {
    let Some(claims) = answer["access_token"]
        .as_str()
        .and_then(|t| state.authority.verify(t, false).ok())
    else {
        return;
    };
    let grant = crate::auth::Grant::from_claims(claims);
    let mut e = crate::store::audit::Entry::now(
        crate::store::audit::kind::LOGIN,
        "token",
        &grant.actor(),
        &crate::store::new_correlation_id(),
    );
    e.patient = grant.patient.as_ref().map(|p| format!("Patient/{p}"));
    e.address = req.peer_addr().map(|a| a.ip().to_string());
    e.detail = Some(format!("token issued: {}", grant.scope));
    state.store.audit(e);
}

/// The throttle's key for the address a request came from (the peer of the connection: a
/// forwarded-for header would let anyone claim any address).
pub(super) fn address_key(req: &HttpRequest) -> String {
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    format!("addr:{ip}")
}

/// Run a request that authenticates a client, unless its address is locked; a failed client
/// authentication is counted against the address, logged and audited.
async fn guarded<T>(
    state: &AppState,
    req: &HttpRequest,
    action: &str,
    work: impl std::future::Future<Output = Result<T, OAuthError>>,
) -> Result<T, OAuthError> {
    let addr = address_key(req);
    let authority = &state.authority;
    authority
        .throttle
        .admit(&[&addr])
        .map_err(OAuthError::locked)?;
    let result = work.await;
    if let Err(e) = &result
        && e.error == "invalid_client"
        && e.status == 401
    {
        let who = format!("client from {}", &addr[5..]);
        authority
            .failed_attempt(
                &[&addr],
                &format!("{action} client-authentication"),
                &who,
                &e.description,
            )
            .await;
    }
    result
}

/// RFC 7009: a client revokes one of its own tokens. The answer is 200 whatever the token was
/// (an unknown or foreign token is not an error the caller may learn anything from).
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    super::body::Form(body): super::body::Form,
) -> HttpResponse {
    let result = async {
        let (token, client) =
            guarded(&state, &req, "revoke", token_of_client(&state, &req, &body)).await?;
        let token = token.as_str();
        if let Ok(claims) = state.authority.verify(token, false)
            && claims.client_id.as_deref() == Some(client.client_id.as_str())
        {
            state
                .authority
                .revoke(token, &claims)
                .await
                .map_err(OAuthError::server)?;
        }
        Ok(json!({}))
    }
    .await;
    answer(result)
}

/// RFC 7662: whether a token is active, and its claims, for an authenticated client.
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    super::body::Form(body): super::body::Form,
) -> HttpResponse {
    let result = async {
        let (token, _) = guarded(
            &state,
            &req,
            "introspect",
            token_of_client(&state, &req, &body),
        )
        .await?;
        let token = token.as_str();
        Ok(match state.authority.introspect(token).await {
            Some(c) => {
                let mut v = serde_json::to_value(&c).map_err(OAuthError::server)?;
                v["active"] = json!(true);
                v["token_type"] = json!("Bearer");
                v
            }
            None => json!({"active": false}),
        })
    }
    .await;
    answer(result)
}

/// The `token` a revocation or introspection request names, and the client that sent it
/// (both endpoints answer authenticated clients only).
async fn token_of_client(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(String, Client), OAuthError> {
    let params = form(req, body)?;
    let token = param(&params, "token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?
        .to_string();
    let client = backend::authenticate_client(&state.authority, credentials(req, &params)?).await?;
    Ok((token, client))
}

/// An OAuth answer: the JSON body, or the error with its status; never cached.
fn answer<T: serde::Serialize>(result: Result<T, OAuthError>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .insert_header(("pragma", "no-cache"))
            .json(body),
        Err(e) => {
            tracing::info!(error = e.error, description = %e.description, "OAuth request refused");
            let mut r = HttpResponse::build(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            );
            r.insert_header(("cache-control", "no-store"));
            if let Some(seconds) = e.retry_after {
                r.insert_header(("retry-after", seconds.to_string()));
            }
            if e.status == 401 {
                r.insert_header(("www-authenticate", "Basic realm=\"emrsync\""));
            }
            r.json(json!({"error": e.error, "error_description": e.description}))
        }
    }
}

/// The form parameters of an OAuth request; none may repeat (RFC 6749 section 3.1).
fn form(req: &HttpRequest, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the request must be application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::invalid_request(format!("bad form body: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(OAuthError::invalid_request(format!(
            "parameter '{dup}' is repeated"
        )));
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// How the client authenticates: a JWT assertion in the form, or HTTP Basic.
fn credentials(req: &HttpRequest, params: &[(String, String)]) -> Result<Credentials, OAuthError> {
    match param(params, "client_assertion_type") {
        Some(ASSERTION_TYPE) => Ok(Credentials::Assertion(
            param(params, "client_assertion")
                .ok_or_else(|| OAuthError::invalid_request("client_assertion is missing"))?
                .to_string(),
        )),
        Some(_) => Err(OAuthError::invalid_request(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        ))),
        None => basic_credentials(req)
            .ok_or_else(|| OAuthError::invalid_client("no client authentication was sent")),
    }
}

/// A user's grants come from public clients (which name themselves with `client_id`) and
/// confidential ones (which authenticate): the credentials when some were sent.
fn optional_credentials(
    req: &HttpRequest,
    params: &[(String, String)],
) -> Result<Option<Credentials>, OAuthError> {
    let sent = param(params, "client_assertion_type").is_some()
        || req.headers().contains_key("authorization");
    sent.then(|| credentials(req, params)).transpose()
}

async fn token_response(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let params = form(req, body)?;
    match param(&params, "grant_type") {
        Some("client_credentials") => {
            let credentials = credentials(req, &params)?;
            let t = backend::client_credentials(
                &state.authority,
                credentials,
                param(&params, "scope").unwrap_or(""),
            )
            .await?;
            serde_json::to_value(t).map_err(OAuthError::server)
        }
        Some("authorization_code") => {
            let credentials = optional_credentials(req, &params)?;
            let t = authorize::exchange(&state.authority, &params, credentials).await?;
            serde_json::to_value(t).map_err(OAuthError::server)
        }
        Some("refresh_token") => {
            let credentials = optional_credentials(req, &params)?;
            let t = refresh::refresh(&state.authority, &params, credentials).await?;
            serde_json::to_value(t).map_err(OAuthError::server)
        }
        Some(other) => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type '{other}' is not supported here"
        ))),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    }
}

/// `Authorization: Basic base64(urlencoded id ":" urlencoded secret)` (RFC 6749 section 2.3.1).
fn basic_credentials(req: &HttpRequest) -> Option<Credentials> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|(_, v)| v)
    };
    Some(Credentials::Basic {
        client_id: unescape(id)?,
        secret: unescape(secret)?,
    })
}
