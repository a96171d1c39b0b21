//! `/admin/alerts`: the alerts raised (`GET /admin/alerts?status=firing|resolved&limit=`) and
//! the rules that raise them (`GET` and `PUT /admin/alerts/rules`, each version kept with who
//! set it). A token that may read every Patient (alerts name clients and what they read).

use super::AppState;
use super::admin::{ListQuery, carry_out, problem, refused};
use crate::ops::alerts::{self, rules::Rules};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// A rules document is small: 200 rules at most.
const MAX_RULES_BYTES: usize = 256 * 1024;

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let (status, limit) = (q.status.clone(), q.limit.unwrap_or(100).clamp(1, 1000));
    carry_out(
        move || {
            Ok(Ok(
                store.read(|c| alerts::list(c, status.as_deref(), limit))?
            ))
        },
        |alerts| json!({"alerts": alerts}),
    )
    .await
}

pub async fn rules(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    carry_out(
        move || Ok(Ok(store.read(alerts::current_rules)?)),
        |(version, rules)| json!({"version": version, "rules": rules.rules}),
    )
    .await
}

pub async fn put_rules(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let body = match super::body::read_limited(&req, payload, MAX_RULES_BYTES).await {
        Ok(b) => b,
        Err(e) => return problem(e.status, e.message),
    };
    let rules = match std::str::from_utf8(&body)
        .map_err(|e| vec![e.to_string()])
        .and_then(Rules::parse)
    {
        Ok(r) => r,
        Err(problems) => {
            return HttpResponse::UnprocessableEntity()
                .json(json!({"error": "the rules were not kept", "problems": problems}));
        }
    };
    let actor = super::mpi_decisions::who(&req);
    let store = state.store.clone();
    carry_out(
        move || {
            Ok(Ok(
                store.write_rows(|c| alerts::set_rules(c, &rules, &actor))?
            ))
        },
        |version| json!({"version": version}),
    )
    .await
}
