//! A REST-hook endpoint for the tests: a real HTTP server on loopback that keeps every
//! notification it accepts, and can be "down" (answering 503) for a while, or refuse what it
//! is sent (422 with an OperationOutcome, as a server that cannot take the content answers).

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One notification as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    /// Requests refused while down.
    pub refused: Arc<Mutex<usize>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let refusing = Arc::new(AtomicBool::new(false));
        let refused: Arc<Mutex<usize>> = Arc::default();
        let (g, d, r, no) = (got.clone(), down.clone(), refused.clone(), refusing.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            let (g, d, r, no) = (g.clone(), d.clone(), r.clone(), no.clone());
            actix_web::App::new().default_service(actix_web::web::to(
                move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                    let (g, d, r, no) = (g.clone(), d.clone(), r.clone(), no.clone());
                    async move {
                        if d.load(Ordering::SeqCst) {
                            *r.lock().unwrap() += 1;
                            return actix_web::HttpResponse::ServiceUnavailable().finish();
                        }
                        if no.load(Ordering::SeqCst) {
                            return actix_web::HttpResponse::UnprocessableEntity().json(
                                serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                                    {"severity": "error", "code": "processing",
                                     "diagnostics": "this receiver takes nothing now"}]}),
                            );
                        }
                        capture(&body);
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let authorization = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        g.lock().unwrap().push(Received {
                            body,
                            authorization,
                        });
                        actix_web::HttpResponse::Ok().finish()
                    }
                },
            ))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
            down,
            refusing,
            refused,
        }
    }

    /// Answer 422 to everything from now on (or no longer).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for what was received (panics after `secs`).
    pub async fn wait_until(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                got.iter().map(|r| &r.body).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The focus references of the first event notification (waiting `secs` for it).
    pub async fn first_event_focuses(&self, secs: u64, what: &str) -> Vec<String> {
        let is_event = |r: &Received| kind(&r.body) == "event-notification";
        let got = self
            .wait_until(secs, what, |g| g.iter().any(is_event))
            .await;
        focuses(&got.into_iter().find(is_event).expect("waited for it").body)
    }
}

/// Keep each notification for the R4 validation `scripts/test` runs after the suite (as the
/// helpers keep the server's responses).
fn capture(body: &[u8]) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Ok(dir) = std::env::var("EMRSYNC_TEST_CAPTURE_DIR") else {
        return;
    };
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path =
        std::path::Path::new(&dir).join(format!("notification-{}-{n}.json", std::process::id()));
    std::fs::write(path, body).unwrap();
}

/// The SubscriptionStatus parameter `name` of a notification.
pub fn status_param(bundle: &Value, name: &str) -> Value {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The notification type (`handshake`, `event-notification`, ...).
pub fn kind(bundle: &Value) -> String {
    status_param(bundle, "type")["valueCode"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The event numbers a notification carries, in order.
pub fn event_numbers(bundle: &Value) -> Vec<i64> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| {
            p["part"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["name"] == "event-number")
                .unwrap()["valueString"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The focus references of a notification's events.
pub fn focuses(bundle: &Value) -> Vec<String> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            p["part"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["name"] == "focus")
                .map(|q| {
                    q["valueReference"]["reference"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
        })
        .collect()
}
