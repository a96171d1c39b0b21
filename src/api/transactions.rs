//! `GET /admin/transactions`: the transaction log (`ops::transactions`) for the integration
//! team's tools: `?mrn=&control-id=&correlation-id=&patient=&since=&until=&direction=in|out
//! &disposition=&limit=`. Patient data: a token that may read every Patient.

use super::AppState;
use super::admin::{carry_out, refused};
use crate::ops::transactions::{self, Params};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<Params>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let params = params.into_inner();
    carry_out(
        move || {
            let q = match params.query() {
                Ok(q) => q,
                Err(why) => return Ok(Err((StatusCode::BAD_REQUEST, why))),
            };
            Ok(Ok(store.read(|c| transactions::search(c, &q))?))
        },
        |entries| json!({"entries": entries}),
    )
    .await
}
