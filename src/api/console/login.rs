//! Signing in to the dashboard and out of it. The password is checked as at
//! `/auth/authorize` (argon2, the same lockout after failed attempts per user and address),
//! and only a user with the `admin` role gets a session.

use super::page::{page, respond, see_other, unavailable};
use super::{AppState, COOKIE, SESSION_SECS, forged, genuine_form, signed_in};
use crate::auth::sessions::{self, ADMIN};
use crate::auth::users;
use crate::store::audit::{Entry, kind};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};

/// Where to go after signing in: a dashboard page, never another site.
fn next_of(fields: &[(String, String)]) -> String {
    let next = fields
        .iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.as_str());
    match next {
        Some(n)
            if (n == "/admin" || n.starts_with("/admin/") || n.starts_with("/admin?"))
                && !n.contains("//")
                && !n.contains('\\') =>
        {
            n.to_string()
        }
        _ => "/admin".into(),
    }
}

fn login_page(next: &str, error: Option<&str>) -> Markup {
    let body = html! {
        form.login method="post" action="/admin/login" {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            input type="hidden" name="next" value=(next);
            label { "Username" input name="username" autocomplete="username" required autofocus; }
            label { "Password" input name="password" type="password" autocomplete="current-password" required; }
            button.go type="submit" { "Sign in" }
        }
    };
    page("Sign in", "", None, body)
}

/// `GET /admin/login`.
pub async fn form(req: HttpRequest) -> HttpResponse {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    respond(StatusCode::OK, login_page(&next_of(&fields), None))
}

/// `POST /admin/login`: a session for an admin; the form again, saying why, for anyone else.
pub async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    crate::api::body::Form(body): crate::api::body::Form,
) -> HttpResponse {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |n: &str| {
        let v = fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        v.unwrap_or_default()
    };
    let (username, password, next) = (get("username"), get("password"), next_of(&fields));
    let (account, addr) = (
        format!("user:{username}"),
        crate::api::smart::address_key(&req),
    );
    let throttle = &state.authority.throttle;
    if let Err(locked) = throttle.admit(&[&account, &addr]) {
        let msg = format!(
            "Too many failed sign-ins. Try again in {} seconds.",
            locked.seconds()
        );
        return respond(StatusCode::TOO_MANY_REQUESTS, login_page(&next, Some(&msg)));
    }
    let store = state.store.clone();
    let name = username.clone();
    let user = web::block(move || store.read(|c| users::sign_in(c, &name, &password))).await;
    let user = match user {
        Ok(Ok(u)) => u,
        _ => {
            return unavailable(None);
        }
    };
    let ip = addr.trim_start_matches("addr:").to_string();
    let Some(user) = user else {
        let who = format!("user {username} from {ip}");
        state
            .authority
            .failed_attempt(
                &[&account, &addr],
                "login",
                &who,
                "wrong username or password",
            )
            .await;
        let page = login_page(&next, Some("Wrong username or password."));
        return respond(StatusCode::UNAUTHORIZED, page);
    };
    throttle.succeeded(&account);
    let mut e = Entry::now(
        kind::LOGIN,
        "login",
        &format!("user {username} (dashboard)"),
        &crate::store::new_correlation_id(),
    );
    e.address = Some(ip);
    if !sessions::has_role(&user.roles, ADMIN) {
        e.outcome = "failure".into();
        e.detail = Some("not an admin: the dashboard refused".into());
        state.store.audit(e);
        let page = login_page(
            &next,
            Some("This account may not use the dashboard (it needs the admin role)."),
        );
        return respond(StatusCode::FORBIDDEN, page);
    }
    state.store.audit(e);
    let store = state.store.clone();
    let opened =
        web::block(move || store.write_rows(|c| sessions::open(c, &username, SESSION_SECS))).await;
    let Ok(Ok((token, _))) = opened else {
        return unavailable(None);
    };
    let cookie = Cookie::build(COOKIE, token)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(actix_web::cookie::time::Duration::seconds(SESSION_SECS))
        .finish();
    let mut r = see_other(&next);
    let _ = r.add_cookie(&cookie);
    r
}

/// `POST /admin/logout`: the session ends here and in the browser.
pub async fn sign_out(
    state: web::Data<AppState>,
    req: HttpRequest,
    crate::api::body::Form(body): crate::api::body::Form,
) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(_) => return see_other("/admin/login"),
    };
    if genuine_form(&session, &body).is_none() {
        return forged(None);
    }
    if let Some(token) = req.cookie(COOKIE).map(|c| c.value().to_string()) {
        let store = state.store.clone();
        let _ = web::block(move || store.write_rows(|c| sessions::close(c, &token))).await;
    }
    let mut r = see_other("/admin/login");
    let mut gone = Cookie::build(COOKIE, "").path("/admin").finish();
    gone.make_removal();
    let _ = r.add_cookie(&gone);
    r
}
