//! The RESTful writes as plain functions over a store transaction, shared by the single
//! request handlers and by batch/transaction Bundles: conditions resolved with the search
//! machinery, then create, update, patch and delete. Resources come here accepted (see
//! `accept`); the store holds each change to the writer's rules.

use super::{IngestError, Writer};
use crate::auth::{Grant, Interaction};
use crate::fhir::FhirId;
use crate::fhir::patch::{self, PatchError};
use crate::fhir::search::filter::{parse_filter, patient_compartment};
use crate::fhir::search::{ParamType, SearchParams};
use crate::store::search::{Scope, SearchSpec, search};
use crate::store::versions::{self, Method, Written};
use crate::store::{StoreError, Tx, write};
use serde_json::Value;

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
) -> Result<Vec<String>, IngestError> {
    let query = query.trim_start_matches('?');
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        IngestError::bad_request(format!("condition '{query}' is not a query string: {e}"))
    })?;
    if params.is_empty() {
        return Err(IngestError::bad_request(
            "empty condition: give at least one search parameter",
        ));
    }
    let params = local_references(&params, &[rtype], base);
    let mut filters = Vec::with_capacity(params.len());
    for (name, value) in &params {
        match parse_filter(rtype, name, value) {
            // which records are one person changes with the MPI's links: a write decided by
            // it would not say the same thing twice
            Ok(Some(f)) if f.through_identity() => {
                return Err(IngestError::bad_request(format!(
                    "condition '{query}': ':mdm' reads through the MPI's links; a conditional write matches records, not persons"
                )));
            }
            Ok(Some(f)) if f.through_terminology() => {
                return Err(IngestError::bad_request(format!(
                    "condition '{query}': :in, :not-in, :below and :above are not taken in a conditional write's condition: name the codes"
                )));
            }
            Ok(Some(f)) => filters.push(f),
            Ok(None) => {
                return Err(IngestError::bad_request(format!(
                    "condition '{query}': '{name}' is not a search parameter of {rtype}"
                )));
            }
            Err(e) => {
                return Err(IngestError::bad_request(format!(
                    "condition '{query}': {e}"
                )));
            }
        }
    }
    // a writer confined to one patient matches inside that compartment only: what lies
    // outside is neither found (its existence would show) nor written
    if let Some(patient) = grant.confinement(rtype) {
        filters.push(
            patient_compartment(rtype, &patient).map_err(|e| StoreError::Forbidden(e.message))?,
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
) -> Result<Option<FhirId>, IngestError> {
    let found = resolve_condition(tx, rtype, query, base, grant)?;
    match found.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(stored_id(id)?)),
        _ => Err(IngestError::Ambiguous(format!(
            "'{rtype}?{query}' matches {} resources",
            found.len()
        ))),
    }
}

/// Create (POST): a new server-assigned id, or with `If-None-Exist` the existing match.
pub fn create(
    tx: &mut Tx,
    rtype: &str,
    resource: Value,
    if_none_exist: Option<&str>,
    base: &str,
    writer: &Writer,
) -> Result<Written, IngestError> {
    if let Some(cond) = if_none_exist {
        let found = resolve_condition(tx, rtype, cond, base, &writer.grant)?;
        match found.as_slice() {
            [] => {}
            [id] => {
                let version =
                    versions::current(tx.conn, rtype, id)?.ok_or_else(|| StoreError::NotFound {
                        resource_type: rtype.into(),
                        id: id.clone(),
                    })?;
                // the existing match is returned: the caller must be allowed to read it
                writer
                    .grant
                    .check(Interaction::Read, rtype, id, || version.json())
                    .map_err(|d| StoreError::Forbidden(d.0))?;
                return Ok(Written {
                    version,
                    created: false,
                    noop: true,
                });
            }
            _ => {
                let msg = format!("If-None-Exist '{cond}' matches {} resources", found.len());
                return Err(IngestError::Ambiguous(msg));
            }
        }
    }
    create_with_id(tx, rtype, &FhirId::generate(), resource, writer)
}

/// Create under a fresh id already chosen (transactions pick ids before writing).
pub fn create_with_id(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    writer: &Writer,
) -> Result<Written, IngestError> {
    Ok(write::create(tx, rtype, id, resource, &writer.ctx)?)
}

/// Update (PUT), creating the resource when the id is new. The body's id must match the URL.
pub fn update(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    resource: Value,
    expected: Option<i64>,
    writer: &Writer,
) -> Result<Written, IngestError> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id.as_str() => {}
        Some(body_id) => {
            return Err(IngestError::bad_request(format!(
                "the body's id '{body_id}' does not match the URL's id '{id}'"
            )));
        }
        None => {
            return Err(IngestError::bad_request(
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
        &writer.ctx,
    )?)
}

/// How to apply a JSON Patch.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest {
    /// `If-Match`: the version the patch must apply to.
    pub expected: Option<i64>,
    /// `Prefer: handling=lenient`: unknown elements in the result are dropped, not refused.
    pub lenient: bool,
    /// The largest the result may be (the body limit).
    pub max_bytes: usize,
}

/// Patch (JSON Patch, JSON Merge Patch or FHIRPath Patch) the current version, within
/// `fhir::patch`'s bounds (the result
/// at most `max_bytes`); the result is validated like an update.
/// Without If-Match, the version read here is still required at write time: a concurrent
/// change makes this patch fail with 409 rather than be silently lost.
pub fn patch(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    operations: &patch::Patch,
    request: &PatchRequest,
    writer: &Writer,
) -> Result<(Written, Vec<crate::fhir::Issue>), IngestError> {
    let PatchRequest {
        expected,
        lenient,
        max_bytes,
    } = *request;
    let current =
        versions::current(tx.conn, rtype, id.as_str())?.ok_or_else(|| StoreError::NotFound {
            resource_type: rtype.into(),
            id: id.to_string(),
        })?;
    if current.deleted {
        return Err(current.gone().into());
    }
    let mut doc = current.json();
    operations.apply(&mut doc, max_bytes).map_err(|e| match e {
        PatchError::Malformed(m) => IngestError::bad_request(m),
        PatchError::TooLarge(m) => IngestError::TooLarge(m),
        PatchError::Failed(m) => IngestError::Unprocessable(m),
    })?;
    if doc.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(IngestError::Unprocessable(
            "a patch may not change or remove the resource id".into(),
        ));
    }
    let prepared = writer.accept(doc, rtype, lenient)?;
    let expected = Some(expected.unwrap_or(current.version_id));
    let w = write::put(
        tx,
        rtype,
        id,
        prepared.resource,
        Method::Patch,
        expected,
        &writer.ctx,
    )?;
    Ok((w, prepared.warnings))
}

pub fn delete(
    tx: &mut Tx,
    rtype: &str,
    id: &FhirId,
    expected: Option<i64>,
    writer: &Writer,
) -> Result<Written, IngestError> {
    Ok(write::delete(
        tx,
        rtype,
        id.as_str(),
        expected,
        &writer.ctx,
    )?)
}

/// An id the store returned (a match of a condition): valid, since only valid ids are stored.
fn stored_id(id: &str) -> Result<FhirId, IngestError> {
    FhirId::parse(id).map_err(|e| IngestError::Store(StoreError::Database(e.to_string())))
}
