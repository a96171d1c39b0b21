//! Per-request context: the correlation id (from `X-Request-Id` or generated; echoed in the
//! response, logged, and written on audit and outbox rows), the negotiated format and the
//! client's `Prefer` choices.

use super::error::ApiError;
use crate::auth::Grant;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The correlation id of the request being served.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware: give every request a correlation id, log it once with status and latency.
pub async fn correlate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(crate::store::new_correlation_id);
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!("request", correlation_id = %id);
    let method = req.method().to_string();
    let path = req.path().to_string();
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let _enter = span.enter();
    tracing::info!(%method, %path, status = res.status().as_u16(), micros = started.elapsed().as_micros() as u64, "served");
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// What the handlers need to know about the request besides its body and path.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub correlation_id: String,
    pub format: Format,
    pub pretty: bool,
    /// The client's explicit `Prefer: return`, if any.
    pub prefer_return: Option<Return>,
    /// `Prefer: handling=lenient`: drop unknown elements and parameters with a warning.
    pub lenient: bool,
    /// The caller's verified token (set by `api::require_auth`), or everything under
    /// `--insecure-dev`.
    pub grant: Arc<Grant>,
    /// Set when the request's audit rows are written by its write (not by the middleware).
    pub audited: Option<crate::ops::audit::http::Recorded>,
}

impl RequestContext {
    /// This request's writer on the ingest path.
    pub fn writer(&self, ingest: &crate::ingest::Ingest) -> crate::ingest::Writer {
        ingest.rest_writer(self.grant.clone(), self.correlation_id.clone())
    }

    /// Tell the audit trail what this response disclosed (a search's or a history's page):
    /// the access is recorded once per patient those versions belong to.
    pub fn showed<'a>(&self, versions: impl IntoIterator<Item = &'a crate::store::Version>) {
        if let Some(mark) = &self.audited {
            mark.showed(versions);
        }
    }

    /// Who the audit trail says made this request.
    pub fn actor(&self) -> crate::store::Actor {
        crate::store::Actor::Named(self.grant.actor())
    }

    /// `Prefer: return` with the default of single interactions (the full resource).
    pub fn returns(&self) -> Return {
        self.prefer_return.unwrap_or(Return::Representation)
    }

    fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        let correlation_id = req
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_else(crate::store::new_correlation_id);
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let format = match param("_format") {
            Some(f) => parse_format(f).ok_or_else(|| {
                let msg = format!("_format '{f}' is not supported: use json or xml");
                ApiError::new(
                    actix_web::http::StatusCode::NOT_ACCEPTABLE,
                    crate::fhir::Issue::error("not-supported", msg),
                )
            })?,
            None => accept_format(req),
        };
        let mut prefer_return = None;
        let mut lenient = false;
        for value in req
            .headers()
            .get_all("prefer")
            .filter_map(|v| v.to_str().ok())
        {
            for token in value.split([',', ';']).map(str::trim) {
                match token {
                    "return=minimal" => prefer_return = Some(Return::Minimal),
                    "return=representation" => prefer_return = Some(Return::Representation),
                    "return=OperationOutcome" => prefer_return = Some(Return::OperationOutcome),
                    "handling=lenient" => lenient = true,
                    "handling=strict" => lenient = false,
                    _ => {}
                }
            }
        }
        Ok(RequestContext {
            correlation_id,
            format,
            pretty: param("_pretty") == Some("true"),
            prefer_return,
            lenient,
            audited: req
                .extensions()
                .get::<crate::ops::audit::http::Recorded>()
                .cloned(),
            grant: req
                .extensions()
                .get::<Arc<Grant>>()
                .cloned()
                .ok_or_else(|| {
                    ApiError::unauthorized("no access token was verified for this request")
                })?,
        })
    }
}

impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(RequestContext::from_request(req))
    }
}

fn parse_format(f: &str) -> Option<Format> {
    match f {
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => {
            Some(Format::Json)
        }
        "xml"
        | "text/xml"
        | "application/xml"
        | "application/fhir+xml"
        | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// The format named first in `Accept` among those we serve; JSON otherwise (browsers included).
fn accept_format(req: &HttpRequest) -> Format {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let mime = part.split(';').next().unwrap_or("").trim();
        if let Some(f) = parse_format(mime) {
            return f;
        }
    }
    Format::Json
}

/// The format of a request body, from `Content-Type` (absent: JSON). Others are refused (415).
pub fn body_format(req: &HttpRequest) -> Result<Format, ApiError> {
    let Some(ct) = req.headers().get("content-type") else {
        return Ok(Format::Json);
    };
    let mime = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    parse_format(&mime).ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            crate::fhir::Issue::error(
                "not-supported",
                format!("Content-Type '{mime}' is not supported: send application/fhir+json or application/fhir+xml"),
            ),
        )
    })
}
