//! The authorization-code grant of SMART App Launch (standalone launch): check the request an
//! app sends the user's browser with, issue a single-use code once the user has signed in and
//! approved, and exchange that code (with the PKCE verifier) for tokens.

use super::backend::{Credentials, OAuthError, authenticate_client};
use super::clients::ClientKind;
use super::launch::{self, LaunchContext};
use super::refresh;
use super::scopes::{Context, ResourceScope, grant};
use super::secret::{random_token, sha256_b64url};
use super::users::User;
use super::{Authority, Mint, now_secs};
use crate::store::schema::auth_codes;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a code may wait for its exchange.
const CODE_LIFETIME: i64 = 120;
/// Lifetime of an access token obtained by a user's authorization.
pub const USER_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a user has between signing in and approving.
const TICKET_LIFETIME: i64 = 600;

/// A checked authorization request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// What the user is asked to approve: the asked scopes within the client's.
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    /// The EHR's context, when the app was launched from one (`launch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchContext>,
}

/// Why a request is refused: shown to the user when the client or its redirect URI cannot be
/// trusted, else sent back to the app's redirect URI (RFC 6749 section 4.1.2.1).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    Page(String),
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// Check an authorization request's parameters.
pub async fn check(
    authority: &Authority,
    params: &[(String, String)],
) -> Result<AuthRequest, AuthorizeError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let client_id =
        get("client_id").ok_or_else(|| AuthorizeError::Page("client_id is missing".into()))?;
    let client = authority
        .find_client(client_id)
        .await
        .map_err(|e| AuthorizeError::Page(e.to_string()))?
        .ok_or_else(|| AuthorizeError::Page(format!("no client '{client_id}' is registered")))?;
    let redirect_uri = get("redirect_uri")
        .filter(|r| client.redirect_uris.iter().any(|u| u == r))
        .ok_or_else(|| {
            AuthorizeError::Page(
                "redirect_uri is missing or is not one the client registered (exact match)".into(),
            )
        })?
        .to_string();
    let state = get("state").map(str::to_string);
    let refuse = |error: &'static str, description: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_string(),
        state: state.clone(),
    };
    if get("response_type") != Some("code") {
        return Err(refuse(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let Some(state) = state.clone().filter(|s| !s.is_empty()) else {
        return Err(refuse("invalid_request", "state is required"));
    };
    if get("aud").map(|a| a.trim_end_matches('/')) != Some(authority.audience()) {
        return Err(refuse(
            "invalid_request",
            &format!(
                "aud must be this server's FHIR base URL, {}",
                authority.audience()
            ),
        ));
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => c.to_string(),
        (_, Some(m)) if m != "S256" => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256 (plain is refused)",
            ));
        }
        _ => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method S256",
            ));
        }
    };
    let scopes: Vec<String> = grant(get("scope").unwrap_or(""), &client.scope)
        .into_iter()
        .filter(|s| ResourceScope::parse(s).is_none_or(|r| r.context != Context::System))
        .collect();
    if scopes.is_empty() {
        return Err(refuse(
            "invalid_scope",
            "none of the scopes asked for may be granted to this client",
        ));
    }
    let launch = match get("launch") {
        Some(handle) => {
            if !scopes.iter().any(|s| s == "launch") {
                return Err(refuse(
                    "invalid_scope",
                    "an EHR launch asks for the launch scope (and the client must be allowed it)",
                ));
            }
            Some(launch::open(authority, handle).map_err(|e| refuse("invalid_request", &e))?)
        }
        None => None,
    };
    Ok(AuthRequest {
        client_id: client.client_id,
        redirect_uri,
        scope: scopes.join(" "),
        state,
        code_challenge: challenge,
        launch,
    })
}

/// What carries a signed-in user from the login page to the consent page: signed by the
/// server, for the authorize endpoint only, and short-lived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    #[serde(rename = "fhirUser")]
    pub fhir_user: String,
    pub request: AuthRequest,
}

pub fn ticket_audience(authority: &Authority) -> String {
    format!("{}/authorize", authority.issuer())
}

pub fn ticket(authority: &Authority, user: &User, request: AuthRequest) -> String {
    authority.sign(&Ticket {
        iss: authority.issuer().to_string(),
        aud: ticket_audience(authority),
        sub: user.username.clone(),
        exp: now_secs() + TICKET_LIFETIME,
        fhir_user: user.fhir_user.clone(),
        request,
    })
}

/// The user approved: a code for the app, to be exchanged within two minutes.
pub fn issue_code(conn: &mut DbConnection, ticket: &Ticket) -> Result<String, StoreError> {
    let code = random_token();
    let launch = ticket.request.launch.clone().unwrap_or_default();
    let user = User {
        username: ticket.sub.clone(),
        fhir_user: ticket.fhir_user.clone(),
        roles: String::new(),
    };
    diesel::insert_into(auth_codes::table)
        .values((
            auth_codes::code_hash.eq(sha256_b64url(&code)),
            auth_codes::client_id.eq(&ticket.request.client_id),
            auth_codes::redirect_uri.eq(&ticket.request.redirect_uri),
            auth_codes::code_challenge.eq(&ticket.request.code_challenge),
            auth_codes::username.eq(&user.username),
            auth_codes::fhir_user.eq(&user.fhir_user),
            auth_codes::scope.eq(&ticket.request.scope),
            auth_codes::patient.eq(launch.patient.as_deref().or(user.own_patient())),
            auth_codes::encounter.eq(&launch.encounter),
            auth_codes::context.eq(ticket
                .request
                .launch
                .as_ref()
                .map(|l| serde_json::to_string(l).expect("launch context serialises"))),
            auth_codes::expires_at.eq(now_secs() + CODE_LIFETIME),
            auth_codes::used.eq(false),
        ))
        .execute(conn)?;
    Ok(code)
}

/// The token response of an authorization code: SMART's launch context beside the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeTokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    pub need_patient_banner: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Who a user's tokens are for: what a code or a refresh token carries.
#[derive(Debug, Clone)]
pub struct Holder {
    pub client_id: String,
    pub username: String,
    pub fhir_user: String,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// An EHR launch's further context (intent, banner, style).
    pub launch: Option<LaunchContext>,
}

impl Holder {
    fn has_scope(&self, s: &str) -> bool {
        self.scope.split_ascii_whitespace().any(|x| x == s)
    }

    /// `offline_access` or `online_access` asks for a refresh token.
    pub fn wants_refresh(&self) -> bool {
        self.has_scope("offline_access") || self.has_scope("online_access")
    }

    pub fn offline(&self) -> bool {
        self.has_scope("offline_access")
    }
}

/// The access token (and id token) of a holder, with its launch context.
pub fn tokens(
    authority: &Authority,
    h: &Holder,
    refresh_token: Option<String>,
) -> CodeTokenResponse {
    let (access_token, _) = authority.mint(&Mint {
        subject: h.username.clone(),
        scope: h.scope.clone(),
        client_id: Some(h.client_id.clone()),
        patient: h.patient.clone(),
        encounter: h.encounter.clone(),
        fhir_user: Some(h.fhir_user.clone()),
        lifetime: USER_TOKEN_LIFETIME,
    });
    let id_token = (h.has_scope("openid") && h.has_scope("fhirUser")).then(|| {
        authority.sign(&serde_json::json!({
            "iss": authority.issuer(),
            "sub": h.username,
            "aud": h.client_id,
            "iat": now_secs(),
            "exp": now_secs() + USER_TOKEN_LIFETIME.as_secs() as i64,
            "fhirUser": format!("{}/{}", authority.audience(), h.fhir_user),
        }))
    });
    let launch = h.launch.as_ref();
    CodeTokenResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in: USER_TOKEN_LIFETIME.as_secs(),
        scope: h.scope.clone(),
        need_patient_banner: launch
            .and_then(|l| l.need_patient_banner)
            .unwrap_or(h.patient.is_some()),
        patient: h.patient.clone(),
        encounter: h.encounter.clone(),
        intent: launch.and_then(|l| l.intent.clone()),
        smart_style_url: launch.and_then(|l| l.smart_style_url.clone()),
        id_token,
        refresh_token,
    }
}

type CodeRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// The client making a token request: authenticated when confidential, named by `client_id`
/// when public (a confidential client that does not authenticate is refused).
pub async fn identify_client(
    authority: &Authority,
    named: Option<&str>,
    credentials: Option<Credentials>,
) -> Result<String, OAuthError> {
    if let Some(c) = credentials {
        return Ok(authenticate_client(authority, c).await?.client_id);
    }
    let id = named
        .ok_or_else(|| OAuthError::invalid_client("client_id is missing"))?
        .to_string();
    let client = authority.find_client(&id).await?;
    match client {
        Some(c) if c.kind == ClientKind::Public => Ok(id),
        Some(_) => Err(OAuthError::invalid_client(
            "a confidential client must authenticate",
        )),
        None => Err(OAuthError::invalid_client(format!(
            "no client '{id}' is registered"
        ))),
    }
}

/// `grant_type=authorization_code`: the code, once, by the client it was issued to, with the
/// same redirect URI and the verifier of its PKCE challenge.
pub async fn exchange(
    authority: &Authority,
    params: &[(String, String)],
    credentials: Option<Credentials>,
) -> Result<CodeTokenResponse, OAuthError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let verifier = get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is missing (PKCE)"))?;
    let client_id = identify_client(authority, get("client_id"), credentials).await?;
    // Take the code: one UPDATE marks it used, so of two racing exchanges only one wins.
    let hash = sha256_b64url(code);
    let row: Option<CodeRow> = authority
        .write(move |c| {
            let taken = diesel::update(
                auth_codes::table
                    .filter(auth_codes::code_hash.eq(&hash))
                    .filter(auth_codes::used.eq(false)),
            )
            .set(auth_codes::used.eq(true))
            .execute(c)?;
            if taken == 0 {
                return Ok(None);
            }
            Ok(auth_codes::table
                .filter(auth_codes::code_hash.eq(&hash))
                .select((
                    auth_codes::client_id,
                    auth_codes::redirect_uri,
                    auth_codes::code_challenge,
                    auth_codes::username,
                    auth_codes::fhir_user,
                    auth_codes::scope,
                    auth_codes::patient,
                    auth_codes::encounter,
                    auth_codes::context,
                    auth_codes::expires_at,
                ))
                .get_result(c)
                .optional()?)
        })
        .await?;
    let Some((
        owner,
        redirect_uri,
        challenge,
        username,
        fhir_user,
        scope,
        patient,
        encounter,
        context,
        expires_at,
    )) = row
    else {
        return Err(OAuthError::invalid_grant(
            "the code is unknown or was already used",
        ));
    };
    if expires_at < now_secs() {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if owner != client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if get("redirect_uri") != Some(redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if sha256_b64url(verifier) != challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge (PKCE)",
        ));
    }
    let holder = Holder {
        client_id,
        username,
        fhir_user,
        scope,
        patient,
        encounter,
        launch: context.and_then(|c| serde_json::from_str(&c).ok()),
    };
    let refresh_token = match holder.wants_refresh() {
        true => {
            let h = holder.clone();
            Some(
                authority
                    .write(move |c| refresh::issue(c, None, &h))
                    .await?,
            )
        }
        false => None,
    };
    Ok(tokens(authority, &holder, refresh_token))
}
