//! Conditional update, patch and delete (`PUT|PATCH|DELETE [type]?search`): the search picks
//! the one resource to change, inside the same transaction as the change, so that nothing can
//! slip in between. No match: update creates, patch is 404, delete has nothing to do. Several
//! matches: 412, and nothing is changed.

use super::AppState;
use super::context::RequestContext;
use super::crud::{audited, deleted, patch_body, resource_body, updated};
use super::error::ApiError;
use super::interaction::{self, Prepared, check_type, prepare, single_match};
use super::render;
use crate::fhir::FhirId;
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
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let query = condition(&req)?;
    let body = resource_body(&state, &req, payload).await?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let lenient = ctx.lenient;
    let base = state.base_url.clone();
    let result = web::block(move || {
        let Prepared {
            mut resource,
            warnings,
        } = prepare(body, &rt, lenient)?;
        let written = store.write(|tx| {
            let body_id = resource
                .get("id")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let id = match (single_match(tx, &rt, &query, &base, &wctx.grant)?, body_id) {
                (Some(found), Some(given)) if found.as_str() != given => {
                    return Err(ApiError::bad_request(format!(
                        "the search matches {rt}/{found}, but the body's id is '{given}'"
                    )));
                }
                (Some(found), _) => found,
                (None, Some(given)) => interaction::parse_id(&given)?,
                (None, None) => FhirId::generate(),
            };
            resource["id"] = json!(id.as_str());
            interaction::update(tx, &rt, &id, resource, None, &wctx)
        })?;
        Ok::<_, ApiError>((written, warnings))
    })
    .await?;
    let (written, warnings) = audited(&state, &ctx, "update", Some(&rtype), None, result)?;
    updated(&state, &written, &ctx, &warnings)
}

pub async fn patch(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let query = condition(&req)?;
    let ops = patch_body(&state, &req, payload).await?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let lenient = ctx.lenient;
    let base = state.base_url.clone();
    let max_bytes = state.max_body_bytes;
    let result = web::block(move || {
        store.write(|tx| {
            let id = single_match(tx, &rt, &query, &base, &wctx.grant)?.ok_or_else(|| {
                ApiError::not_found(format!("'{rt}?{query}' matches no resource to patch"))
            })?;
            let request = interaction::PatchRequest {
                operations: &ops,
                expected: None,
                lenient,
                max_bytes,
            };
            interaction::patch(tx, &rt, &id, &request, &wctx)
        })
    })
    .await?;
    let (written, warnings) = audited(&state, &ctx, "patch", Some(&rtype), None, result)?;
    render::version(StatusCode::OK, &written.version, &ctx, None, &warnings)
}

pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let rtype = path.into_inner();
    check_type(&rtype)?;
    let query = condition(&req)?;
    let wctx = ctx.write_context();
    let store = state.store.clone();
    let rt = rtype.clone();
    let q = query.clone();
    let base = state.base_url.clone();
    let result = web::block(move || {
        store.write(|tx| match single_match(tx, &rt, &q, &base, &wctx.grant)? {
            Some(id) => {
                let written = interaction::delete(tx, &rt, &id, None, &wctx)?;
                Ok::<_, ApiError>(Some((id, written)))
            }
            None => Ok(None),
        })
    })
    .await?;
    match audited(&state, &ctx, "delete", Some(&rtype), None, result)? {
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
