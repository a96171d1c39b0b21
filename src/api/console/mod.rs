//! The dashboard under `/admin`, for people with the `admin` role who sign in with the
//! server's own login: the feeds against their service levels, the queues, the exception
//! queue with each message's raw text, an editor and Replay, the transaction log, a
//! patient's audit trail, and the vendor sources' exception queues with Replay. Server-rendered HTML (`maud`), forms and links only: it works
//! without JavaScript. The JSON API under `/admin/...` (bearer tokens) is beside it.
//!
//! Every page that shows patient data is audited, as the FHIR API's reads are.

mod audit;
mod charts;
mod login;
mod messages;
mod overview;
mod page;
mod vendors;

use super::AppState;
use crate::auth::sessions::{self, Session};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

/// The cookie of a dashboard session (its path is `/admin`).
const COOKIE: &str = "emrsync_admin";

/// How long a session lasts from sign-in.
const SESSION_SECS: i64 = 8 * 3600;

/// The dashboard's routes: registered before the `/admin` JSON scope, whose paths they do not
/// share.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(overview::show))
        .route("/admin/", web::get().to(overview::show))
        .service(
            web::resource("/admin/login")
                // as at /auth: a flood of guesses from one address costs a counter, no more
                .wrap(actix_web::middleware::from_fn(super::rate::per_address))
                .route(web::get().to(login::form))
                .route(web::post().to(login::sign_in)),
        )
        .route("/admin/logout", web::post().to(login::sign_out))
        .route("/admin/messages", web::get().to(messages::search))
        .route("/admin/messages/{id}", web::get().to(messages::show))
        .route(
            "/admin/messages/{id}/replay",
            web::post().to(messages::replay),
        );
    cfg.route("/admin/audit", web::get().to(audit::show))
        .route("/admin/vendors", web::get().to(vendors::show))
        .route(
            "/admin/vendors/{source}/replay",
            web::post().to(vendors::replay),
        );
}

/// The signed-in admin of this request, or the response to give instead: to the login page
/// (GET), or 401 (a form posted without a session).
async fn signed_in(state: &AppState, req: &HttpRequest) -> Result<Session, HttpResponse> {
    let away = || match req.method() == actix_web::http::Method::GET {
        true => {
            let next = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/admin");
            let to = format!(
                "/admin/login?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            page::see_other(&to)
        }
        false => page::trouble(
            StatusCode::UNAUTHORIZED,
            None,
            "Sign in again: the session has ended.",
        ),
    };
    let Some(token) = req.cookie(COOKIE).map(|c| c.value().to_string()) else {
        return Err(away());
    };
    let store = state.store.clone();
    match web::block(move || store.read(|c| sessions::find(c, &token))).await {
        Ok(Ok(Some(s))) => Ok(s),
        Ok(Ok(None)) => Err(away()),
        _ => Err(page::unavailable(None)),
    }
}

/// A posted form's fields, when it carries the session's anti-forgery token (else `forged`).
fn genuine_form(session: &Session, body: &[u8]) -> Option<Vec<(String, String)>> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    genuine(session, &fields).then_some(fields)
}

/// The answer to a form without the session's anti-forgery token (shown to `user`).
fn forged(user: Option<(&str, &str)>) -> HttpResponse {
    page::trouble(
        StatusCode::FORBIDDEN,
        user,
        "This form did not come from this dashboard.",
    )
}

/// Whether a posted form carries the session's anti-forgery token.
fn genuine(session: &Session, fields: &[(String, String)]) -> bool {
    let given = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_bytes());
    given.is_some_and(|g| {
        g.len() == session.csrf.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(g, session.csrf.as_bytes()).is_ok()
    })
}

/// Record one access of the dashboard in the audit trail.
fn audit(
    state: &AppState,
    req: &HttpRequest,
    session: &Session,
    action: &str,
    patient: Option<String>,
    detail: String,
) {
    let mut e = crate::store::audit::Entry::now(
        crate::store::audit::kind::REST,
        action,
        &format!("user {} (dashboard)", session.username),
        &crate::store::new_correlation_id(),
    );
    e.patient = patient.map(|p| match p.starts_with("Patient/") {
        true => p,
        false => format!("Patient/{p}"),
    });
    e.address = req.peer_addr().map(|a| a.ip().to_string());
    e.query = Some(req.uri().to_string().chars().take(512).collect());
    e.detail = Some(detail);
    state.store.audit(e);
}
