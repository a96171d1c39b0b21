//! `/admin/providers/...`: the provider registry's review queue and links
//! (`identity::providers`), for the integration team, as `/admin/mpi` is for Patients.
//!
//! - `GET /admin/providers`: the registry's backlog (records pending, golden records stale,
//!   reviews open);
//! - `GET /admin/providers/reviews?status=open&limit=50`: the pairs the rules are unsure
//!   about, newest first, both records side by side with the fields compared;
//! - `POST /admin/providers/reviews/{id}` with `{"decision": "same" | "different"}`, and
//!   `POST /admin/providers/reviews/{id}/undo`: decide a pair, withdraw the decision (both
//!   records are linked again as the rules, and the decisions, say now);
//! - `GET /admin/providers/{type}/{id}`: a record's link, the other records of its provider and
//!   the history of its links.
//!
//! The same token as `/admin/mpi` (one that may read every Patient): one team runs both.

use super::AppState;
use super::admin::{ListQuery, answer, carry_out, problem, refused};
use super::mpi_admin::{iso, listing};
use super::mpi_decisions::{decision, who};
use crate::identity::providers::record::KINDS;
use crate::identity::providers::tables::{self, Review};
use crate::store::{DbConnection, StoreError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

pub async fn status(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    answer(
        "",
        move || {
            let (pending, stale, open) = store.read(tables::backlog)?;
            Ok(Some(
                json!({"pending": pending, "goldenPending": stale, "openReviews": open}),
            ))
        },
        |v| v,
    )
    .await
}

pub async fn reviews(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (status, limit) = match listing(&q) {
        Ok(asked) => asked,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    let store = state.store.clone();
    answer(
        "",
        move || {
            store.read(|conn| {
                let all = tables::reviews(conn, &status, limit)?;
                let shown: Result<Vec<Value>, _> =
                    all.into_iter().map(|r| side_by_side(conn, r)).collect();
                shown.map(Some)
            })
        },
        |list| json!({"reviews": list}),
    )
    .await
}

/// A review with both records as they are now, their providers, and the fields compared.
fn side_by_side(conn: &mut DbConnection, r: Review) -> Result<Value, StoreError> {
    let rtype = r.resource_type.clone();
    let mut record = |id: &str| -> Result<Value, StoreError> {
        let resource = crate::store::versions::current(conn, &rtype, id)?
            .filter(|v| !v.deleted)
            .map(|v| v.json())
            .unwrap_or(Value::Null);
        let provider = tables::provider_of(conn, &rtype, id)?;
        Ok(json!({"id": id, "provider": provider, "resource": resource}))
    };
    let (a, b) = (record(&r.resource_id)?, record(&r.other_id)?);
    let verdict = serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null);
    Ok(json!({
        "id": r.id,
        "resourceType": r.resource_type,
        "status": r.status,
        "grade": r.grade,
        "rule": verdict["rule"],
        "fields": verdict["fields"],
        "created": iso(r.created_at),
        "decided": r.decided_at.map(iso),
        "decidedBy": r.decided_by,
        "record": a,
        "other": b,
    }))
}

pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let status = match decision(&body) {
        Ok(d) => d,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    let (store, id, who) = (state.store.clone(), id.into_inner(), who(&req));
    carry_out(
        move || {
            store.write_rows(|conn| {
                let Some(r) = tables::review_by_id(conn, &id)? else {
                    return Ok(Err((StatusCode::NOT_FOUND, format!("no review {id}"))));
                };
                if r.status != "open" {
                    return Ok(Err((
                        StatusCode::CONFLICT,
                        format!("review {id} is decided ({}): undo it first", r.status),
                    )));
                }
                tables::decide_review(conn, &id, status, &who)?;
                relink(conn, &r)?;
                let decided = tables::review_by_id(conn, &id)?.unwrap_or(r);
                side_by_side(conn, decided).map(Ok)
            })
        },
        |v| v,
    )
    .await
}

pub async fn undo(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, id) = (state.store.clone(), id.into_inner());
    carry_out(
        move || {
            store.write_rows(|conn| {
                let Some(r) = tables::review_by_id(conn, &id)? else {
                    return Ok(Err((StatusCode::NOT_FOUND, format!("no review {id}"))));
                };
                if r.status == "open" {
                    return Ok(Err((
                        StatusCode::CONFLICT,
                        format!("review {id} is open: there is no decision to undo"),
                    )));
                }
                tables::reopen_review(conn, &id)?;
                relink(conn, &r)?;
                let open = tables::review_by_id(conn, &id)?.unwrap_or(r);
                side_by_side(conn, open).map(Ok)
            })
        },
        |v| v,
    )
    .await
}

/// Both records of a review back to the linker, which links them as the decision says.
fn relink(conn: &mut DbConnection, r: &Review) -> Result<(), StoreError> {
    tables::requeue(conn, &r.resource_type, &r.resource_id)?;
    tables::requeue(conn, &r.resource_type, &r.other_id)
}

pub async fn record(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (rtype, id) = path.into_inner();
    if !KINDS.contains(&rtype.as_str()) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("'{rtype}': the registry holds {}", KINDS.join(", ")),
        );
    }
    let store = state.store.clone();
    answer(
        "no such record in the registry",
        move || {
            store.read(|conn| {
                let Some(fields) = tables::filed(conn, &rtype, std::slice::from_ref(&id))?.pop()
                else {
                    return Ok(None);
                };
                let link = tables::link_of(conn, &rtype, &id)?;
                let provider = tables::provider_of(conn, &rtype, &id)?;
                let members: Vec<String> = tables::links_to(conn, &rtype, &provider)?
                    .into_iter()
                    .map(|l| l.resource_id)
                    .filter(|m| *m != id)
                    .collect();
                let history = tables::changes(conn, &rtype, &id)?;
                let pending = tables::is_pending(conn, &rtype, &id)?;
                Ok(Some(json!({
                    "resourceType": rtype,
                    "id": id,
                    "provider": provider,
                    "pending": pending,
                    "fields": fields.1,
                    "link": link,
                    "others": members,
                    "history": history,
                })))
            })
        },
        |v| v,
    )
    .await
}
