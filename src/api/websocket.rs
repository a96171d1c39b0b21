//! The websocket channel's two doors: `Subscription/[id]/$get-ws-binding-token` (through the
//! FHIR API, with the caller's access token) and the socket itself (`/ws/subscriptions`,
//! outside it: a browser cannot send a bearer header on a websocket, so the binding token
//! sent in the first message is the credential).

use super::AppState;
use super::context::RequestContext;
use super::error::ApiError;
use super::path::parse_id;
use super::render;
use crate::auth::Interaction;
use crate::fhir::resource::instant;
use crate::subscriptions::registry;
use crate::subscriptions::websocket::{Binding, binding_audience, binding_token};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message;
use serde_json::json;
use std::time::Duration;

/// Where subscribers open their sockets, from the server's public base URL.
pub fn socket_url(base_url: &str) -> String {
    let origin = crate::auth::issuer_for(base_url);
    let origin = origin.trim_end_matches("/auth");
    let origin = origin
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            origin
                .strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| origin.to_string());
    format!("{origin}/ws/subscriptions")
}

/// `GET|POST [base]/Subscription/[id]/$get-ws-binding-token`.
pub async fn binding(
    state: web::Data<AppState>,
    path: web::Path<String>,
    ctx: RequestContext,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    parse_id(&id)?;
    ctx.grant.reach(Interaction::Read, "Subscription")?;
    let store = state.store.clone();
    let sid = id.clone();
    let version = web::block(move || store.current("Subscription", &sid)).await??;
    ctx.grant
        .check(Interaction::Read, "Subscription", &id, || version.json())?;
    let store = state.store.clone();
    let sid = id.clone();
    let sub = web::block(move || store.read(|c| registry::get(c, &sid))).await??;
    if sub.as_ref().map(|s| s.channel.as_str()) != Some("websocket") {
        return Err(ApiError::bad_request(format!(
            "Subscription/{id} does not use the websocket channel"
        )));
    }
    let (token, exp) = binding_token(&state.authority, &id);
    let p = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": instant(exp * 1_000_000)},
            {"name": "subscription", "valueString": format!("{}/Subscription/{id}", state.base_url)},
            {"name": "websocket-url", "valueUrl": socket_url(&state.base_url)}
        ]
    });
    render::fhir(StatusCode::OK, &p, &ctx)
}

/// `GET /ws/subscriptions`: a subscriber's socket. It binds with `bind-with-token <token>`,
/// may bind several subscriptions, and is pinged every 30 seconds.
pub async fn socket(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        let mut bound: Vec<(String, u64)> = Vec::new();
        loop {
            tokio::select! {
                msg = stream.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        let Some(token) = text.strip_prefix("bind-with-token ") else {
                            let _ = session.text(json!({"error": "send bind-with-token <token>"}).to_string()).await;
                            continue;
                        };
                        let audience = binding_audience(&state.authority);
                        match state.authority.verify_for::<Binding>(token.trim(), &audience) {
                            Ok(b) => {
                                let n = state.sockets.bind(&b.sub, session.clone());
                                bound.push((b.sub.clone(), n));
                                // the handshake goes out on this socket, then what is queued
                                let store = state.store.clone();
                                let id = b.sub.clone();
                                let _ = web::block(move || store.write_rows(|c| registry::rebind(c, &id))).await;
                                state.sockets.wake.notify_one();
                            }
                            Err(e) => {
                                let _ = session.text(json!({"error": format!("the binding token is not valid: {e}")}).to_string()).await;
                            }
                        }
                    }
                    Some(Ok(Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if session.ping(b"").await.is_err() {
                        break;
                    }
                }
            }
        }
        for (id, n) in bound {
            state.sockets.forget(&id, n);
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
