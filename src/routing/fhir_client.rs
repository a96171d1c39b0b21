//! The HTTP client of one FHIR or REST-hook target: each message (a transaction Bundle, a
//! notification Bundle) POSTed to its base or endpoint, with the target's headers and
//! with a bearer token got by OAuth2 client credentials (the `oauth2` crate over the server's
//! reqwest) and kept until shortly before it expires. What the answer means for the queue:
//! 2xx taken; a refusal of the content (400, 403, 404, 409, 412, 422) to the exception queue
//! with the OperationOutcome's words; 401 fetches a new token and tries once more; anything
//! else (408, 429, 5xx, no answer, no token) holds the queue and is tried again.

use super::config::OAuth2;
use super::queue::Outcome;
use crate::adapters::oauth2::{TokenError, Tokens};
use crate::fhir::resource::now_micros;
use std::time::Duration;

pub struct FhirLink {
    http: reqwest::Client,
    base: String,
    oauth2: Option<Tokens>,
    /// Headers sent with every request, or why they cannot be made (every try then waits).
    headers: Result<Vec<(String, String)>, String>,
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
            oauth2: oauth2.map(Tokens::new),
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
        match &mut self.oauth2 {
            Some(tokens) => tokens.get(&self.http).await.map(Some),
            None => Ok(None),
        }
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
                    if let Some(tokens) = &mut self.oauth2 {
                        tokens.forget();
                    }
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
