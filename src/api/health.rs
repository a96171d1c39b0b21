//! `GET /health`: is the process up and can it reach its database. `GET /ready`: may it be
//! sent traffic (the database reachable, its migrations all applied, every background task
//! running). `GET /metrics`: the Prometheus page (`ops::metrics`); it carries counts, names of
//! targets and subscription ids, never patient data.

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

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let db = web::block(move || store.ping().and_then(|()| store.pending_migrations())).await;
    let (database, migrations) = match db {
        Ok(Ok(0)) => ("ok".to_string(), "ok".to_string()),
        Ok(Ok(n)) => ("ok".into(), format!("{n} pending")),
        Ok(Err(e)) => (e.to_string(), "unknown".into()),
        Err(e) => (e.to_string(), "unknown".into()),
    };
    let tasks = state.tasks.all();
    let stopped: Vec<_> = tasks
        .iter()
        .filter_map(|(name, how)| how.as_ref().map(|h| json!({"task": name, "stopped": h})))
        .collect();
    let pass = database == "ok" && migrations == "ok" && stopped.is_empty();
    let body = json!({
        "status": if pass { "pass" } else { "fail" },
        "database": database,
        "migrations": migrations,
        "tasks": tasks.len(),
        "stoppedTasks": stopped,
    });
    match pass {
        true => HttpResponse::Ok().json(body),
        false => HttpResponse::ServiceUnavailable().json(body),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    match web::block(move || crate::ops::metrics::render(&store)).await {
        Ok(page) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(page),
        Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}
