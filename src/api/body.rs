//! Request bodies: read up to the configured limit (413 past it), then parse as JSON or XML.

use super::context::Format;
use super::error::ApiError;
use crate::fhir::Issue;
use crate::fhir::model;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;

/// Read the whole body, refusing more than `limit` bytes without buffering them.
pub async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            let msg = format!("request body is larger than the limit of {limit} bytes");
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Issue::error("too-costly", msg),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
