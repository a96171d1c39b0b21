//! OAuth2 client credentials (RFC 6749 4.4, the `oauth2` crate over the server's reqwest): a
//! token got when one is needed and kept until shortly before it expires, for every outside
//! API emrsync calls with one: a vendor source's poller (`adapters::vendor`) and a route's
//! FHIR or REST-hook target (`routing::fhir_client`). The client secret is sent as HTTP Basic,
//! the way SMART Backend Services servers with symmetric clients and most vendor gateways take
//! it, and never sits in the definitions people read (routes, sources): it is read from a file
//! or the environment when a token is needed.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Where and as whom a token is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(alias = "tokenUrl")]
    pub token_url: String,
    #[serde(alias = "clientId")]
    pub client_id: String,
    /// A file holding the client secret (its first line).
    #[serde(default, alias = "clientSecretFile")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default, alias = "clientSecretEnv")]
    pub client_secret_env: Option<String>,
    /// The scopes asked for, space separated (e.g. `system/*.cruds`).
    #[serde(default)]
    pub scope: Option<String>,
}

impl Credentials {
    /// What is missing for a token to be asked for at all.
    pub fn problem(&self) -> Option<String> {
        (self.client_secret_file.is_none() && self.client_secret_env.is_none())
            .then(|| "oauth2 needs client_secret_file or client_secret_env".to_string())
    }

    /// The client secret: its file's first line, or its environment variable.
    fn secret(&self) -> Result<String, String> {
        if let Some(path) = &self.client_secret_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(text.lines().next().unwrap_or("").trim().to_string());
        }
        if let Some(var) = &self.client_secret_env {
            return std::env::var(var).map_err(|_| format!("${var} is not set"));
        }
        Err("no client secret configured".into())
    }
}

/// Why no token could be got.
#[derive(Debug, thiserror::Error)]
#[error("no token from {url}: {why}")]
pub struct TokenError {
    url: String,
    why: String,
}

/// The tokens of one client: one kept while it lasts.
#[derive(Debug)]
pub struct Tokens {
    credentials: Credentials,
    /// The token and when to stop using it.
    token: Option<(String, Instant)>,
}

impl Tokens {
    pub fn new(credentials: Credentials) -> Tokens {
        Tokens {
            credentials,
            token: None,
        }
    }

    /// Drop the token kept (the API refused it: revoked, or expired early).
    pub fn forget(&mut self) {
        self.token = None;
    }

    /// A token, asked for over `http` when none is kept or it is about to expire.
    pub async fn get(&mut self, http: &reqwest::Client) -> Result<String, TokenError> {
        if let Some((t, until)) = &self.token
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let c = &self.credentials;
        let failed = |why: String| TokenError {
            url: c.token_url.clone(),
            why,
        };
        let secret = c.secret().map_err(failed)?;
        use oauth2::TokenResponse;
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(c.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(secret))
            .set_token_uri(
                oauth2::TokenUrl::new(c.token_url.clone()).map_err(|e| failed(e.to_string()))?,
            );
        let mut request = client.exchange_client_credentials();
        for s in c.scope.iter().flat_map(|s| s.split_whitespace()) {
            request = request.add_scope(oauth2::Scope::new(s.to_string()));
        }
        let http = http.clone();
        let send = move |req: oauth2::HttpRequest| {
            let http = http.clone();
            async move {
                let (parts, body) = req.into_parts();
                let resp = http
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let (status, headers) = (resp.status(), resp.headers().clone());
                let mut out = oauth2::http::Response::new(resp.bytes().await?.to_vec());
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                Ok::<_, reqwest::Error>(out)
            }
        };
        let answer = request
            .request_async(&send)
            .await
            .map_err(|e| failed(describe(&e)))?;
        let lasts = answer.expires_in().unwrap_or(Duration::from_secs(300));
        let token = answer.access_token().secret().clone();
        // renewed a little before it runs out
        let until = Instant::now() + lasts.saturating_sub(Duration::from_secs(30).min(lasts / 2));
        self.token = Some((token.clone(), until));
        Ok(token)
    }
}

/// A token error in words: the server's `error` and `error_description` when it gave them.
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => format!("{r}"),
        other => format!("{other}"),
    }
}
