//! The server process killed (SIGKILL) in the middle of a stream of changes, then started
//! again on the same database: every change that was acknowledged reaches the subscriber,
//! numbered without gaps and in order; a repeat is possible (at-least-once) and shows as a
//! repeated event number. And two processes sharing one PostgreSQL database deliver each
//! event once between them.

use crate::helpers::{Backend, fresh_postgres_database, mint};
use crate::process::{Server, free_port, wait_healthy};
use crate::receiver::{Receiver, event_numbers, focuses, kind};
use crate::subscriptions::subscription;
use emrsync::config::StoreArgs;
use serde_json::json;
use std::time::Duration;

fn start(port: u16, store: &StoreArgs) -> Server {
    crate::process::start(
        port,
        store,
        &[
            "--subscription-retry-max-secs",
            "1",
            "--subscription-endpoint-networks",
            "127.0.0.1",
        ],
    )
}

async fn killed_mid_stream(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database()),
    };
    let store = StoreArgs::new(dir.path().to_path_buf(), database_url);
    let port = free_port();
    let http = reqwest::Client::new();
    let mut server = start(port, &store);
    wait_healthy(&http, &server.root).await;
    let base = format!("{}/fhir", server.root);
    let token = mint(&store.database().unwrap(), &base, "system/*.cruds", None);
    let post = |body: serde_json::Value, path: &str| {
        http.post(format!("{base}/{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };

    let hook = Receiver::start().await;
    let r = post(
        subscription("patient-demographics", &[], &hook.url, "id-only"),
        "Subscription",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let sid = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    hook.wait_until(20, "the handshake", |g| !g.is_empty())
        .await;

    // a stream of changes; the process dies in the middle of it
    let mut acknowledged = Vec::new();
    for i in 0..120 {
        if i == 60 {
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            server = start(port, &store); // (dropping the dead one kills nothing more)
            wait_healthy(&http, &server.root).await;
        }
        if let Ok(r) = post(
            json!({"resourceType":"Patient","name":[{"family":format!("P{i}")}]}),
            "Patient",
        )
        .await
            && r.status() == 201
        {
            let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            acknowledged.push(format!("{base}/Patient/{id}"));
        }
    }
    assert!(
        acknowledged.len() >= 119,
        "writes after the restart succeed"
    );

    let all_seen = |g: &[crate::receiver::Received]| {
        let seen: std::collections::HashSet<String> =
            g.iter().flat_map(|r| focuses(&r.body)).collect();
        acknowledged.iter().filter(|a| !seen.contains(*a)).count()
    };
    for _ in 0..600 {
        if all_seen(&hook.received()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = hook.received();
    if all_seen(&got) > 0 {
        let status = http
            .get(format!("{base}/Subscription/{sid}/$status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let numbers: Vec<i64> = got.iter().flat_map(|r| event_numbers(&r.body)).collect();
        panic!(
            "{} of {} acknowledged changes never arrived; numbers received {numbers:?}; status {status}",
            all_seen(&got),
            acknowledged.len()
        );
    }
    let numbers: Vec<i64> = got
        .iter()
        .filter(|r| kind(&r.body) == "event-notification")
        .flat_map(|r| event_numbers(&r.body))
        .collect();
    // first appearances run 1, 2, 3, ... with no gap; anything else is a repeat of the last
    // ones (redelivered after the restart)
    let mut next = 1;
    for n in &numbers {
        if *n == next {
            next += 1;
        } else {
            assert!(
                *n < next,
                "event {n} arrived before event {next}: {numbers:?}"
            );
        }
    }
    let total = next - 1;
    assert_eq!(
        total as usize,
        acknowledged.len(),
        "one event per change: {numbers:?}"
    );
    let status = http
        .get(format!("{base}/Subscription/{sid}/$status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains(&format!("\"valueString\":\"{total}\"")),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_event_sqlite() {
    killed_mid_stream(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_event_postgres() {
    killed_mid_stream(Backend::Postgres).await
}

/// Two processes on one PostgreSQL database, both taking writes, both dispatching and
/// delivering: each event reaches each subscriber exactly once, numbered 1..N in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_deliver_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreArgs::new(dir.path().to_path_buf(), Some(fresh_postgres_database()));
    let http = reqwest::Client::new();
    let (a, b) = (start(free_port(), &store), start(free_port(), &store));
    wait_healthy(&http, &a.root).await;
    wait_healthy(&http, &b.root).await;
    // each process has its own base URL, and a token is for one audience
    let database = store.database().unwrap();
    let token_a = mint(
        &database,
        &format!("{}/fhir", a.root),
        "system/*.cruds",
        None,
    );
    let token_b = mint(
        &database,
        &format!("{}/fhir", b.root),
        "system/*.cruds",
        None,
    );
    let post = |root: &str, path: &str, body: serde_json::Value| {
        let token = if root == a.root { &token_a } else { &token_b };
        http.post(format!("{root}/fhir/{path}"))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };

    const SUBSCRIBERS: usize = 4;
    const WRITES: usize = 200;
    let hook = Receiver::start().await;
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        let root = if i % 2 == 0 { &a.root } else { &b.root };
        let r = post(
            root,
            "Subscription",
            subscription("patient-demographics", &[], &hook.url, "id-only"),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        subs.push(id);
    }
    // each process takes half of the writes, at the same time
    let writer = |root: String, from: usize| {
        let post = &post;
        async move {
            for i in (from..WRITES).step_by(2) {
                let r = post(
                    &root,
                    "Patient",
                    json!({"resourceType":"Patient","name":[{"family":format!("P{i}")}]}),
                )
                .await
                .unwrap();
                assert_eq!(r.status(), 201);
            }
        }
    };
    tokio::join!(writer(a.root.clone(), 0), writer(b.root.clone(), 1));

    let events_of = |got: &[crate::receiver::Received], sid: &str| -> Vec<i64> {
        got.iter()
            .filter(|r| kind(&r.body) == "event-notification")
            .filter(|r| {
                crate::receiver::status_param(&r.body, "subscription")["valueReference"]
                    ["reference"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!("Subscription/{sid}")))
            })
            .flat_map(|r| event_numbers(&r.body))
            .collect()
    };
    hook.wait_until(60, "every event to every subscriber", |g| {
        subs.iter().all(|s| events_of(g, s).len() >= WRITES)
    })
    .await;
    // a moment more for any duplicate still on its way
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = hook.received();
    for sid in &subs {
        let numbers = events_of(&got, sid);
        let want: Vec<i64> = (1..=WRITES as i64).collect();
        assert_eq!(
            numbers, want,
            "Subscription/{sid}: each event once, in order"
        );
        let handshakes = got
            .iter()
            .filter(|r| kind(&r.body) == "handshake")
            .filter(|r| {
                crate::receiver::status_param(&r.body, "subscription")["valueReference"]
                    ["reference"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!("Subscription/{sid}")))
            })
            .count();
        assert_eq!(handshakes, 1, "Subscription/{sid}: one handshake");
    }
}
