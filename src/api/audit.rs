//! `GET /fhir/AuditEvent` and `GET /fhir/AuditEvent/{id}`: the audit trail as FHIR, for a
//! token whose scope names AuditEvent (system or user level, never a patient's). The trail is
//! the server's own record: clients do not write it.

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::render;
use crate::fhir::bundle::{bundle, link};
use crate::ops::audit::{event::audit_event, search::Search};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

fn allowed(ctx: &RequestContext) -> Result<(), ApiError> {
    match ctx.grant.may_read_audit() {
        true => Ok(()),
        false => Err(ApiError::forbidden(
            "the audit trail is read only with a scope that names AuditEvent \
             (system/AuditEvent.rs or user/AuditEvent.rs), never with a patient's token",
        )),
    }
}

pub async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    allowed(&ctx)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("the query does not read: {e}")))?;
    let search = Search::parse(&params).map_err(ApiError::bad_request)?;
    let store = state.store.clone();
    let (rows, more) = web::block(move || store.read(|c| search.run(c))).await??;
    let base = &state.base_url;
    let self_url = format!("{base}/AuditEvent?{}", req.query_string());
    let mut links = vec![link("self", &self_url)];
    if let (true, Some(last)) = (more, rows.last()) {
        let rest: Vec<(String, String)> =
            params.into_iter().filter(|(k, _)| k != "_before").collect();
        let mut q = serde_urlencoded::to_string(&rest).unwrap_or_default();
        if !q.is_empty() {
            q.push('&');
        }
        links.push(link(
            "next",
            &format!("{base}/AuditEvent?{q}_before={}", last.id),
        ));
    }
    let entries = rows
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{base}/AuditEvent/{}", r.id),
                "resource": audit_event(r),
                "search": {"mode": "match"}
            })
        })
        .collect();
    render::fhir(
        StatusCode::OK,
        &bundle("searchset", None, links, entries),
        &ctx,
    )
}

pub async fn read(
    path: web::Path<String>,
    state: web::Data<AppState>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    allowed(&ctx)?;
    let id = path.into_inner();
    let store = state.store.clone();
    let wanted = id.clone();
    let row = web::block(move || store.read(|c| Search::one(c, &wanted))).await??;
    match row {
        Some(r) => render::fhir(StatusCode::OK, &audit_event(&r), &ctx),
        None => Err(ApiError::not_found(format!("AuditEvent/{id} is not known"))),
    }
}

/// Any other interaction on AuditEvent.
pub async fn refused() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::fhir::Issue::error(
            "not-supported",
            "the audit trail is written by the server alone: AuditEvents are read and searched, never written",
        ),
    ))
}
