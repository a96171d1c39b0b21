//! `/admin/vendors`: each vendor source's exception queue (the records its maps or the store
//! refused, each whole, with the element, the JSONPath at fault and why) and Replay, which maps
//! them again with the definition this server runs: after a fix to the map, or once the record
//! another refers to has arrived. What goes in is written like any page; the rest keeps
//! waiting with this try's reason.

use super::page::{page, respond, see_other, trouble, unavailable, when};
use super::{AppState, audit, forged, genuine_form, signed_in};
use crate::adapters::vendor::page::{self as pages, Open};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use std::collections::{BTreeSet, HashMap};

/// Records shown per source (the oldest first; the CLI lists them all).
const SHOWN: i64 = 200;

/// `GET /admin/vendors[?replayed=SOURCE&applied=N&still=M]`.
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    let loaded: BTreeSet<String> = state.sources.keys().cloned().collect();
    let store = state.store.clone();
    let names = loaded.clone();
    let found = web::block(move || {
        store.read(|c| {
            let mut all = names;
            all.extend(pages::sources_waiting(c)?);
            all.into_iter()
                .map(|s| Ok((pages::open(c, &s, SHOWN)?, s)))
                .collect::<Result<Vec<_>, _>>()
        })
    })
    .await;
    let Ok(Ok(queues)) = found else {
        return unavailable(user);
    };
    let waiting: usize = queues.iter().map(|(q, _)| q.len()).sum();
    audit(
        &state,
        &req,
        &session,
        "search-type",
        None,
        format!("vendor exception queues: {waiting} records"),
    );
    let body = html! {
        h1 { "Vendor sources" }
        @if let Some(source) = query.get("replayed") {
            p.banner {
                "Replayed " (source) ": " (query.get("applied").map(String::as_str).unwrap_or("0"))
                " record(s) in, " (query.get("still").map(String::as_str).unwrap_or("0")) " still waiting."
            }
        }
        @if queues.is_empty() {
            p.muted { "This server runs no vendor source, and no record waits." }
        }
        @for (open, source) in &queues {
            (queue(source, open, loaded.contains(source), session.csrf.as_str()))
        }
    };
    respond(
        StatusCode::OK,
        page("Vendor sources", "/admin/vendors", user, body),
    )
}

fn queue(source: &str, open: &[Open], loaded: bool, csrf: &str) -> Markup {
    html! {
        section.vendor data-source=(source) {
            h2 { (source) }
            @if !loaded {
                p.muted { "Not run by this server: replay it where its definition is loaded, or with "
                    code { "emrsync source exceptions --replay" } "." }
            }
            @if open.is_empty() {
                p.muted { "Nothing waits." }
            } @else {
                @if loaded {
                    form method="post" action={"/admin/vendors/" (source) "/replay"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button.go type="submit" { "Replay " (open.len()) " record(s)" }
                    }
                }
                table.exceptions {
                    thead { tr {
                        th { "Since" } th { "Record type" } th { "Key" } th { "Element" }
                        th { "Path" } th { "Why" } th { "Record" }
                    } }
                    tbody {
                        @for o in open {
                            tr data-seq=(o.seq) {
                                td { (when(o.created_at)) }
                                td { (o.record_type) }
                                td { (o.vendor_key.as_deref().unwrap_or("")) }
                                td { code { (o.element) } }
                                td { code { (o.path) } }
                                td.error { (o.reason) }
                                td { details { summary { "show" } pre.raw { (o.record) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /admin/vendors/{source}/replay`: map the source's waiting records again.
pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    crate::api::body::Form(body): crate::api::body::Form,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    if genuine_form(&session, &body).is_none() {
        return forged(user);
    }
    let name = name.into_inner();
    let Some(source) = state.sources.get(&name).cloned() else {
        return trouble(
            StatusCode::NOT_FOUND,
            user,
            "This server runs no vendor source of that name.",
        );
    };
    let ingest = state.ingest.clone();
    let replayed = web::block(move || pages::replay_source(&ingest, &source)).await;
    let Ok(Ok(r)) = replayed else {
        return unavailable(user);
    };
    audit(
        &state,
        &req,
        &session,
        "replay",
        None,
        format!(
            "vendor source {name} replayed: {} in, {} still waiting",
            r.applied, r.still
        ),
    );
    see_other(&format!(
        "/admin/vendors?replayed={name}&applied={}&still={}",
        r.applied, r.still
    ))
}
