//! `/admin/routes` and `/admin/outbound`, for the integration team (docs/routing.md):
//!
//! - `GET /admin/routes`: the routes in force, with their version, who made them and when;
//! - `PUT /admin/routes`: new routes (the whole JSON): checked whole (422 with every problem
//!   found), recorded as a new version with the caller as its author, in force within a
//!   fraction of a second; the same routes again change nothing;
//! - `GET /admin/routes/history`, `GET /admin/routes/history/{version}`: change control;
//! - `GET /admin/outbound?target=&status=failed&limit=`: outbound messages, newest first
//!   (`status=failed` is the outbound exception queue); `GET /admin/outbound/{seq}`: one, with
//!   its text as last sent; `POST /admin/outbound/{seq}/replay`: a failed one back in its
//!   target's queue, sent next; `GET /admin/outbound/summary`: counts per target and status.
//!
//! Routes decide where patient data goes, and the queue holds it: a token that may read every
//! Patient is required.

use super::AppState;
use super::admin::{ListQuery, answer, carry_out, problem, refused};
use crate::routing::config::Routes;
use crate::routing::{queue, revisions};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The largest routes document accepted.
const MAX_ROUTES_BYTES: usize = 1024 * 1024;

pub async fn current(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    carry_out(
        move || {
            store.read(|c| {
                let history = revisions::history(c, 1)?;
                let routes = revisions::current(c)?.map(|(_, r)| r).unwrap_or_default();
                Ok(Ok((history.into_iter().next(), routes)))
            })
        },
        |(revision, routes)| json!({"revision": revision, "routes": routes}),
    )
    .await
}

pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let body = match super::body::read_limited(&req, payload, MAX_ROUTES_BYTES).await {
        Ok(b) => b,
        Err(e) => return problem(e.status, e.message),
    };
    let routes = match std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(Routes::parse)
    {
        Ok(r) => r,
        Err(why) => return problem(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    let actor = req
        .extensions()
        .get::<Arc<crate::auth::Grant>>()
        .map(|g| g.actor())
        .unwrap_or_default();
    let (store, truth) = (state.store.clone(), state.truth.clone());
    carry_out(
        move || {
            let revision = store.write_rows(|c| revisions::record(c, &routes, &actor))?;
            // in force here at once (the router sets it too, and in other processes)
            truth.set(&routes);
            Ok(Ok(revision))
        },
        |revision| json!({"revision": revision}),
    )
    .await
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
}

pub async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<HistoryQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    carry_out(
        move || store.read(|c| revisions::history(c, limit)).map(Ok),
        |revisions| json!({"revisions": revisions}),
    )
    .await
}

pub async fn at(
    state: web::Data<AppState>,
    req: HttpRequest,
    version: web::Path<i64>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, version) = (state.store.clone(), version.into_inner());
    answer(
        "no such version of the routes",
        move || store.read(|c| revisions::at(c, version)),
        |routes| json!({"version": version, "routes": routes}),
    )
    .await
}

#[derive(Deserialize)]
pub struct OutboundQuery {
    target: Option<String>,
    #[serde(flatten)]
    list: ListQuery,
}

pub async fn outbound(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<OutboundQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    let q = q.into_inner();
    let limit = q.list.limit.unwrap_or(100).clamp(1, 1000);
    carry_out(
        move || {
            store
                .read(|c| queue::list(c, q.target.as_deref(), q.list.status.as_deref(), limit))
                .map(Ok)
        },
        |messages| json!({"messages": messages}),
    )
    .await
}

pub async fn summary(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    carry_out(
        move || store.read(queue::counts).map(Ok),
        |counts| {
            let mut targets = serde_json::Map::new();
            for (target, status, n) in counts {
                let entry = targets.entry(target).or_insert_with(|| json!({}));
                entry[status] = json!(n);
            }
            json!({"targets": targets})
        },
    )
    .await
}

pub async fn message(
    state: web::Data<AppState>,
    req: HttpRequest,
    seq: web::Path<i64>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, seq) = (state.store.clone(), seq.into_inner());
    answer(
        "no such outbound message",
        move || store.read(|c| queue::get(c, seq)),
        |(m, text)| json!({"message": m, "text": text}),
    )
    .await
}

pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    seq: web::Path<i64>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, seq) = (state.store.clone(), seq.into_inner());
    carry_out(
        move || {
            Ok(match store.write_rows(|c| queue::replay(c, seq))? {
                None => Err((StatusCode::NOT_FOUND, "no such outbound message".into())),
                Some(Err(status)) => Err((
                    StatusCode::CONFLICT,
                    format!("message {seq} is {status}: only a failed message is replayed"),
                )),
                Some(Ok(())) => Ok(()),
            })
        },
        move |()| json!({"replayed": seq}),
    )
    .await
}
