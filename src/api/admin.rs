//! `/admin/hl7v2/...`: the HL7v2 archive and exception queue for the integration team.
//!
//! - `GET /admin/hl7v2/messages?status=failed&limit=100`: messages, newest first, without
//!   their raw text;
//! - `GET /admin/hl7v2/messages/{id}`: one message with its raw text;
//! - `POST /admin/hl7v2/messages/{id}/replay`: run it again once the cause is fixed; a body
//!   (the message text, corrected) replaces the stored text;
//! - `POST /admin/hl7v2/messages/{id}/release`: apply a message a source-of-truth rule held
//!   for review, on the caller's word (409 unless it is held).
//!
//! Raw messages carry patient data: a token that may read every Patient is required (a
//! `system/` or `user/` token not confined to one patient).

use super::AppState;
use crate::adapters::hl7v2::queue;
use crate::auth::{Grant, Interaction, Reach};
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn problem(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": text.into()}))
}

/// `Some(response)` when the caller's token (verified by `require_auth`, which guards the
/// whole `/admin` scope) may not read every Patient.
pub(super) fn refused(req: &HttpRequest) -> Option<HttpResponse> {
    let Some(grant) = req.extensions().get::<Arc<Grant>>().cloned() else {
        return Some(problem(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    match grant.reach(Interaction::Read, "Patient") {
        Ok(Reach::All) => None,
        _ => Some(problem(
            StatusCode::FORBIDDEN,
            "this holds patient data: it needs a token that may read every Patient",
        )),
    }
}

/// Run `work` on a blocking thread and answer with what `ok` makes of its result, 404 (saying
/// `missing`) for `None`, 503 when the database failed.
pub(super) async fn answer<T: Send + 'static>(
    missing: &str,
    work: impl FnOnce() -> Result<Option<T>, StoreError> + Send + 'static,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> HttpResponse {
    let missing = missing.to_string();
    carry_out(
        move || Ok(work()?.ok_or((StatusCode::NOT_FOUND, missing))),
        ok,
    )
    .await
}

/// Run `work` on a blocking thread and answer with what `ok` makes of its result, or with the
/// status and words of its refusal, 503 when the database failed.
pub(super) async fn carry_out<T: Send + 'static>(
    work: impl FnOnce() -> Result<Result<T, (StatusCode, String)>, StoreError> + Send + 'static,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> HttpResponse {
    match web::block(work).await {
        Ok(Ok(Ok(v))) => HttpResponse::Ok().json(ok(v)),
        Ok(Ok(Err((status, text)))) => problem(status, text),
        Ok(Err(e)) => {
            // the same general words as the FHIR API's, the database's own in the log
            let api = crate::api::error::ApiError::from(e);
            let text = api.issues.first().map(|i| i.diagnostics.clone());
            problem(api.status, text.unwrap_or_default())
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ),
    }
}

/// `?status=...&limit=...` of a list (HL7v2 messages, MPI reviews).
#[derive(Deserialize)]
pub struct ListQuery {
    pub(super) status: Option<String>,
    pub(super) limit: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let st = q.status.clone();
    answer(
        "no such message",
        move || {
            store
                .read(|c| queue::list(c, st.as_deref(), limit))
                .map(Some)
        },
        |entries| json!({"messages": entries}),
    )
    .await
}

pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let id = id.into_inner();
    answer(
        "no such message",
        move || queue::get(&store, &id),
        |(entry, raw)| json!({"message": entry, "raw": raw}),
    )
    .await
}

pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let body = match super::body::read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return problem(e.status, e.message),
    };
    let corrected = (!body.is_empty()).then(|| crate::adapters::hl7v2::message::decode(&body));
    let inbound = state.hl7v2.clone();
    let id = id.into_inner();
    answer(
        "no such message",
        move || queue::replay(&inbound, &id, corrected),
        outcome,
    )
    .await
}

/// Apply a held message on the caller's word (its Provenance names them as verifier).
pub async fn release(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let reviewer = super::mpi_decisions::who(&req);
    let inbound = state.hl7v2.clone();
    let id = id.into_inner();
    answer(
        "no such message",
        move || queue::release(&inbound, &id, reviewer),
        outcome,
    )
    .await
}

/// What became of a message run again, as these endpoints answer it.
fn outcome(o: crate::adapters::hl7v2::ingest::Outcome) -> serde_json::Value {
    json!({
        "code": o.code.as_str(),
        "correlationId": o.correlation_id,
        "ack": o.ack,
        "error": o.problem.map(|p| p.text),
    })
}
