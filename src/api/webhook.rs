//! `POST /adapters/<source>/webhook`: records a vendor source pushes, signed with the secret
//! its definition names (`adapters::vendor::webhook`). No token: the signature is the proof.
//! 200 with what was applied; 401 for a delivery unsigned or signed wrong, 409 for one too old
//! or taken before, 400 for one that is not what the definition says, 404 for no such source.

use super::AppState;
use super::error::ApiError;
use crate::adapters::vendor::page;
use crate::adapters::vendor::webhook::Refusal;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let Some(source) = state.sources.get(name.as_str()).cloned() else {
        return ApiError::not_found(format!("no vendor source {name}")).error_response();
    };
    let Some(receiver) = &source.receiver else {
        return ApiError::not_found(format!("the vendor source {name} takes no webhook"))
            .error_response();
    };
    let body = match super::body::read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(e.status, crate::fhir::Issue::error("too-long", e.message))
                .error_response();
        }
    };
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (ts, sig) = (
        header(&receiver.webhook.timestamp_header),
        header(&receiver.webhook.signature_header),
    );
    let now = crate::fhir::resource::now_micros() / 1_000_000;
    let verified = match receiver.verify(ts.as_deref(), sig.as_deref(), &body, now) {
        Ok(v) => v,
        Err(r) => {
            tracing::warn!(source = %name, address = ?req.peer_addr(), why = %r, "a webhook delivery was refused");
            return refused(r);
        }
    };
    let ingest = state.ingest.clone();
    let taken = web::block(move || {
        let receiver = source.receiver.as_ref().expect("checked above");
        page::in_context(&ingest.store, source.zone, |cx| {
            receiver.take(&ingest, &source, cx, (&verified, &body))
        })
        .map_err(|e| Refusal::Store(e.to_string()))
        .and_then(|r| r)
    })
    .await;
    match taken {
        Ok(Ok(t)) => {
            let (accepted, refused) = t
                .applied
                .map(|a| (a.accepted, a.refused))
                .unwrap_or_default();
            HttpResponse::Ok().json(json!({"event": t.event, "accepted": accepted,
                "refused": refused}))
        }
        Ok(Err(r)) => refused(r),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::fhir::Issue::error("exception", e.to_string()),
        )
        .error_response(),
    }
}

fn refused(r: Refusal) -> HttpResponse {
    let (status, code) = match &r {
        Refusal::Unsigned(_) => (StatusCode::UNAUTHORIZED, "security"),
        Refusal::Replayed(_) => (StatusCode::CONFLICT, "conflict"),
        Refusal::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        Refusal::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
    };
    ApiError::new(status, crate::fhir::Issue::error(code, r.to_string())).error_response()
}
