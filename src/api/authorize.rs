//! The pages a user sees during an app's authorization (SMART standalone and EHR launch): sign in at
//! `GET /auth/authorize`, approve the scopes, and be sent back to the app with a code. Plain
//! HTML forms, no scripts; the request travels in hidden fields and, once the user has signed
//! in, in a ticket the server signed (`auth::authorize::Ticket`).

use super::AppState;
use super::error::ApiError;
use super::path::parse_id;
use crate::auth::Interaction;
use crate::auth::authorize::{self, AuthRequest, AuthorizeError, Ticket};
use crate::auth::launch::{self, LaunchContext};
use crate::auth::users;
use crate::fhir::search::filter::parse_filter;
use crate::store::search::{Scope, SearchSpec, search};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

/// `GET /auth/authorize`: check the request, then ask the user to sign in.
pub async fn start(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    match authorize::check(&state.authority, &params).await {
        Ok(r) => page(
            StatusCode::OK,
            &login_page(&params, None),
            Some(&r.redirect_uri),
        ),
        Err(e) => refused(e),
    }
}

/// `POST /auth/authorize`: the login form. A wrong password shows the form again.
pub async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    super::body::Form(body): super::body::Form,
) -> HttpResponse {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let request = match authorize::check(&state.authority, &params).await {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let get = |n: &str| {
        params
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (username, password) = (get("username"), get("password"));
    // guessing is counted per user and per address, and gets nowhere once either is locked:
    // the password is not even checked then
    let (account, addr) = (format!("user:{username}"), super::smart::address_key(&req));
    let throttle = &state.authority.throttle;
    if let Err(locked) = throttle.admit(&[&account, &addr]) {
        let msg = format!(
            "Too many failed sign-ins. Try again in {} seconds.",
            locked.seconds()
        );
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            &login_page(&params, Some(&msg)),
            Some(&request.redirect_uri),
        );
        if let Ok(v) = locked.seconds().to_string().parse() {
            r.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        return r;
    }
    let store = state.store.clone();
    let name = username.clone();
    let user = web::block(move || store.read(|c| users::sign_in(c, &name, &password)))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    match &user {
        Some(_) => {
            throttle.succeeded(&account);
            let mut e = crate::store::audit::Entry::now(
                crate::store::audit::kind::LOGIN,
                "login",
                &format!("user {username}"),
                &crate::store::new_correlation_id(),
            );
            e.address = Some(addr[5..].to_string());
            state.store.audit(e);
        }
        None => {
            let who = format!("user {username} from {}", &addr[5..]);
            state
                .authority
                .failed_attempt(
                    &[&account, &addr],
                    "login",
                    &who,
                    "wrong username or password",
                )
                .await
        }
    }
    match user {
        Some(user) => {
            let ticket = authorize::ticket(&state.authority, &user, request.clone());
            let picker = match needs_picker(&request, &user.fhir_user) {
                true => Some(picker(&state, "").await),
                false => None,
            };
            page(
                StatusCode::OK,
                &consent_page(&request, &user.fhir_user, &ticket, picker.as_ref()),
                Some(&request.redirect_uri),
            )
        }
        None => page(
            StatusCode::UNAUTHORIZED,
            &login_page(&params, Some("Wrong username or password.")),
            Some(&request.redirect_uri),
        ),
    }
}

/// `POST /auth/consent`: the user approved (a code goes back to the app) or denied.
pub async fn consent(
    state: web::Data<AppState>,
    super::body::Form(body): super::body::Form,
) -> HttpResponse {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let audience = authorize::ticket_audience(&state.authority);
    let mut ticket: Ticket = match state
        .authority
        .verify_for(get("ticket").unwrap_or(""), &audience)
    {
        Ok(t) => t,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                &message_page(&format!(
                    "This sign-in is no longer valid ({e}). Start again from the app."
                )),
                None,
            );
        }
    };
    let raw_ticket = get("ticket").unwrap_or("");
    if needs_picker(&ticket.request, &ticket.fhir_user) {
        // a practitioner's standalone launch/patient: the user picks the patient here
        let chosen = match get("patient").filter(|p| !p.is_empty()) {
            Some(id) if get("decision") == Some("approve") => {
                patient_exists(&state, id).await.then(|| id.to_string())
            }
            _ => None,
        };
        match chosen {
            Some(id) => {
                let mut launch = ticket.request.launch.clone().unwrap_or_default();
                launch.patient = Some(id);
                ticket.request.launch = Some(launch);
            }
            None if get("decision") == Some("deny") => {}
            None => {
                let list = picker(&state, get("q").unwrap_or("")).await;
                return page(
                    StatusCode::OK,
                    &consent_page(&ticket.request, &ticket.fhir_user, raw_ticket, Some(&list)),
                    Some(&ticket.request.redirect_uri),
                );
            }
        }
    }
    let r = &ticket.request;
    if get("decision") != Some("approve") {
        return redirect(
            &r.redirect_uri,
            &[("error", "access_denied"), ("state", &r.state)],
        );
    }
    let store = state.store.clone();
    let t = ticket.clone();
    match web::block(move || store.write_rows(|c| authorize::issue_code(c, &t))).await {
        Ok(Ok(code)) => redirect(&r.redirect_uri, &[("code", &code), ("state", &r.state)]),
        _ => redirect(
            &r.redirect_uri,
            &[("error", "server_error"), ("state", &r.state)],
        ),
    }
}

/// `POST /auth/launch`: an EHR asks for a launch handle for the context it opens an app in
/// (`{"patient": ..., "encounter": ..., "intent": ..., "need_patient_banner": ...,
/// "smart_style_url": ...}`) and passes it to the app as `launch`. Only a caller that may read
/// every resource (an EHR's `system/` or `user/` token) may mint one.
pub async fn launch(
    state: web::Data<AppState>,
    req: HttpRequest,
    super::body::Form(body): super::body::Form,
) -> Result<HttpResponse, ApiError> {
    let grant = if state.insecure_dev {
        state.open_grant.clone()
    } else {
        let token = super::bearer_token(req.headers()).ok_or_else(ApiError::token_required)?;
        state
            .authority
            .authenticate(token)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?
    };
    if !grant.reaches_everything(Interaction::Read) {
        return Err(ApiError::forbidden(
            "minting a launch needs a token that may read every resource (an EHR's system/*.rs or user/*.rs)",
        ));
    }
    let context: LaunchContext = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the launch context is not valid JSON: {e}")))?;
    for id in [&context.patient, &context.encounter].into_iter().flatten() {
        parse_id(id)?;
    }
    let handle = launch::mint(&state.authority, &grant.subject, context);
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({ "launch": handle })))
}

/// A patient to pick: id, and a label (name and birth date).
struct Picker {
    query: String,
    patients: Vec<(String, String)>,
}

/// Whether the user picks the patient: `launch/patient` was asked, no EHR launch named one,
/// and the user is not a patient signing in for themselves.
fn needs_picker(request: &AuthRequest, fhir_user: &str) -> bool {
    request
        .scope
        .split_ascii_whitespace()
        .any(|s| s == "launch/patient")
        && request
            .launch
            .as_ref()
            .and_then(|l| l.patient.as_ref())
            .is_none()
        && !fhir_user.starts_with("Patient/")
}

/// Up to 50 patients whose name matches `query` (any patient when it is empty).
async fn picker(state: &AppState, query: &str) -> Picker {
    let store = state.store.clone();
    let q = query.trim().to_string();
    let found = web::block(move || {
        let filters = match q.is_empty() {
            true => Vec::new(),
            false => parse_filter("Patient", "name", &q)
                .ok()
                .flatten()
                .into_iter()
                .collect(),
        };
        let scope = [("Patient".to_string(), filters)];
        let spec = SearchSpec {
            scope: Scope::Types(&scope),
            sort: &[],
            count: 50,
            cursor: None,
            total: false,
        };
        store.read(|c| {
            search(c, &spec).map_err(|e| crate::store::StoreError::Database(e.to_string()))
        })
    })
    .await;
    let patients = match found {
        Ok(Ok(page)) => page
            .versions
            .iter()
            .map(|v| (v.id.clone(), label(&v.json())))
            .collect(),
        _ => Vec::new(),
    };
    Picker {
        query: query.to_string(),
        patients,
    }
}

fn label(patient: &serde_json::Value) -> String {
    let name = &patient["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let full = format!(
        "{} {}",
        given.join(" "),
        name["family"].as_str().unwrap_or("")
    )
    .trim()
    .to_string();
    match patient["birthDate"].as_str() {
        Some(b) => format!("{full} (born {b})"),
        None => full,
    }
}

async fn patient_exists(state: &AppState, id: &str) -> bool {
    let store = state.store.clone();
    let id = id.to_string();
    matches!(
        web::block(move || store.current("Patient", &id)).await,
        Ok(Ok(_))
    )
}

fn refused(e: AuthorizeError) -> HttpResponse {
    match e {
        AuthorizeError::Page(msg) => page(StatusCode::BAD_REQUEST, &message_page(&msg), None),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut q = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                q.push(("state", s.as_str()));
            }
            redirect(&redirect_uri, &q)
        }
    }
}

fn redirect(uri: &str, query: &[(&str, &str)]) -> HttpResponse {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string(query).unwrap_or_default();
    HttpResponse::Found()
        .insert_header(("location", format!("{uri}{sep}{q}")))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

/// A page of the sign-in flow. `app` is the verified redirect URI the page's forms end at:
/// browsers apply `form-action` to the redirect a form's answer makes too, so the app's origin
/// must be allowed beside this one, or the code never reaches the app.
fn page(status: StatusCode, body: &str, app: Option<&str>) -> HttpResponse {
    // an http(s) app by its origin; a native app's private scheme (`com.example.app:`) by scheme
    let app_origin = app
        .and_then(|u| reqwest::Url::parse(u).ok())
        .map(|u| match u.origin() {
            o if o.is_tuple() => format!(" {}", o.ascii_serialization()),
            _ => format!(" {}:", u.scheme()),
        })
        .unwrap_or_default();
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        // no framing (clickjacking), no scripts, forms post to this origin (and end at the app)
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{app_origin}; frame-ancestors 'none'"
            ),
        ))
        .body(body.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn layout(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} - emrsync</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}label{{display:block;margin:.6em 0}}\
         li{{margin:.2em 0}}.error{{color:#a00}}</style></head><body><h1>{t}</h1>{inner}</body></html>",
        t = escape(title)
    )
}

fn login_page(params: &[(String, String)], error: Option<&str>) -> String {
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k != "username" && k != "password")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(
        "Sign in",
        &format!(
            "{error}<form method=\"post\" action=\"authorize\">{hidden}\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>"
        ),
    )
}

fn consent_page(
    request: &AuthRequest,
    fhir_user: &str,
    ticket: &str,
    picker: Option<&Picker>,
) -> String {
    let scopes: String = request
        .scope
        .split_ascii_whitespace()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let ticket = escape(ticket);
    let (search, choices) = match picker {
        None => (String::new(), String::new()),
        Some(p) => {
            let search = format!(
                "<form method=\"post\" action=\"consent\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
                 <label>Find a patient by name <input name=\"q\" value=\"{}\"></label>\
                 <button type=\"submit\" name=\"decision\" value=\"search\">Search</button></form>",
                escape(&p.query)
            );
            let list: String = p
                .patients
                .iter()
                .map(|(id, label)| {
                    format!(
                        "<li><label><input type=\"radio\" name=\"patient\" value=\"{}\" required> {} <small>Patient/{}</small></label></li>",
                        escape(id),
                        escape(label),
                        escape(id)
                    )
                })
                .collect();
            let list = match list.is_empty() {
                true => "<p>No patient matches.</p>".to_string(),
                false => {
                    format!("<fieldset><legend>Open the app for</legend><ul>{list}</ul></fieldset>")
                }
            };
            (search, list)
        }
    };
    layout(
        "Allow access?",
        &format!(
            "<p>Signed in as <strong>{user}</strong>. The application <strong>{client}</strong> asks for:</p>\
             <ul>{scopes}</ul>{search}\
             <form method=\"post\" action=\"consent\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">{choices}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></form>",
            user = escape(fhir_user),
            client = escape(&request.client_id),
        ),
    )
}

fn message_page(msg: &str) -> String {
    layout(
        "Cannot continue",
        &format!("<p class=\"error\">{}</p>", escape(msg)),
    )
}
