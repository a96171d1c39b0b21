//! `/admin/mpi/...`: the master patient index's review queue and links, for the integration
//! team.
//!
//! - `GET /admin/mpi/reviews?status=open&limit=50`: the pairs the matcher is unsure about,
//!   newest first, each with both Patients side by side and the fields compared, and when
//!   they belong to two persons with other records, the merge that would join the persons;
//! - decisions on reviews and persons (`mpi_decisions`);
//! - `GET /admin/mpi/patients/{id}`: a Patient's link, the other records of its person, and
//!   the history of its links (`pending` while the linker has yet to link its latest version);
//! - `GET /admin/mpi`: the index's size and the linker's backlog.
//!
//! Like the HL7v2 archive, these hold patient data: a token that may read every Patient.

use super::AppState;
use super::admin::{ListQuery, answer, problem, refused};
use crate::identity::links::{self, Review};
use crate::store::DbConnection;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

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
                let all = links::reviews(conn, &status, limit)?;
                let shown: Result<Vec<Value>, _> =
                    all.into_iter().map(|r| side_by_side(conn, r)).collect();
                shown.map(Some)
            })
        },
        |list| json!({"reviews": list}),
    )
    .await
}

/// The reviews a list asks for: their status (open unless said) and how many at most; else
/// why not (a 400).
pub(super) fn listing(q: &ListQuery) -> Result<(String, i64), &'static str> {
    let status = q.status.clone().unwrap_or_else(|| "open".into());
    if !matches!(status.as_str(), "open" | "same" | "different") {
        return Err("status: one of open, same, different");
    }
    Ok((status, q.limit.unwrap_or(50).clamp(1, 500)))
}

/// A review with both Patients as they are now, their persons, and the fields compared.
pub(super) fn side_by_side(
    conn: &mut DbConnection,
    r: Review,
) -> Result<Value, crate::store::StoreError> {
    let (sa, sb) = (
        links::Side::of(conn, &r.patient_id)?,
        links::Side::of(conn, &r.other_id)?,
    );
    let record =
        |conn: &mut DbConnection, s: &links::Side| -> Result<Value, crate::store::StoreError> {
            let resource = crate::store::versions::current(conn, "Patient", &s.record)?
                .filter(|v| !v.deleted)
                .map(|v| v.json())
                .unwrap_or(Value::Null);
            Ok(json!({"id": s.record, "person": s.person, "resource": resource}))
        };
    let (a, b) = (record(conn, &sa)?, record(conn, &sb)?);
    let may_be_one = links::persons_may_be_one(&sa, &sb).map(
        |(from, into)| {
            json!({
                "persons": [{"id": into.person, "records": into.records},
                            {"id": from.person, "records": from.records}],
                "why": "the records belong to two persons with other records: deciding same moves this one record; if the persons are one, merge them",
                "merge": {
                    "method": "POST",
                    "url": "/admin/mpi/merges",
                    "body": {"from": from.record, "into": into.record, "reason": "the review's records are one person"}
                }
            })
        },
    );
    Ok(json!({
        "id": r.id,
        "status": r.status,
        "probability": r.probability,
        "grade": r.grade,
        "fields": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
        "created": iso(r.created_at),
        "decided": r.decided_at.map(iso),
        "decidedBy": r.decided_by,
        "patient": a,
        "other": b,
        "personsMayBeOne": may_be_one,
    }))
}

pub(super) fn iso(micros: i64) -> String {
    crate::fhir::resource::instant(micros)
}

pub async fn patient(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let (store, id) = (state.store.clone(), id.into_inner());
    answer(
        "no such Patient in the index",
        move || {
            store.read(|conn| {
                let Some(pending) = crate::identity::linker::is_pending(conn, &id)? else {
                    return Ok(None);
                };
                let Some(link) = links::link_of(conn, &id)? else {
                    // filed, not yet linked: the linker is on its way; linked with no row: the
                    // only record of its own person
                    return Ok(Some(match pending {
                        true => json!({"patient": id, "person": null, "pending": true}),
                        false => json!({"patient": id, "person": links::own_person(&id),
                                        "probability": 1.0, "grade": "certain", "rule": "new",
                                        "pending": false, "members": [id], "history": []}),
                    }));
                };
                let members = links::members(conn, &link.person_id)?;
                let history: Vec<Value> = links::history(conn, &id)?
                    .into_iter()
                    .map(|c| {
                        json!({"action": c.action, "person": c.person_id, "probability": c.probability,
                               "grade": c.grade, "rule": c.rule, "reason": c.reason,
                               "at": iso(c.at), "who": c.who})
                    })
                    .collect();
                Ok(Some(json!({
                    "patient": id,
                    "person": link.person_id,
                    "probability": link.probability,
                    "grade": link.grade,
                    "rule": link.rule,
                    "linked": iso(link.linked_at),
                    "decidedBy": link.decided_by,
                    "pending": pending,
                    "members": members,
                    "history": history,
                })))
            })
        },
        |v| v,
    )
    .await
}

/// The index's size and how far the linker is behind.
pub async fn status(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&req) {
        return r;
    }
    let store = state.store.clone();
    answer(
        "",
        move || {
            store.read(|conn| {
                let indexed = crate::identity::index::size(conn)?;
                let (pending, oldest) = crate::identity::linker::backlog(conn)?;
                let stale = crate::identity::golden::backlog(conn)?;
                let (providers, provider_golden, _) =
                    crate::identity::providers::tables::backlog(conn)?;
                let lag =
                    oldest.map(|at| (crate::fhir::resource::now_micros() - at).max(0) as f64 / 1e6);
                Ok(Some(json!({
                    "indexed": indexed,
                    "pending": pending,
                    "oldestPending": oldest.map(iso),
                    "lagSeconds": lag,
                    "goldenPending": stale,
                    // the provider registry's, linked by the same task (`/admin/providers`)
                    "providersPending": providers,
                    "providerGoldenPending": provider_golden,
                })))
            })
        },
        |v| v,
    )
    .await
}
