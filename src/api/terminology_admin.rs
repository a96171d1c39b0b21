//! `/admin/terminology/...`, for the integration team:
//!
//! - `GET /admin/terminology/unmapped?source=APP@FACILITY&limit=100`: the local codes that
//!   came in from feeds and that no normalisation map translates, most met first, each with
//!   its system, sending system, element, display, count, first and last seen, and an example
//!   (the resource type and the correlation id of a write that carried it). A code leaves the
//!   list as soon as a map translates it.
//!
//! - `POST /admin/terminology/renormalise?limit=1000`: the stored resources carrying the
//!   worklist's codes that a map now translates, written again with the standard coding
//!   added (`terminology::renormalise`); at most `limit` resources a call, each code saying
//!   how many were updated, which failed and why, and whether more are left.
//!
//! The codes come from patients' records: a token that may read every Patient (and, to
//! re-normalise, write the resources concerned).

use super::AppState;
use super::admin::{problem, refused};
use crate::auth::Grant;
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub struct UnmappedQuery {
    source: Option<String>,
    limit: Option<i64>,
}

pub async fn unmapped(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<UnmappedQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let terminology = state.terminology.clone();
    let (source, limit) = (q.source.clone(), q.limit.unwrap_or(100).clamp(1, 1000));
    let listed = web::block(move || {
        crate::terminology::normalise::worklist(&terminology, source.as_deref(), limit)
    })
    .await;
    match listed {
        Ok(Ok(codes)) => HttpResponse::Ok().json(json!({"codes": codes})),
        Ok(Err(e)) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct RenormaliseQuery {
    limit: Option<usize>,
}

pub async fn renormalise(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<RenormaliseQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let Some(grant) = req.extensions().get::<Arc<Grant>>().cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let (ingest, terminology) = (state.ingest.clone(), state.terminology.clone());
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let done = web::block(move || {
        crate::terminology::renormalise::renormalise(&ingest, &terminology, grant, limit)
    })
    .await;
    match done {
        Ok(Ok(codes)) => {
            let updated: usize = codes.iter().map(|c| c.updated).sum();
            let more = codes.iter().any(|c| c.more);
            HttpResponse::Ok().json(json!({"updated": updated, "more": more, "codes": codes}))
        }
        Ok(Err(e)) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
