//! A vendor source that pushes (`POST /adapters/<source>/webhook`): a delivery signed with
//! the shared secret and fresh is applied like a polled page and its Patient is searchable at
//! once; the same delivery again, an old one, one signed wrong or not at all are refused, and
//! nothing of them is written.

use crate::helpers::{Backend, TestApp, spawn_with};
use serde_json::{Value, json};

fn sign(secret: &[u8], ts: &str, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let signed = format!("{ts}.{body}");
    aws_lc_rs::hmac::sign(&key, signed.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A source that pushes patients, its secret beside it in `dir`: the definition's path. (Each
/// test names its own: `/metrics` counts by source for the whole test process.)
fn push_source(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("whsec"), "whsec-test-1\n").unwrap();
    let def = json!({
        "name": name,
        // nothing listens there: the poller's readings fail, the webhook does the work
        "baseUrl": format!("http://127.0.0.1:{}", crate::process::free_port()),
        "pollSeconds": 3600,
        "records": {"patient": {"endpoint": "/patients", "map": {
            "resourceType": "Patient", "key": "$.id",
            "identifierSystem": "https://pm-push.example.org/patient-id",
            "elements": [{"to": "/name/0/family", "from": "$.last_name", "required": true}]}}},
        "webhook": {"secretFile": dir.join("whsec"), "event": "$.event",
            "types": {"patient.updated": "patient"}, "items": "$.data"}
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

/// A delivery signed now, posted to `app`'s `pm-nodes` source: the status and what it answered.
async fn deliver(app: &TestApp, body: &str) -> (u16, Value) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    deliver_signed(app, body, &ts).await
}

async fn deliver_signed(app: &TestApp, body: &str, ts: &str) -> (u16, Value) {
    let r = app
        .anonymous
        .post(format!("{}/adapters/pm-nodes/webhook", app.root))
        .header("content-type", "application/json")
        .header("x-webhook-timestamp", ts)
        .header(
            "x-webhook-signature",
            format!("sha256={}", sign(b"whsec-test-1", ts, body)),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// Two servers on one PostgreSQL database: the delivery one of them took, sent again to the
/// other, is refused there (the signatures taken are kept in the database, not in a process);
/// another delivery is taken by either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_one_node_took_is_refused_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = push_source(dir.path(), "pm-nodes");
    let url = crate::helpers::fresh_postgres_database();
    let node = |path: std::path::PathBuf, url: String| {
        move |s: &mut emrsync::config::Settings| {
            s.sources = vec![path];
            s.store = emrsync::config::StoreArgs::new(s.store.data_dir.clone(), Some(url));
        }
    };
    let a = spawn_with(Backend::Sqlite, node(path.clone(), url.clone())).await;
    let b = spawn_with(Backend::Sqlite, node(path, url)).await;
    let body =
        json!({"event": "patient.updated", "data": {"id": "n-1", "last_name": "Once"}}).to_string();
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string();
    let (status, said) = deliver_signed(&a, &body, &ts).await;
    assert_eq!((status, &said["accepted"]), (200, &json!(1)), "{said}");
    let (status, said) = deliver_signed(&b, &body, &ts).await;
    assert_eq!(status, 409, "{said}");
    let (status, said) = deliver_signed(&a, &body, &ts).await;
    assert_eq!(status, 409, "{said}");
    let next =
        json!({"event": "patient.updated", "data": {"id": "n-2", "last_name": "Next"}}).to_string();
    let (status, said) = deliver(&b, &next).await;
    assert_eq!((status, &said["accepted"]), (200, &json!(1)), "{said}");
    // a delivery that was not applied is not marked taken: sent again, it is read again
    // (and refused again for what it is, not as a replay)
    let empty = json!({"event": "patient.updated"}).to_string();
    let (status, said) = deliver_signed(&a, &empty, &ts).await;
    assert_eq!(status, 400, "{said}");
    let (status, said) = deliver_signed(&b, &empty, &ts).await;
    assert_eq!(status, 400, "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_fresh_deliveries_are_applied_and_the_rest_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = push_source(dir.path(), "pm-push");
    let app = spawn_with(Backend::Sqlite, move |s| s.sources = vec![path]).await;
    let url = format!("{}/adapters/pm-push/webhook", app.root);
    let post = |body: String, ts: String, sig: Option<String>| {
        let mut req = app
            .anonymous
            .post(&url)
            .header("content-type", "application/json")
            .header("x-webhook-timestamp", ts)
            .body(body);
        if let Some(s) = sig {
            req = req.header("x-webhook-signature", format!("sha256={s}"));
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    };
    let body = json!({"event": "patient.updated", "data": {"id": "p-1", "last_name": "Pushed"}})
        .to_string();
    let ts = now();
    let sig = sign(b"whsec-test-1", &ts, &body);
    let (status, said) = post(body.clone(), ts.clone(), Some(sig.clone())).await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["accepted"], 1);
    let found = app
        .get("Patient?identifier=https://pm-push.example.org/patient-id|p-1")
        .await;
    assert_eq!(
        found.json()["entry"][0]["resource"]["name"][0]["family"],
        "Pushed"
    );

    // counted on /metrics by source, record type and outcome
    let metrics = app.get_url(&format!("{}/metrics", app.root)).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("emrsync_vendor_records_total{")
                && l.contains("source=\"pm-push\"")
                && l.contains("outcome=\"accepted\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );

    // a record its map refuses (no family name): to the source's exception queue, whose
    // depth /metrics shows
    let nameless = json!({"event": "patient.updated", "data": [{"id": "p-3"}]}).to_string();
    let ts3 = now();
    let sig3 = sign(b"whsec-test-1", &ts3, &nameless);
    let (status, said) = post(nameless, ts3, Some(sig3)).await;
    assert_eq!((status, &said["refused"]), (200, &json!(1)), "{said}");
    let metrics = app.get_url(&format!("{}/metrics", app.root)).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l == "emrsync_vendor_exceptions{source=\"pm-push\"} 1"),
        "{metrics}"
    );

    // ...and that the dashboard lists, whole, with Replay
    the_dashboard_shows_and_replays_the_queue(&app).await;

    // the same delivery again
    let (status, said) = post(body.clone(), ts.clone(), Some(sig)).await;
    assert_eq!(status, 409, "{said}");
    // signed with another secret, unsigned, signed long ago
    let other = json!({"event": "patient.updated", "data": {"id": "p-2", "last_name": "Forged"}})
        .to_string();
    let ts2 = now();
    let (status, _) = post(
        other.clone(),
        ts2.clone(),
        Some(sign(b"guess", &ts2, &other)),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(other.clone(), ts2.clone(), None).await;
    assert_eq!(status, 401);
    let old = (ts2.parse::<u64>().unwrap() - 3600).to_string();
    let (status, _) = post(
        other.clone(),
        old.clone(),
        Some(sign(b"whsec-test-1", &old, &other)),
    )
    .await;
    assert_eq!(status, 409);
    let none = app
        .get("Patient?identifier=https://pm-push.example.org/patient-id|p-2")
        .await;
    assert_eq!(none.json()["total"], 0, "{}", none.text);
    // a source that does not exist
    let (status, _) = post(body, now(), None).await;
    assert_eq!(status, 401);
    let r = app
        .anonymous
        .post(format!("{}/adapters/nobody/webhook", app.root))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// `/admin/vendors` as an admin sees it: the source's waiting record with why, a Replay that
/// maps it again (still refused by the same map: it keeps waiting, the page says so), a form
/// from elsewhere refused, an unknown source 404.
async fn the_dashboard_shows_and_replays_the_queue(app: &crate::helpers::TestApp) {
    let (http, cookie) = crate::helpers::admin_session(app).await;
    let get = |path: &str| {
        let req = http
            .get(format!("{}{path}", app.root))
            .header("cookie", &cookie);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let page = get("/admin/vendors").await;
    assert!(page.contains("data-source=\"pm-push\""), "{page}");
    assert!(page.contains("/name/0/family"), "{page}");
    assert!(page.contains("p-3"), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let post = |path: &str, body: String| {
        let req = http
            .post(format!("{}{path}", app.root))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    let r = post("/admin/vendors/pm-push/replay", format!("csrf={csrf}")).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, "/admin/vendors?replayed=pm-push&applied=0&still=1");
    let after = get(&to).await;
    assert!(after.contains("0 record(s) in, 1 still waiting"), "{after}");
    assert!(after.contains("p-3"), "{after}");
    let r = post("/admin/vendors/pm-push/replay", "csrf=forged".into()).await;
    assert_eq!(r.status(), 403);
    let r = post("/admin/vendors/nobody/replay", format!("csrf={csrf}")).await;
    assert_eq!(r.status(), 404);
    // the overview's tile for the queue links here
    let overview = get("/admin").await;
    assert!(
        overview.contains("href=\"/admin/vendors\">vendor pm-push exception queue"),
        "{overview}"
    );
}
