//! Batch and transaction Bundles (`POST [base]`).
//!
//! A transaction runs in one database transaction: entries are processed DELETE, POST, PUT,
//! GET (the spec's order; a PATCH with the PUTs), `urn:uuid:` fullUrls get their server ids and every reference to them
//! is rewritten, and any failing entry rolls the whole Bundle back. A batch runs each entry on
//! its own and reports each entry's outcome.

mod run;

use super::AppState;
use super::body::{parse_resource, read_limited};
use super::context::RequestContext;
use super::context::{Format, body_format};
use super::crud::write;
use super::error::ApiError;
use super::path::{check_type, parse_etag, parse_id};
use super::render;
use crate::fhir::FhirId;
use crate::fhir::patch::Patch;
use crate::ingest::rest::PatchRequest;
use crate::ingest::{Accepted, Writer};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

/// What one entry asks for, parsed and validated before any write.
#[derive(Debug, Clone)]
enum Action {
    Create {
        rtype: String,
        prepared: Accepted,
        if_none_exist: Option<String>,
    },
    Update {
        rtype: String,
        target: Target,
        prepared: Accepted,
        if_match: Option<i64>,
    },
    Delete {
        rtype: String,
        target: Target,
        if_match: Option<i64>,
    },
    /// A patch of the resource named (a conditional one must match exactly one).
    Patch {
        rtype: String,
        target: Target,
        patch: Patch,
        request: PatchRequest,
    },
    Read {
        rtype: String,
        id: String,
        version: Option<i64>,
    },
}

/// The resource an update or delete names: by id, or by a condition (`Patient?identifier=...`).
#[derive(Debug, Clone)]
enum Target {
    Id(FhirId),
    Condition(String),
}

#[derive(Debug, Clone)]
struct Entry {
    full_url: Option<String>,
    action: Action,
}

impl Action {
    fn rtype(&self) -> &str {
        match self {
            Action::Create { rtype, .. }
            | Action::Update { rtype, .. }
            | Action::Delete { rtype, .. }
            | Action::Patch { rtype, .. }
            | Action::Read { rtype, .. } => rtype,
        }
    }
}

impl Entry {
    /// The spec's processing order within a transaction.
    fn order(&self) -> u8 {
        match self.action {
            Action::Delete { .. } => 0,
            Action::Create { .. } => 1,
            Action::Update { .. } | Action::Patch { .. } => 2,
            Action::Read { .. } => 3,
        }
    }
}

pub async fn process(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let format = body_format(&req)?;
    let bytes = read_limited(&req, payload, state.max_body_bytes).await?;
    let (kind, raw) = bundle_body(&bytes, format)?;
    drop(bytes);
    let is_transaction = match kind.as_str() {
        "transaction" => true,
        "batch" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "Bundle.type must be batch or transaction, not '{other}'"
            )));
        }
    };
    if raw.len() > state.max_bundle_entries {
        let msg = format!(
            "the Bundle has {} entries; at most {} are accepted (send it in parts)",
            raw.len(),
            state.max_bundle_entries
        );
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            crate::fhir::Issue::error("too-costly", msg),
        ));
    }
    // each entry is a request's work (`rate::per_client` leaves Bundles to be charged here)
    let units = u32::try_from(raw.len().max(1)).unwrap_or(u32::MAX);
    state.rates.charge_client(&ctx.grant, units)?;
    let base = state.base_url.clone();
    let c = ctx.clone();
    let max_bytes = state.max_body_bytes;
    let response = write(&state, &ctx, &kind, None, move |store, w| {
        let raw = entry_values(raw)?;
        let lenient = c.lenient;
        if is_transaction {
            let entries = raw
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    parse_entry(r, (lenient, max_bytes), w)
                        .map_err(|e| e.in_context(&format!("Bundle.entry[{i}]")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            run::run_transaction(store, entries, &base, &c, w)
        } else {
            let entries = raw
                .into_iter()
                .map(|r| parse_entry(r, (lenient, max_bytes), w))
                .collect();
            Ok(run::run_batch(store, entries, &base, &c, w))
        }
    })
    .await?;
    render::fhir(StatusCode::OK, &response, &ctx)
}

/// A Bundle body's entries, each still as its JSON text (or parsed, from XML): counted before
/// any is built, since a Bundle parsed whole takes several times its size (100,000 entries of
/// a few bytes each, from a read-only token, took 600 MB).
enum RawEntries {
    Json(Vec<Box<serde_json::value::RawValue>>),
    Parsed(Vec<Value>),
}

impl RawEntries {
    fn len(&self) -> usize {
        match self {
            RawEntries::Json(e) => e.len(),
            RawEntries::Parsed(e) => e.len(),
        }
    }
}

/// The Bundle's type and its entries, from a request body.
fn bundle_body(bytes: &[u8], format: Format) -> Result<(String, RawEntries), ApiError> {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "resourceType")]
        resource_type: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        entry: Option<Vec<Box<serde_json::value::RawValue>>>,
    }
    let not_a_bundle = || {
        ApiError::bad_request("POST to the base URL takes a Bundle of type batch or transaction")
    };
    let (resource_type, kind, entries) = match format {
        Format::Json => {
            let shape: Shape = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    crate::fhir::Issue::error("structure", format!("invalid Bundle JSON: {e}")),
                )
            })?;
            let entries = RawEntries::Json(shape.entry.unwrap_or_default());
            (shape.resource_type, shape.kind, entries)
        }
        Format::Xml => {
            let mut body = parse_resource(bytes, format)?;
            let rtype = body
                .get("resourceType")
                .and_then(Value::as_str)
                .map(str::to_string);
            let kind = body.get("type").and_then(Value::as_str).map(str::to_string);
            let entries = match body.get_mut("entry").map(Value::take) {
                None => Vec::new(),
                Some(Value::Array(a)) => a,
                Some(_) => return Err(ApiError::bad_request("Bundle.entry must be an array")),
            };
            (rtype, kind, RawEntries::Parsed(entries))
        }
    };
    if resource_type.as_deref() != Some("Bundle") {
        return Err(not_a_bundle());
    }
    Ok((kind.unwrap_or_default(), entries))
}

/// The entries as JSON values, one by one. Two entries may not share a `fullUrl`: a reference
/// to it could not say which one it means.
fn entry_values(raw: RawEntries) -> Result<Vec<Value>, ApiError> {
    let values: Vec<Value> = match raw {
        RawEntries::Parsed(v) => v,
        RawEntries::Json(texts) => texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::from_str(t.get()).map_err(|e| {
                    ApiError::bad_request(format!("Bundle.entry[{i}] is not valid JSON: {e}"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut seen = std::collections::HashMap::new();
    for (i, e) in values.iter().enumerate() {
        if let Some(url) = e.get("fullUrl").and_then(Value::as_str)
            && let Some(first) = seen.insert(url, i)
        {
            return Err(ApiError::bad_request(format!(
                "Bundle.entry[{i}]: fullUrl '{url}' is also the fullUrl of entry[{first}]"
            )));
        }
    }
    Ok(values)
}

/// Parse and validate one entry (no database access).
/// `lenient` handling asked for, and the largest a patched resource may be (the body limit).
fn parse_entry(
    mut raw: Value,
    (lenient, max_bytes): (bool, usize),
    writer: &Writer,
) -> Result<Entry, ApiError> {
    let mut body = raw.get_mut("resource").map(Value::take);
    let request = raw.get("request").ok_or_else(|| {
        ApiError::bad_request("entry.request is required in a batch or transaction")
    })?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_start_matches('/');
    if url.is_empty() {
        return Err(ApiError::bad_request("entry.request.url is required"));
    }
    let if_match = request
        .get("ifMatch")
        .and_then(Value::as_str)
        .map(parse_etag)
        .transpose()?;
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (url, None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let rtype = parts[0].to_string();
    check_type(&rtype)?;
    let target = || -> Result<Target, ApiError> {
        match (parts.as_slice(), &query) {
            ([_, id], None) => Ok(Target::Id(parse_id(id)?)),
            ([_], Some(q)) => Ok(Target::Condition(q.clone())),
            _ => Err(ApiError::bad_request(format!(
                "'{url}' is not [type]/[id] or [type]?[condition]"
            ))),
        }
    };
    let mut resource = || -> Result<Accepted, ApiError> {
        let r = body
            .take()
            .ok_or_else(|| ApiError::bad_request(format!("{method} {url} needs entry.resource")))?;
        Ok(writer.accept(r, &rtype, lenient)?)
    };
    let action = match method {
        "POST" if parts.len() == 1 => Action::Create {
            prepared: resource()?,
            if_none_exist: request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_string),
            rtype,
        },
        "PUT" => Action::Update {
            target: target()?,
            prepared: resource()?,
            if_match,
            rtype,
        },
        "DELETE" => Action::Delete {
            target: target()?,
            if_match,
            rtype,
        },
        "GET" => match parts.as_slice() {
            [_, id] if query.is_none() => Action::Read {
                id: id.to_string(),
                version: None,
                rtype,
            },
            [_, id, "_history", v] => Action::Read {
                id: id.to_string(),
                version: Some(
                    v.parse()
                        .map_err(|_| ApiError::bad_request(format!("bad version in '{url}'")))?,
                ),
                rtype,
            },
            _ => {
                return Err(ApiError::bad_request(format!(
                    "GET '{url}' in a Bundle: only read and vread are supported"
                )));
            }
        },
        "PATCH" => Action::Patch {
            target: target()?,
            patch: entry_patch(body.take(), method, url)?,
            request: PatchRequest {
                expected: if_match,
                lenient,
                max_bytes,
            },
            rtype,
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "'{other} {url}' is not a supported Bundle request"
            )));
        }
    };
    Ok(Entry {
        full_url: raw
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string),
        action,
    })
}

/// The patch a PATCH entry carries (the spec's way, as the resource): a `Binary` holding a JSON
/// Patch (or a JSON Merge Patch) by its `contentType`, or a `Parameters` that is a FHIRPath
/// Patch.
fn entry_patch(body: Option<Value>, method: &str, url: &str) -> Result<Patch, ApiError> {
    use base64::Engine;
    let body = body.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{method} {url} needs entry.resource: a Binary holding a JSON Patch, or a Parameters \
             (FHIRPath Patch)"
        ))
    })?;
    match body.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(Patch::FhirPath(body)),
        Some("Binary") => {
            let content_type = body
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let data = body.get("data").and_then(Value::as_str).unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    ApiError::bad_request(format!("{method} {url}: Binary.data is not base64: {e}"))
                })?;
            let patch: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("{method} {url}: Binary.data is not JSON: {e}"))
            })?;
            match content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => Ok(Patch::Json(patch)),
                "application/merge-patch+json" => Ok(Patch::Merge(patch)),
                other => Err(ApiError::bad_request(format!(
                    "{method} {url}: a Binary patch is application/json-patch+json or \
                     application/merge-patch+json, not '{other}'"
                ))),
            }
        }
        _ => Err(ApiError::bad_request(format!(
            "{method} {url}: the patch is a Binary (JSON Patch) or a Parameters (FHIRPath Patch)"
        ))),
    }
}
