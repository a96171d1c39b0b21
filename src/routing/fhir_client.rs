//! The HTTP client of one FHIR or REST-hook target: each message (a transaction Bundle, a
//! notification Bundle) POSTed to its base or endpoint, with the target's headers and
//! with a bearer token got by OAuth2 client credentials (the `oauth2` crate over the server's
//! reqwest) and kept until shortly before it expires. What the answer means for the queue:
//! 2xx taken; a refusal of the content (400, 403, 404, 409, 412, 422) to the exception queue
//! with the OperationOutcome's words; 401 fetches a new token and tries once more; anything
//! else (408, 429, 5xx, no answer, no token) holds the queue and is tried again.

use super::config::OAuth2;
use super::queue::Outcome;
use crate::fhir::resource::now_micros;
use std::time::{Duration, Instant};

pub struct FhirLink {
    http: reqwest::Client,
    base: String,
    oauth2: Option<OAuth2>,
    /// The token and when to stop using it.
    token: Option<(String, Instant)>,
    /// Headers sent with every request, or why they cannot be made (every try then waits).
    headers: Result<Vec<(String, String)>, String>,
}

/// Why no token could be got.
#[derive(Debug, thiserror::Error)]
#[error("no token from {url}: {why}")]
pub struct TokenError {
    url: String,
    why: String,
}

impl FhirLink {
    /// A link POSTing to `base` exactly as given.
    pub fn new(base: &str, oauth2: Option<OAuth2>, timeout: Duration) -> FhirLink {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a client with timeouts builds");
        FhirLink {
            http,
            base: base.to_string(),
            oauth2,
            token: None,
            headers: Ok(Vec::new()),
        }
    }

    /// The same, sending `headers` with every request.
    pub fn with_headers(mut self, headers: Result<Vec<(String, String)>, String>) -> FhirLink {
        self.headers = headers;
        self
    }

    /// A token (fetched when there is none or it is about to expire).
    async fn token(&mut self) -> Result<Option<String>, TokenError> {
        let Some(o) = &self.oauth2 else {
            return Ok(None);
        };
        if let Some((t, until)) = &self.token
            && Instant::now() < *until
        {
            return Ok(Some(t.clone()));
        }
        let failed = |why: String| TokenError {
            url: o.token_url.clone(),
            why,
        };
        let secret = secret(o).map_err(failed)?;
        use oauth2::TokenResponse;
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(o.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(secret))
            .set_token_uri(
                oauth2::TokenUrl::new(o.token_url.clone()).map_err(|e| failed(e.to_string()))?,
            );
        let mut request = client.exchange_client_credentials();
        for s in o.scope.iter().flat_map(|s| s.split_whitespace()) {
            request = request.add_scope(oauth2::Scope::new(s.to_string()));
        }
        let http = self.http.clone();
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
        Ok(Some(token))
    }

    /// POST `bundle` to the base; what became of it (`retry_at`: when to try again if held).
    pub async fn send(&mut self, bundle: &str, retry_at: Duration) -> Outcome {
        let retry = |error: String| Outcome::Retry {
            at: now_micros() + retry_at.as_micros() as i64,
            error,
        };
        let headers = match &self.headers {
            Ok(h) => h.clone(),
            Err(why) => return retry(why.clone()),
        };
        for attempt in 0..2 {
            let token = match self.token().await {
                Ok(t) => t,
                Err(e) => return retry(e.to_string()),
            };
            let mut req = self
                .http
                .post(&self.base)
                .header("content-type", "application/fhir+json")
                .header("accept", "application/fhir+json")
                .body(bundle.to_string());
            for (name, value) in &headers {
                req = req.header(name, value);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return retry(format!("{}: {e}", self.base)),
            };
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            match status {
                200..=299 => {
                    return Outcome::Sent {
                        ack: status.to_string(),
                    };
                }
                401 if attempt == 0 && self.oauth2.is_some() => {
                    // the token was revoked or expired early: a new one, once
                    self.token = None;
                }
                400 | 403 | 404 | 409 | 412 | 422 => {
                    return Outcome::Failed {
                        ack: Some(status.to_string()),
                        error: outcome_text(&body)
                            .unwrap_or_else(|| format!("the target answered {status}")),
                    };
                }
                _ => {
                    let words = outcome_text(&body).unwrap_or_default();
                    return retry(
                        format!("the target answered {status} {words}")
                            .trim()
                            .to_string(),
                    );
                }
            }
        }
        retry("the target refused two tokens in a row (401)".into())
    }
}

/// The secret of `o`: its file's first line, or its environment variable.
fn secret(o: &OAuth2) -> Result<String, String> {
    if let Some(path) = &o.client_secret_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(text.lines().next().unwrap_or("").trim().to_string());
    }
    if let Some(var) = &o.client_secret_env {
        return std::env::var(var).map_err(|_| format!("${var} is not set"));
    }
    Err("no client secret configured".into())
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

/// The diagnostics of an OperationOutcome body, joined.
fn outcome_text(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let words: Vec<String> = v["issue"]
        .as_array()?
        .iter()
        .filter_map(|i| i["diagnostics"].as_str().or(i["details"]["text"].as_str()))
        .map(str::to_string)
        .collect();
    (!words.is_empty()).then(|| words.join("; "))
}
