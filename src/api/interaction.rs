//! The RESTful interactions as plain functions over a store transaction, shared by the single
//! request handlers and by batch/transaction Bundles: prepare (validate + canonicalise), create,
//! update, patch, delete.

use super::error::ApiError;
use crate::auth::{Grant, Interaction};
use crate::fhir::definitions::Definitions;
use crate::fhir::patch::{self, PatchError};
use crate::fhir::search::filter::{parse_filter, patient_compartment};
use crate::fhir::search::{ParamType, SearchParams};
use crate::fhir::validate::validate_resource;
use crate::fhir::{FhirId, Issue, model};
use crate::store::search::{Scope, SearchSpec, search};
use crate::store::versions::{self, Method, Written};
use crate::store::write;
use crate::store::{Tx, WriteContext};
use actix_web::http::StatusCode;
use serde_json::Value;

/// A resource that passed validation, in canonical JSON, with the warnings to report.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub resource: Value,
    pub warnings: Vec<Issue>,
}

pub fn check_type(rtype: &str) -> Result<(), ApiError> {
    if Definitions::get().is_resource_type(rtype) {
        Ok(())
    } else {
        Err(ApiError::unknown_type(rtype))
    }
}

pub fn parse_id(id: &str) -> Result<FhirId, ApiError> {
    FhirId::parse(id).map_err(ApiError::bad_request)
}

/// `If-Match: W/"3"` (or `"3"`, or `3`) to version 3.
pub fn parse_etag(value: &str) -> Result<i64, ApiError> {
    let v = value.trim().trim_start_matches("W/").trim_matches('"');
    v.parse().map_err(|_| {
        ApiError::bad_request(format!("If-Match '{value}' is not an ETag such as W/\"3\""))
    })
}

/// Validate `resource` as a `rtype` and bring it to canonical form.
pub fn prepare(mut resource: Value, rtype: &str, lenient: bool) -> Result<Prepared, ApiError> {
    let actual = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if actual != rtype {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Issue::error(
                "invalid",
                format!("resourceType '{actual}' does not match the URL's type '{rtype}'"),
            )
            .at(format!("{rtype}.resourceType")),
        ));
    }
    let report = validate_resource(&mut resource, lenient);
    if !report.is_valid() {
        return Err(ApiError::invalid(report.errors));
    }
    let canonical = model::canonical_json(resource).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Issue::error("structure", format!("invalid {rtype}: {e}")),
        )
    })?;
    Ok(Prepared {
        resource: canonical,
        warnings: report.warnings,
    })
}

/// References to this server written as absolute URLs (`{base}/Patient/1`, as clients copy
/// them from a `fullUrl`) in the reference parameters of `rtypes`, made the relative
/// `Patient/1` that the index holds: for searches and for conditions alike.
pub fn local_references(
    params: &[(String, String)],
    rtypes: &[&str],
    base: &str,
) -> Vec<(String, String)> {
    let prefix = format!("{}/", base.trim_end_matches('/'));
    params
        .iter()
        .map(|(name, value)| {
            let code = name.split(':').next().unwrap_or(name);
            let is_reference = !name.contains('.')
                && rtypes.iter().any(|t| {
                    SearchParams::get()
                        .find(t, code)
                        .is_some_and(|p| p.kind == ParamType::Reference)
                });
            if !is_reference || !value.contains(&prefix) {
                return (name.clone(), value.clone());
            }
            let value = value
                .split(',')
                .map(|v| v.strip_prefix(&prefix).unwrap_or(v))
                .collect::<Vec<_>>()
                .join(",");
            (name.clone(), value)
        })
        .collect()
}

/// Resolve a condition (`If-None-Exist`, a conditional update or delete) to the ids of the
/// current resources it matches, with the search machinery: any supported search parameter
/// works. At most two ids come back: enough to tell none, one and several apart.
pub fn resolve_condition(
    tx: &mut Tx,
    rtype: &str,
    query: &str,
    base: &str,
    grant: &Grant,
) -> Result<Vec<String>, ApiError> {
    let query = query.trim_start_matches('?');
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::bad_request(format!("condition '{query}' is not a query string: {e}"))
    })?;
    if params.is_empty() {
        return Err(ApiError::bad_request(
            "empty condition: give at least one search parameter",
        ));
    }
    let params = local_references(&params, &[rtype], base);
    let mut filters = Vec::with_capacity(params.len());
    for (name, value) in &params {
        match parse_filter(rtype, name, value) {
            Ok(Some(f)) => filters.push(f),
            Ok(None) => {
                return Err(ApiError::bad_request(format!(
                    "condition '{query}': '{name}' is not a search parameter of {rtype}"
                )));
            }
            Err(e) => return Err(ApiError::bad_request(format!("condition '{query}': {e}"))),
        }
    }
    // a writer confined to one patient matches inside that compartment only: what lies
    // outside is neither found (its existence would show) nor written
    if let Some(patient) = grant.confinement(rtype) {
        filters.push(
            patient_compartment(rtype, &patient).map_err(|e| ApiError::forbidden(e.message))?,
        );
    }
    let scope = [(rtype.to_string(), filters)];
    let spec = SearchSpec {
        scope: Scope::Types(&scope),
        sort: &[],
        count: 2,
        cursor: None,
        total: false,
    };
    let page = search(tx.conn, &spec)?;
    Ok(page.versions.into_iter().map(|v| v.id).collect())
}

/// The one resource a condition matches: none is `None`, several is 412.
pub fn single_match(
    tx: &mut Tx,
    rtype: &str,
    query: &str,
    base: &str,
    grant: &Grant,
) -> Result<Option<FhirId>, ApiError> {
    let found = resolve_condition(tx, rtype, query, base, grant)?;
    match found.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(parse_id(id)?)),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            Issue::error(
                "duplicate",
                format!("'{rtype}?{query}' matches {} resources", found.len()),
            ),
        )),
    }
}

/// Create (POST): a new server-assigned id, or with `If-None-Exist` the existing match.
pub fn create(
    tx: &mut Tx,
    rtype: &str,
    resource: Value,
    if_none_exist: Option<&str>,
    base: &str,
    ctx: &WriteContext,
) -> Result<Written, ApiError> {
    if let Some(cond) = if_none_exist {
        let found = resolve_condition(tx, rtype, cond, base, &ctx.grant)?;
        match found.as_slice() {
            [] => {}
            [id] => {
                let version = versions::current(tx.conn, rtype, id)?
                    .ok_or_else(|| ApiError::not_found(id.clone()))?;
                // the existing match is returned: the caller must be allowed to read it
                ctx.grant
                    .check(Interaction::Read, rtype, id, || version.json())?;
                return Ok(Written {
                    version,
                    created: false,
                    noop: true,
                });
            }
            _ => {
                let msg = format!("If-None-Exist '{cond}' matches {} resources", found.len());
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    Issue::error("duplicate", msg),
                ));
            }
        }
    }
    create_with_id(tx, rtype, &FhirId::generate(), resource, ctx)
}

/// Create under a fresh id already chosen (transactions pick ids before writing).
pub fn create_with_id(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    ctx: &WriteContext,
) -> Result<Written, ApiError> {
    Ok(write::create(tx, rtype, id, resource, ctx)?)
}

/// Update (PUT), creating the resource when the id is new. The body's id must match the URL.
pub fn update(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, ApiError> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id.as_str() => {}
        Some(body_id) => {
            return Err(ApiError::bad_request(format!(
                "the body's id '{body_id}' does not match the URL's id '{id}'"
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "an update must carry the resource id in the body",
            ));
        }
    }
    Ok(write::put(
        tx,
        rtype,
        id,
        resource,
        Method::Put,
        expected,
        ctx,
    )?)
}

/// A JSON Patch and how to apply it.
#[derive(Clone, Copy)]
pub struct PatchRequest<'a> {
    pub operations: &'a Value,
    /// `If-Match`: the version the patch must apply to.
    pub expected: Option<i64>,
    /// `Prefer: handling=lenient`: unknown elements in the result are dropped, not refused.
    pub lenient: bool,
    /// The largest the result may be (the body limit).
    pub max_bytes: usize,
}

/// Patch (JSON Patch, RFC 6902) the current version, within `fhir::patch`'s bounds (the result
/// at most `max_bytes`); the result is validated like an update.
/// Without If-Match, the version read here is still required at write time: a concurrent
/// change makes this patch fail with 409 rather than be silently lost.
pub fn patch(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    request: &PatchRequest,
    ctx: &WriteContext,
) -> Result<(Written, Vec<Issue>), ApiError> {
    let PatchRequest {
        operations,
        expected,
        lenient,
        max_bytes,
    } = *request;
    let current = versions::current(tx.conn, rtype, id.as_str())?
        .ok_or_else(|| ApiError::not_found(format!("{rtype}/{id} is not known")))?;
    if current.deleted {
        return Err(current.gone().into());
    }
    let mut doc = current.json();
    patch::apply(&mut doc, operations, max_bytes).map_err(|e| match e {
        PatchError::Malformed(m) => ApiError::bad_request(m),
        PatchError::TooLarge(m) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Issue::error("too-costly", m))
        }
        PatchError::Failed(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Issue::error("processing", m),
        ),
    })?;
    if doc.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Issue::error(
                "processing",
                "a patch may not change or remove the resource id",
            ),
        ));
    }
    let prepared = prepare(doc, rtype, lenient)?;
    let expected = Some(expected.unwrap_or(current.version_id));
    let w = write::put(
        tx,
        rtype,
        id,
        prepared.resource,
        Method::Patch,
        expected,
        ctx,
    )?;
    Ok((w, prepared.warnings))
}

pub fn delete(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    expected: Option<i64>,
    ctx: &WriteContext,
) -> Result<Written, ApiError> {
    Ok(write::delete(tx, rtype, id.as_str(), expected, ctx)?)
}
