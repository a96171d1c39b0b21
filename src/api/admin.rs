//! `/admin/hl7v2/...`: the HL7v2 archive and exception queue for the integration team.
//!
//! - `GET /admin/hl7v2/messages?status=failed&limit=100`: messages, newest first, without
//!   their raw text;
//! - `GET /admin/hl7v2/messages/{id}`: one message with its raw text;
//! - `POST /admin/hl7v2/messages/{id}/replay`: run it again once the cause is fixed; a body
//!   (the message text, corrected) replaces the stored text.
//!
//! Raw messages carry patient data: a token that may read every Patient is required (a
//! `system/` or `user/` token not confined to one patient).

use super::AppState;
use crate::adapters::hl7v2::queue;
use crate::auth::{Interaction, Reach};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

fn problem(status: actix_web::http::StatusCode, text: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": text.into()}))
}

/// `Some(response)` when the caller may not use the admin API.
async fn refused(state: &AppState, req: &HttpRequest) -> Option<HttpResponse> {
    use actix_web::http::StatusCode;
    if state.insecure_dev {
        return None;
    }
    let Some(token) = super::bearer_token(req.headers()) else {
        return Some(problem(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    let grant = match state.authority.authenticate(token).await {
        Ok(g) => g,
        Err(e) => return Some(problem(StatusCode::UNAUTHORIZED, e.to_string())),
    };
    match grant.reach(Interaction::Read, "Patient") {
        Ok(Reach::All) => None,
        _ => Some(problem(
            StatusCode::FORBIDDEN,
            "the HL7v2 archive holds patient data: it needs a token that may read every Patient",
        )),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let st = q.status.clone();
    match web::block(move || store.read(|c| queue::list(c, st.as_deref(), limit))).await {
        Ok(Ok(entries)) => HttpResponse::Ok().json(json!({"messages": entries})),
        Ok(Err(e)) => problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        ),
        Err(e) => problem(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let store = state.store.clone();
    let id = id.into_inner();
    match web::block(move || store.read(|c| queue::get(c, &id))).await {
        Ok(Ok(Some((entry, raw)))) => {
            HttpResponse::Ok().json(json!({"message": entry, "raw": raw}))
        }
        Ok(Ok(None)) => problem(actix_web::http::StatusCode::NOT_FOUND, "no such message"),
        Ok(Err(e)) => problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        ),
        Err(e) => problem(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let corrected = (!body.is_empty()).then(|| crate::adapters::hl7v2::message::decode(&body));
    let store = state.store.clone();
    let id = id.into_inner();
    match web::block(move || queue::replay(&store, &id, corrected)).await {
        Ok(Ok(Some(o))) => HttpResponse::Ok().json(json!({
            "code": o.code.as_str(),
            "correlationId": o.correlation_id,
            "ack": o.ack,
            "error": o.problem.map(|p| p.text),
        })),
        Ok(Ok(None)) => problem(actix_web::http::StatusCode::NOT_FOUND, "no such message"),
        Ok(Err(e)) => problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        ),
        Err(e) => problem(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}
