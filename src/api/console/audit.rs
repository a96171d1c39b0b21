//! `GET /admin/audit?patient=...`: who touched a patient's record, and how (every read,
//! search, write, message and delivery the audit trail holds for them), newest first.

use super::page::{page, respond, unavailable, when};
use super::{AppState, audit, signed_in};
use crate::ops::audit::search::Search;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;

pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let patient = params
        .iter()
        .find(|(k, _)| k == "patient")
        .map(|(_, v)| v.trim().trim_start_matches("Patient/").to_string())
        .filter(|p| !p.is_empty());
    let form = html! {
        form.search method="get" action="/admin/audit" {
            label { "Patient id" input name="patient" value=(patient.clone().unwrap_or_default()); }
            button.go type="submit" { "Show" }
        }
    };
    let Some(patient) = patient else {
        let body = html! { h1 { "Audit trail" } (form) p.muted { "Give a Patient's id to see every access to their record." } };
        return respond(
            StatusCode::OK,
            page("Audit trail", "/admin/audit", user, body),
        );
    };
    let store = state.store.clone();
    let who = patient.clone();
    let rows = web::block(move || {
        let search = Search::parse(&[("patient".into(), who), ("_count".into(), "500".into())])
            .map_err(crate::store::StoreError::Database)?;
        store.read(|c| search.run(c))
    })
    .await;
    let Ok(Ok((rows, more))) = rows else {
        return unavailable(user);
    };
    audit(
        &state,
        &req,
        &session,
        "search-type",
        Some(patient.clone()),
        format!("audit trail: {} entries", rows.len()),
    );
    let body = html! {
        h1 { "Audit trail of Patient/" (patient) }
        (form)
        @if rows.is_empty() {
            p.muted { "No access to this patient's record is recorded." }
        } @else {
            table #audit {
                thead { tr { th { "When (UTC)" } th { "Kind" } th { "Action" } th { "Who" } th { "From" } th { "What" } th { "Outcome" } th { "Detail" } } }
                tbody {
                    @for r in rows.iter().map(|r| &r.entry) {
                        tr {
                            td { (when(r.recorded_at)) }
                            td { (r.kind) }
                            td { (r.action) }
                            td { (r.actor) }
                            td { (r.address.as_deref().unwrap_or("")) }
                            td {
                                @if let (Some(t), Some(id)) = (&r.resource_type, &r.resource_id) { (t) "/" (id) }
                                @if let Some(q) = &r.query { " " span.muted { (q) } }
                            }
                            td { span class={"badge " (r.outcome)} { (r.outcome) } }
                            td { (r.detail.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if more { p.muted { "The 500 latest are shown; `GET /fhir/AuditEvent?patient=...` pages through the rest." } }
        }
    };
    respond(
        StatusCode::OK,
        page("Audit trail", "/admin/audit", user, body),
    )
}
