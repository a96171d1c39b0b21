//! The websocket channel: a subscriber asks `$get-ws-binding-token` for a short-lived token,
//! opens the server's websocket, sends `bind-with-token <token>`, and from then on receives
//! its subscription's notifications (handshake first, then events, heartbeats) as text frames,
//! with a ping every 30 seconds. The open sockets of this process are kept here; delivery
//! sends a websocket subscription's notifications only where one of its sockets is open (its
//! events wait in the queue meanwhile, and `$events` gives them again).

use crate::auth::{Authority, now_secs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a binding token may be used to open a socket.
pub const BINDING_LIFETIME: i64 = 300;

/// The claims of a binding token: which subscription it opens, until when.
#[derive(Debug, Serialize, Deserialize)]
pub struct Binding {
    pub iss: String,
    pub aud: String,
    /// The subscription's id.
    pub sub: String,
    pub exp: i64,
}

/// The audience binding tokens are signed for (no access token can pass as one).
pub fn binding_audience(authority: &Authority) -> String {
    format!("{}/ws-binding", authority.issuer())
}

/// A binding token for subscription `id`, and when it expires (seconds since the epoch).
pub fn binding_token(authority: &Authority, id: &str) -> (String, i64) {
    let exp = now_secs() + BINDING_LIFETIME;
    let token = authority.sign(&Binding {
        iss: authority.issuer().to_string(),
        aud: binding_audience(authority),
        sub: id.to_string(),
        exp,
    });
    (token, exp)
}

/// An open socket and the number it is known by.
type Numbered = (u64, actix_ws::Session);

/// The sockets open in this process, per subscription, each under a number of its own; and
/// the deliverer's wake-up, rung when a socket binds.
#[derive(Clone, Default)]
pub struct Sockets {
    open: Arc<Mutex<HashMap<String, Vec<Numbered>>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl Sockets {
    /// Keep `session` as a socket of subscription `id`; its number, to forget it by.
    pub fn bind(&self, id: &str, session: actix_ws::Session) -> u64 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open
            .lock()
            .expect("not poisoned")
            .entry(id.to_string())
            .or_default()
            .push((n, session));
        n
    }

    pub fn forget(&self, id: &str, n: u64) {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(list) = open.get_mut(id) {
            list.retain(|(m, _)| *m != n);
            if list.is_empty() {
                open.remove(id);
            }
        }
    }

    /// Whether a socket of subscription `id` is open here.
    pub fn has(&self, id: &str) -> bool {
        self.open
            .lock()
            .expect("not poisoned")
            .get(id)
            .is_some_and(|s| !s.is_empty())
    }

    /// The subscriptions with a socket open here.
    pub fn ids(&self) -> Vec<String> {
        self.open
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Send `text` on every open socket of subscription `id`; whether one took it. Sockets
    /// found closed are forgotten.
    pub async fn send(&self, id: &str, text: &str) -> bool {
        let sessions = self
            .open
            .lock()
            .expect("not poisoned")
            .get(id)
            .cloned()
            .unwrap_or_default();
        let mut sent = false;
        for (n, mut s) in sessions {
            match s.text(text.to_string()).await {
                Ok(()) => sent = true,
                Err(_) => self.forget(id, n),
            }
        }
        sent
    }
}
