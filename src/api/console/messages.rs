//! `/admin/messages`: the transaction log searched (by MRN, control id, correlation id,
//! patient, time, direction, disposition), the exception queue as one of its searches, and a
//! received message shown whole: its raw text with the error's place marked, an editor, and
//! Replay.

use super::page::{page, respond, see_other, trouble, unavailable, when, when_instant};
use super::{AppState, audit, forged, genuine_form, signed_in};
use crate::adapters::hl7v2::queue;
use crate::ops::transactions::{self, Entry, Params};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};

/// `GET /admin/messages?...`: the search form and what it found.
pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<Params>,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    let params = params.into_inner();
    let q = match params.query() {
        Ok(q) => q,
        Err(why) => {
            let body = html! { h1 { "Messages" } (form(&params)) p.error { (why) } };
            return respond(
                StatusCode::BAD_REQUEST,
                page("Messages", "/admin/messages", user, body),
            );
        }
    };
    let store = state.store.clone();
    let query = q.clone();
    let found = web::block(move || store.read(|c| transactions::search(c, &query))).await;
    let Ok(Ok(entries)) = found else {
        return unavailable(user);
    };
    let patient = q.patient.clone();
    audit(
        &state,
        &req,
        &session,
        "search-type",
        patient,
        format!("transaction log: {} entries", entries.len()),
    );
    let body = html! {
        h1 { "Messages" }
        (form(&params))
        p {
            a href="/admin/messages?direction=in&disposition=failed" { "Exception queue" } " · "
            a href="/admin/messages?direction=in&disposition=held" { "Held for review" } " · "
            a href="/admin/messages?direction=out&disposition=failed" { "Refused by targets" } " · "
            a href="/admin/messages" { "Latest" }
        }
        (table(&entries))
    };
    respond(
        StatusCode::OK,
        page("Messages", "/admin/messages", user, body),
    )
}

fn form(p: &Params) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let chosen = |o: &Option<String>, x: &str| o.as_deref() == Some(x);
    html! {
        form.search method="get" action="/admin/messages" {
            label { "MRN" input name="mrn" value=(v(&p.mrn)); }
            label { "Control id" input name="control-id" value=(v(&p.control_id)); }
            label { "Correlation id" input name="correlation-id" value=(v(&p.correlation_id)) size="38"; }
            label { "Patient id" input name="patient" value=(v(&p.patient)); }
            label { "Since" input name="since" value=(v(&p.since)) placeholder="2026-12-06"; }
            label { "Until" input name="until" value=(v(&p.until)); }
            label { "Direction" select name="direction" {
                option value="" { "both" }
                option value="in" selected[chosen(&p.direction, "in")] { "received" }
                option value="out" selected[chosen(&p.direction, "out")] { "sent" }
            } }
            label { "Disposition" select name="disposition" {
                option value="" { "any" }
                @for d in ["applied", "failed", "rejected", "held", "replayed", "pending", "sent", "skipped", "delivered", "waiting", "failing"] {
                    option value=(d) selected[chosen(&p.disposition, d)] { (d) }
                }
            } }
            button.go type="submit" { "Search" }
        }
    }
}

fn table(entries: &[Entry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p.muted { "Nothing found." }
        } @else {
            table #messages {
                thead { tr {
                    th { "When" } th { "" } th { "From → to" } th { "What" } th { "Control id" }
                    th { "Disposition" } th { "MRN" } th { "Patient" } th { "Error" }
                } }
                tbody {
                    @for e in entries {
                        tr data-disposition=(e.disposition) {
                            td { (when_instant(&e.at)) }
                            td { (if e.direction == "in" { "⇦ in" } else { "⇨ out" }) }
                            td { (e.source) " → " (e.target) }
                            td {
                                @if e.channel == "hl7v2" {
                                    a href={"/admin/messages/" (e.id)} { (e.what) }
                                } @else { (e.what) }
                            }
                            td { (e.control_id.as_deref().unwrap_or("")) }
                            td { span class={"badge " (e.disposition)} { (e.disposition) }
                                 @if let Some(a) = &e.ack { " " span.muted { (a) } } }
                            td { (e.mrn.as_deref().unwrap_or("")) }
                            td { @if let Some(p) = &e.patient { a href={"/admin/audit?patient=" (p)} { (p) } } }
                            td { (e.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /admin/messages/{id}`: one received message, whole.
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    let id = id.into_inner();
    let store = state.store.clone();
    let found = web::block(move || -> Result<_, crate::store::StoreError> {
        let Some((entry, raw)) = queue::get(&store, &id)? else {
            return Ok(None);
        };
        // where it went: everything sent under its correlation id
        let q = transactions::Query {
            correlation_id: Some(entry.correlation_id.clone()),
            direction: Some("out".into()),
            limit: 200,
            ..Default::default()
        };
        let onward = store.read(|c| transactions::search(c, &q))?;
        Ok(Some((entry, raw, onward)))
    })
    .await;
    let (entry, raw, onward) = match found {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return trouble(StatusCode::NOT_FOUND, user, "There is no such message."),
        _ => {
            return unavailable(user);
        }
    };
    audit(
        &state,
        &req,
        &session,
        "read",
        entry.patient.clone(),
        format!("HL7v2 message {}", entry.id),
    );
    let replayed = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| {
            q.iter()
                .find(|(k, _)| k == "replayed")
                .map(|(_, v)| v.clone())
        });
    let location = entry.error_location.as_deref().unwrap_or("");
    let failed = matches!(entry.status.as_str(), "failed" | "rejected" | "held");
    let body = html! {
        h1 { "Message " (entry.message_type) "^" (entry.trigger_event) " " span class={"badge " (entry.status)} #status { (entry.status) } }
        @if let Some(code) = replayed {
            @if code == "AA" { p.note role="status" { "Replayed: the message was applied (AA)." } }
            @else { p.error role="alert" { "Replayed, and refused again (" (code) "): see the error below." } }
        }
        table {
            tr { th { "From" } td { (entry.sending_application) "@" (entry.sending_facility) } }
            tr { th { "Control id" } td { (entry.control_id) } }
            tr { th { "Received" } td { (when(entry.received_at)) " UTC" } }
            tr { th { "Processed" } td { (when(entry.processed_at)) " UTC, attempt " (entry.attempts) } }
            tr { th { "ACK" } td { (entry.ack_code) } }
            tr { th { "MRN" } td { (entry.mrn.as_deref().unwrap_or("")) } }
            tr { th { "Patient" } td { @if let Some(p) = &entry.patient { a href={"/admin/audit?patient=" (p)} { "Patient/" (p) } } } }
            tr { th { "Correlation id" } td { a href={"/admin/messages?correlation-id=" (entry.correlation_id)} { (entry.correlation_id) } } }
        }
        @if let Some(error) = &entry.error {
            div.error #error {
                strong { @if location.is_empty() { "Error" } @else { "Error at " (location) } }
                @if let Some(c) = &entry.error_code { " (code " (c) ")" }
                ": " (error)
            }
        }
        h2 { "Raw message" }
        pre.raw #raw { (highlighted(&raw, location)) }
        @if failed {
            h2 { "Correct and replay" }
            form method="post" action={"/admin/messages/" (entry.id) "/replay"} {
                input type="hidden" name="csrf" value=(session.csrf);
                textarea name="message" spellcheck="false" { (raw.replace('\r', "\n")) }
                p { button.go type="submit" #replay { "Replay" } " "
                    span.muted { "Runs the message as written here through the maps again; an accepted correction closes this one." } }
            }
        }
        h2 { "Where it went" }
        (table(&onward))
    };
    respond(
        StatusCode::OK,
        page("Message", "/admin/messages", user, body),
    )
}

/// The raw message, one segment a line, the field `location` names (`PID-7`, `OBX[3]-5`,
/// `MSH`) marked.
fn highlighted(raw: &str, location: &str) -> Markup {
    let at = Place::of(location);
    let sep = raw.get(3..4).unwrap_or("|");
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    let lines: Vec<&str> = raw.split(['\r', '\n']).filter(|l| !l.is_empty()).collect();
    html! {
        @for line in lines {
            @let id = line.get(..3).unwrap_or(line);
            @let n = { let c = seen.entry(id).or_insert(0); *c += 1; *c };
            @match at.as_ref().filter(|p| p.segment == id && p.occurrence == n) {
                None => { (line) "\n" },
                Some(Place { field: None, .. }) => { mark { (line) } "\n" },
                Some(Place { field: Some(f), .. }) => {
                    @let parts: Vec<&str> = line.split(sep).collect();
                    // MSH-1 is the separator itself: MSH's fields sit one place later
                    @let i = if id == "MSH" { f.saturating_sub(1) } else { *f };
                    @for (k, part) in parts.iter().enumerate() {
                        @if k > 0 { (sep) }
                        @if k == i { mark { (part) } } @else { (part) }
                    }
                    @if i >= parts.len() { (sep) mark { " " } }
                    "\n"
                },
            }
        }
    }
}

/// Where in a message an error is: a segment, its occurrence, maybe a field.
#[derive(Debug, PartialEq)]
struct Place {
    segment: String,
    occurrence: usize,
    field: Option<usize>,
}

impl Place {
    fn of(location: &str) -> Option<Place> {
        let (seg, field) = match location.split_once('-') {
            Some((s, f)) => (s, Some(f.split(['.', '^']).next()?.parse().ok()?)),
            None => (location, None),
        };
        let (segment, occurrence) = match seg.split_once('[') {
            Some((s, n)) => (s, n.trim_end_matches(']').parse().ok()?),
            None => (seg, 1),
        };
        (segment.len() == 3).then(|| Place {
            segment: segment.to_string(),
            occurrence,
            field,
        })
    }
}

/// `POST /admin/messages/{id}/replay`: run the message (as corrected in the form) again, then
/// show it.
pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    // a message may be long (an ORU with a document): the API's body limit, not a form's
    let body = match crate::api::body::read_limited(&req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return trouble(e.status, user, &e.message),
    };
    let Some(fields) = genuine_form(&session, &body) else {
        return forged(user);
    };
    let corrected = fields
        .iter()
        .find(|(k, _)| k == "message")
        .map(|(_, v)| v.trim().replace("\r\n", "\r").replace('\n', "\r"))
        .filter(|m| !m.is_empty());
    let inbound = state.hl7v2.clone();
    let id = id.into_inner();
    let run_id = id.clone();
    let outcome = web::block(move || queue::replay(&inbound, &run_id, corrected)).await;
    let code = match outcome {
        Ok(Ok(Some(o))) => o.code.as_str().to_string(),
        Ok(Ok(None)) => return trouble(StatusCode::NOT_FOUND, user, "There is no such message."),
        _ => {
            return unavailable(user);
        }
    };
    audit(
        &state,
        &req,
        &session,
        "replay",
        None,
        format!("HL7v2 message {id} replayed: {code}"),
    );
    see_other(&format!("/admin/messages/{id}?replayed={code}"))
}

#[cfg(test)]
mod tests {
    use super::Place;

    #[test]
    fn an_error_location_names_a_segment_its_occurrence_and_field() {
        let p = |s: &str| Place::of(s);
        assert_eq!(
            p("PID-7"),
            Some(Place {
                segment: "PID".into(),
                occurrence: 1,
                field: Some(7)
            })
        );
        assert_eq!(
            p("OBX[3]-5"),
            Some(Place {
                segment: "OBX".into(),
                occurrence: 3,
                field: Some(5)
            })
        );
        assert_eq!(
            p("MSH"),
            Some(Place {
                segment: "MSH".into(),
                occurrence: 1,
                field: None
            })
        );
        assert_eq!(
            p("PID-3.1"),
            Some(Place {
                segment: "PID".into(),
                occurrence: 1,
                field: Some(3)
            })
        );
        assert_eq!(p(""), None);
        assert_eq!(p("nonsense-x"), None);
    }

    #[test]
    fn the_field_in_error_is_marked_and_the_rest_escaped() {
        let raw = "MSH|^~\\&|LAB|H|||20260101||ORU^R01|1|P|2.5\rPID|1||42^^^H^MR||Doe^<b>||2026-13-45\rOBX|1|NM|x||1\rOBX|2|NM|y||oops";
        let html = super::highlighted(raw, "OBX[2]-5").into_string();
        assert!(html.contains("OBX|2|NM|y||<mark>oops</mark>"), "{html}");
        assert!(html.contains("Doe^&lt;b&gt;"), "{html}");
        let html = super::highlighted(raw, "MSH-9").into_string();
        assert!(html.contains("<mark>ORU^R01</mark>"), "{html}");
        let html = super::highlighted(raw, "PID-7").into_string();
        assert!(html.contains("<mark>2026-13-45</mark>"), "{html}");
    }
}
