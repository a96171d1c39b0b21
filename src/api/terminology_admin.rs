//! `/admin/terminology/...`, for the integration team:
//!
//! - `GET /admin/terminology/unmapped?source=APP@FACILITY&limit=100`: the local codes that
//!   came in from feeds and that no normalisation map translates, most met first, each with
//!   its system, sending system, element, display, count, first and last seen, and an example
//!   (the resource type and the correlation id of a write that carried it). A code leaves the
//!   list as soon as a map translates it.
//!
//! The codes come from patients' records: a token that may read every Patient.

use super::AppState;
use super::admin::{problem, refused};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

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
