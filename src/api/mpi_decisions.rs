//! `/admin/mpi/...` decisions: what a person says about identity, which the matcher never
//! overrules (`identity::decisions`).
//!
//! - `POST /admin/mpi/reviews/{id}` with `{"decision": "same" | "different"}`: decide a pair;
//! - `POST /admin/mpi/reviews/{id}/undo`: withdraw that decision (the pair is open again, and
//!   both records are linked as the matcher sees them now);
//! - `POST /admin/mpi/merges` with `{"from": ..., "into": ..., "reason": ...}`: merge two
//!   persons, each named by its id (its golden record's) or one of its records' Patient id;
//! - `GET /admin/mpi/merges?limit=50`: the merges, newest first, undone or not;
//! - `POST /admin/mpi/merges/{id}/undo`: unmerge.
//!
//! Who decided is the token's actor, kept in the link history of every record moved.

use super::AppState;
use super::admin::{ListQuery, carry_out, problem, refused};
use super::mpi_admin::{iso, side_by_side};
use crate::identity::decisions::{self, Merge, Refusal};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// The actor of the request's token: who decided.
pub(super) fn who(req: &HttpRequest) -> String {
    req.extensions()
        .get::<std::sync::Arc<crate::auth::Grant>>()
        .map(|g| g.actor())
        .unwrap_or_default()
}

/// A refusal as this API answers it.
fn refusal(r: Refusal) -> (StatusCode, String) {
    match r {
        Refusal::Missing(text) => (StatusCode::NOT_FOUND, text),
        Refusal::Conflict(text) => (StatusCode::CONFLICT, text),
    }
}

#[derive(Deserialize)]
struct Decision {
    decision: String,
}

/// The decision a body states, `same` or `different`; else why not (a 400). Read here, so that
/// a body that is no such JSON gets this API's answer, not the framework's.
pub(super) fn decision(body: &[u8]) -> Result<&'static str, String> {
    let Ok(body) = serde_json::from_slice::<Decision>(body) else {
        return Err(r#"the body must be {"decision": "same"} or {"decision": "different"}"#.into());
    };
    match body.decision.as_str() {
        "same" => Ok("same"),
        "different" => Ok("different"),
        other => Err(format!("decision '{other}': one of same, different")),
    }
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
    let same = match decision(&body) {
        Ok(d) => d == "same",
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    let (store, mpi, id, who) = (
        state.store.clone(),
        state.mpi.clone(),
        id.into_inner(),
        who(&req),
    );
    carry_out(
        move || {
            store.write_rows(|conn| match mpi.decide(conn, &id, same, &who)? {
                Some(r) => side_by_side(conn, r).map(Ok),
                None => Ok(Err((StatusCode::NOT_FOUND, format!("no review {id}")))),
            })
        },
        |r| r,
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
    let (store, mpi, id, who) = (
        state.store.clone(),
        state.mpi.clone(),
        id.into_inner(),
        who(&req),
    );
    carry_out(
        move || {
            store.write_rows(|conn| match mpi.undo(conn, &id, &who)? {
                Ok(r) => side_by_side(conn, r).map(Ok),
                Err(r) => Ok(Err(refusal(r))),
            })
        },
        |r| r,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeAsked {
    from: String,
    into: String,
    #[serde(default)]
    reason: String,
}

/// A merge as this API shows it.
fn shown(m: &Merge) -> Value {
    json!({
        "id": m.id,
        "from": m.from_person,
        "into": m.into_person,
        "patients": m.moved(),
        "reason": m.reason,
        "at": iso(m.at),
        "by": m.who,
        "undone": m.undone_at.map(iso),
        "undoneBy": m.undone_by,
    })
}

pub async fn merge(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let Ok(asked) = serde_json::from_slice::<MergeAsked>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            r#"the body must be {"from": <person or Patient id>, "into": <person or Patient id>, "reason": <text>}"#,
        );
    };
    let (store, mpi, who) = (state.store.clone(), state.mpi.clone(), who(&req));
    carry_out(
        move || {
            store.write_rows(|conn| {
                Ok(mpi
                    .merge(conn, (&asked.from, &asked.into), &asked.reason, &who)?
                    .map_err(refusal))
            })
        },
        |m| shown(&m),
    )
    .await
}

pub async fn merges(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let store = state.store.clone();
    carry_out(
        move || store.read(|conn| decisions::merges(conn, limit)).map(Ok),
        |list| json!({"merges": list.iter().map(shown).collect::<Vec<_>>()}),
    )
    .await
}

pub async fn unmerge(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, mpi, id, who) = (
        state.store.clone(),
        state.mpi.clone(),
        id.into_inner(),
        who(&req),
    );
    carry_out(
        move || store.write_rows(|conn| Ok(mpi.unmerge(conn, &id, &who)?.map_err(refusal))),
        |u| {
            let mut v = shown(&u.merge);
            v["restored"] = json!(u.restored);
            v["left"] = json!(u.left);
            v
        },
    )
    .await
}
