//! Responses: resources in the negotiated format with ETag, Last-Modified and Location, and
//! other FHIR JSON (Bundles, OperationOutcomes).

use super::context::{Format, RequestContext, Return};
use super::error::ApiError;
use crate::fhir::model;
use crate::fhir::resource::http_date;
use crate::fhir::{Issue, operation_outcome};
use crate::store::Version;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::Value;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

pub fn etag(version_id: i64) -> String {
    format!("W/\"{version_id}\"")
}

/// A stored JSON text in the client's format. JSON is sent as stored (no re-serialisation).
fn encode(json_text: &str, ctx: &RequestContext) -> Result<(&'static str, String), ApiError> {
    match ctx.format {
        Format::Json if !ctx.pretty => Ok((FHIR_JSON, json_text.to_string())),
        Format::Json => {
            let v: Value = serde_json::from_str(json_text).unwrap_or(Value::Null);
            Ok((
                FHIR_JSON,
                serde_json::to_string_pretty(&v).unwrap_or_default(),
            ))
        }
        Format::Xml => {
            let v: Value = serde_json::from_str(json_text).unwrap_or(Value::Null);
            let xml = model::json_to_xml(v).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Issue::error("exception", format!("XML rendering failed: {e}")),
                )
            })?;
            Ok((FHIR_XML, xml))
        }
    }
}

/// Any FHIR JSON value (Bundle, OperationOutcome, CapabilityStatement) in the client's format.
pub fn fhir(
    status: StatusCode,
    value: &Value,
    ctx: &RequestContext,
) -> Result<HttpResponse, ApiError> {
    let (ctype, body) = encode(&value.to_string(), ctx)?;
    Ok(HttpResponse::build(status).content_type(ctype).body(body))
}

/// A response about one version: headers always, the body as `Prefer: return` asks.
pub fn version(
    status: StatusCode,
    v: &Version,
    ctx: &RequestContext,
    location_base: Option<&str>,
    warnings: &[Issue],
) -> Result<HttpResponse, ApiError> {
    let mut builder = HttpResponse::build(status);
    builder.insert_header(("ETag", etag(v.version_id)));
    builder.insert_header(("Last-Modified", http_date(v.last_updated)));
    if let Some(base) = location_base {
        let loc = format!(
            "{base}/{}/{}/_history/{}",
            v.resource_type, v.id, v.version_id
        );
        builder.insert_header(("Location", loc.clone()));
        builder.insert_header(("Content-Location", loc));
    }
    match ctx.returns() {
        Return::Minimal => Ok(builder.finish()),
        Return::OperationOutcome => {
            let (ctype, body) = encode(&operation_outcome(warnings).to_string(), ctx)?;
            Ok(builder.content_type(ctype).body(body))
        }
        Return::Representation => {
            let (ctype, body) = encode(&v.content, ctx)?;
            Ok(builder.content_type(ctype).body(body))
        }
    }
}
