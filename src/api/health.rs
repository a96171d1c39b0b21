//! `GET /health`: is the process up and can it reach its database.

use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let db = web::block(move || store.ping()).await;
    match db {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "status": "pass", "database": "ok", "cachedResources": state.store.cached_entries() })),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable().json(json!({ "status": "fail", "database": e.to_string() })),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({ "status": "fail", "error": e.to_string() })),
    }
}
