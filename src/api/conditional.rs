//! Conditional update, patch and delete (`PUT|PATCH|DELETE [type]?search`): the search picks
//! the one resource to change, inside the same transaction as the change, so that nothing can
//! slip in between. No match: update creates, patch is 404, delete has nothing to do. Several
//! matches: 412, and nothing is changed.

use super::AppState;
use super::context::RequestContext;
use super::crud::{deleted, patch_body, resource_body, updated, write};
use super::error::ApiError;
use super::path::{TypeName, parse_id};
use super::render;
use crate::fhir::FhirId;
use crate::ingest::Accepted;
use crate::ingest::rest::{self, single_match};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// The search of a conditional request; an empty one would match everything.
fn condition(req: &HttpRequest) -> Result<String, ApiError> {
    let q = req.query_string();
    if q.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} [type] without search parameters: name the resource by id, or give a search that selects it",
            req.method()
        )));
    }
    Ok(q.to_string())
}

pub async fn update(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let query = condition(&req)?;
    let body = resource_body(&state, &req, payload).await?;
    let (base, lenient) = (state.base_url.clone(), ctx.lenient);
    let target = Some((rtype.clone(), String::new()));
    let (written, warnings) = write(&state, &ctx, "update", target, move |store, w| {
        let Accepted {
            mut resource,
            warnings,
        } = w.accept(body, &rtype, lenient)?;
        let written = store.write(|tx| {
            let body_id = resource.get("id").and_then(|v| v.as_str());
            let id = match (single_match(tx, &rtype, &query, &base, &w.grant)?, body_id) {
                (Some(found), Some(given)) if found.as_str() != given => {
                    return Err(ApiError::bad_request(format!(
                        "the search matches {rtype}/{found}, but the body's id is '{given}'"
                    )));
                }
                (Some(found), _) => found,
                (None, Some(given)) => parse_id(given)?,
                (None, None) => FhirId::generate(),
            };
            resource["id"] = json!(id.as_str());
            Ok(rest::update(tx, &rtype, &id, resource, None, w)?)
        })?;
        Ok((written, warnings))
    })
    .await?;
    updated(&state, &written, &ctx, &warnings)
}

pub async fn patch(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let query = condition(&req)?;
    let operations = patch_body(&state, &req, payload).await?;
    let base = state.base_url.clone();
    let request = rest::PatchRequest {
        expected: None,
        lenient: ctx.lenient,
        max_bytes: state.max_body_bytes,
    };
    let target = Some((rtype.clone(), String::new()));
    let (written, warnings) = write(&state, &ctx, "patch", target, move |store, w| {
        store.write(|tx| {
            let id = single_match(tx, &rtype, &query, &base, &w.grant)?.ok_or_else(|| {
                ApiError::not_found(format!("'{rtype}?{query}' matches no resource to patch"))
            })?;
            Ok(rest::patch(tx, &rtype, &id, &operations, &request, w)?)
        })
    })
    .await?;
    render::version(StatusCode::OK, &written.version, &ctx, None, &warnings)
}

pub async fn delete(
    state: web::Data<AppState>,
    TypeName(rtype): TypeName,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let query = condition(&req)?;
    let base = state.base_url.clone();
    let target = Some((rtype.clone(), String::new()));
    let (rt, q) = (rtype.clone(), query.clone());
    let found = write(&state, &ctx, "delete", target, move |store, w| {
        store.write(|tx| match single_match(tx, &rt, &q, &base, &w.grant)? {
            Some(id) => {
                let written = rest::delete(tx, &rt, &id, None, w)?;
                Ok::<_, ApiError>(Some((id, written)))
            }
            None => Ok(None),
        })
    })
    .await?;
    match found {
        Some((id, written)) => deleted(&written, &rtype, id.as_str(), &ctx),
        None => {
            let outcome = crate::fhir::operation_outcome(&[crate::fhir::Issue::information(
                "informational",
                format!("'{rtype}?{query}' matches no resource; nothing to delete"),
            )]);
            render::fhir(StatusCode::OK, &outcome, &ctx)
        }
    }
}
