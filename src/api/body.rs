//! Request bodies, read the one way every route reads them: up to a limit that applies to the
//! bytes after any `Content-Encoding` is undone (413 past it), then parsed as JSON or XML.
//!
//! A gzip body of 100 KB can inflate to hundreds of MB; actix's own decoder inflates each
//! arriving chunk whole before any limit is checked. Here the inflating writer refuses the byte
//! past the limit, so what a request can make the server hold is bounded by the limit and not
//! by the compression ratio.

use super::context::Format;
use super::error::ApiError;
use crate::fhir::Issue;
use crate::fhir::model;
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the small form bodies of `/auth/*` may take: sign-in and consent forms, token requests
/// with a client assertion (a few KB), revocation and introspection.
pub const FORM_LIMIT: usize = 64 * 1024;

/// Past its first MiB, a compressed body may inflate at most this many times its own size.
/// Request bodies of FHIR JSON compress 5-50 times; a body that inflates a thousandfold (the
/// most deflate can) is built to make the server work, not to carry data.
const MAX_RATIO: usize = 250;
const RATIO_FREE: usize = 1024 * 1024;

/// Why a body was not read: the status and what to tell the client.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

impl BodyError {
    fn too_large(limit: usize) -> Self {
        BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body is larger than the limit of {limit} bytes"),
        }
    }

    fn bad(message: String) -> Self {
        BodyError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let code = match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
            StatusCode::SERVICE_UNAVAILABLE => "transient",
            _ => "structure",
        };
        let mut api = ApiError::new(e.status, Issue::error(code, e.message));
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            api.headers.push(("Retry-After", "1".into()));
        }
        api
    }
}

/// The codings a body may come in. Others get 415: a body we cannot read is not guessed at.
enum Coding {
    Identity,
    Gzip,
    Deflate,
}

fn coding(req: &HttpRequest) -> Result<Coding, BodyError> {
    let Some(value) = req.headers().get("content-encoding") else {
        return Ok(Coding::Identity);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Coding::Identity),
        "gzip" | "x-gzip" => Ok(Coding::Gzip),
        "deflate" => Ok(Coding::Deflate),
        _ => Err(BodyError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("Content-Encoding '{value}' is not supported (gzip, deflate or none)"),
        }),
    }
}

/// The inflated bytes, refusing the write that would take them past the limit.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + data.len() > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "limit",
            ));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An inflating writer over `Capped`, fed the body as it arrives.
enum Inflate {
    Gzip(flate2::write::GzDecoder<Capped>),
    Deflate(flate2::write::ZlibDecoder<Capped>),
}

impl Inflate {
    fn feed(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Inflate::Gzip(d) => d.write_all(chunk),
            Inflate::Deflate(d) => d.write_all(chunk),
        }
    }

    fn inflated(&self) -> usize {
        match self {
            Inflate::Gzip(d) => d.get_ref().bytes.len(),
            Inflate::Deflate(d) => d.get_ref().bytes.len(),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        Ok(match self {
            Inflate::Gzip(d) => d.finish()?.bytes,
            Inflate::Deflate(d) => d.finish()?.bytes,
        })
    }
}

/// The bytes of request bodies the server holds at once, over all requests (`--max-body-bytes-
/// in-flight`), counted in KiB: each request's body, and what it becomes once parsed, lives
/// while the request is served, so without a bound a burst of large bodies takes memory in
/// proportion to the burst. A body whose length is declared waits for its share before it is
/// read; one that grows past what it declared (chunked, or inflating) takes more only if it is
/// free, else it is answered 503 with Retry-After (waiting there could deadlock requests that
/// each hold part of the budget). The share is held until the request's answer is sent.
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget(Arc::new(Semaphore::new(kib)))
    }
}

/// What one request holds of the budget (in KiB), kept in its extensions until it ends.
#[derive(Default)]
struct Share {
    kib: u32,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Share {
    /// Hold enough of the budget for `bytes`: waiting for it (`wait`, when nothing else is
    /// held), or taking it only if it is free.
    async fn grow(&mut self, req: &HttpRequest, bytes: usize, wait: bool) -> Result<(), BodyError> {
        let Some(state) = req.app_data::<actix_web::web::Data<super::AppState>>() else {
            return Ok(());
        };
        let need = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .saturating_sub(self.kib);
        if need == 0 {
            return Ok(());
        }
        let sem = state.body_budget.0.clone();
        let permit = match wait {
            true => sem.acquire_many_owned(need).await.ok(),
            false => sem.try_acquire_many_owned(need).ok(),
        };
        let permit = permit.ok_or_else(|| BodyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server holds as many request bodies as it may at once; try again shortly"
                .into(),
        })?;
        self.kib += need;
        self.permits.push(permit);
        Ok(())
    }
}

/// Read a request's whole body, undoing its `Content-Encoding`, refusing more than `limit`
/// bytes (raw or inflated) without buffering them, within the server's `BodyBudget`.
pub async fn read_limited<S>(
    req: &HttpRequest,
    payload: S,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut share = Share::default();
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared {
        if n > limit {
            return Err(BodyError::too_large(limit));
        }
        share.grow(req, n, true).await?;
    }
    let result = read_within(req, payload, limit, &mut share).await;
    req.extensions_mut().insert(share);
    result
}

async fn read_within<S>(
    req: &HttpRequest,
    mut payload: S,
    limit: usize,
    share: &mut Share,
) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let capped = || Capped {
        bytes: Vec::new(),
        limit,
    };
    let mut inflate = match coding(req)? {
        Coding::Identity => None,
        Coding::Gzip => Some(Inflate::Gzip(flate2::write::GzDecoder::new(capped()))),
        Coding::Deflate => Some(Inflate::Deflate(flate2::write::ZlibDecoder::new(capped()))),
    };
    let mut raw = BytesMut::new();
    let mut received = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| BodyError::bad(format!("could not read the request body: {e}")))?;
        received += chunk.len();
        if received > limit {
            return Err(BodyError::too_large(limit));
        }
        match &mut inflate {
            None => {
                share.grow(req, received, false).await?;
                raw.extend_from_slice(&chunk);
            }
            Some(d) => {
                d.feed(&chunk).map_err(|e| inflate_error(e, limit))?;
                let inflated = d.inflated();
                share.grow(req, received + inflated, false).await?;
                if inflated > RATIO_FREE && inflated > received * MAX_RATIO {
                    return Err(BodyError::bad(format!(
                        "the compressed body inflates more than {MAX_RATIO} times its size"
                    )));
                }
            }
        }
    }
    match inflate {
        None => Ok(raw.freeze()),
        Some(d) => Ok(d.finish().map_err(|e| inflate_error(e, limit))?.into()),
    }
}

fn inflate_error(e: std::io::Error, limit: usize) -> BodyError {
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        BodyError::too_large(limit)
    } else {
        BodyError::bad(format!(
            "the body is not valid for its Content-Encoding: {e}"
        ))
    }
}

/// A small form body (`/auth/*`), read through `read_limited` with [`FORM_LIMIT`]. Refusals
/// are answered as OAuth errors (`invalid_request`) with the status that fits.
pub struct Form(pub Bytes);

impl FromRequest for Form {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Form, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            read_limited(&req, payload, FORM_LIMIT)
                .await
                .map(Form)
                .map_err(|e| {
                    let body = serde_json::json!({
                        "error": "invalid_request",
                        "error_description": e.message,
                    });
                    let response = actix_web::HttpResponse::build(e.status)
                        .insert_header(("cache-control", "no-store"))
                        .json(body);
                    actix_web::error::InternalError::from_response(e.message, response).into()
                })
        })
    }
}

/// Parse a body in `format` into the JSON form of a resource.
pub fn parse_resource(bytes: &[u8], format: Format) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; a resource was expected",
        ));
    }
    match format {
        Format::Json => {
            let value: Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Issue::error("structure", format!("invalid JSON: {e}")),
                )
            })?;
            if !value.is_object() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Issue::error(
                        "structure",
                        "the body must be a JSON object (a FHIR resource)",
                    ),
                ));
            }
            Ok(value)
        }
        Format::Xml => model::xml_to_json(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("structure", format!("invalid FHIR XML: {e}")),
            )
        }),
    }
}
