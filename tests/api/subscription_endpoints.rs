//! Notification endpoints cannot turn the server against its own network: internal addresses
//! are refused unless the operator names their network, when the Subscription is written and
//! again when a delivery connects; credentials never sit in a readable URL; headers that would
//! break or forge a delivery are refused before anything is stored.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::receiver::Receiver;
use crate::subscriptions::subscription;
use serde_json::json;
use std::time::Duration;

/// A server with the default policy: no internal network named.
async fn guarded(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.subscription_endpoint_networks = Vec::new()).await
}

crate::on_both_backends_with!(
    guarded,
    internal_endpoints_are_refused_when_written,
    credentials_and_bad_headers_are_refused,
);

async fn refused(app: &TestApp, endpoint: &str, says: &str) {
    let r = app
        .post(
            "Subscription",
            &subscription("lab-result", &[], endpoint, "id-only"),
        )
        .await;
    assert_eq!(r.status, 422, "{endpoint}: {}", r.text);
    assert!(
        r.text.contains(says),
        "{endpoint}: expected '{says}' in {}",
        r.text
    );
    assert_eq!(r.first_issue().1, "Subscription.channel.endpoint");
}

async fn internal_endpoints_are_refused_when_written(app: TestApp) {
    // the server's own admin API, cloud metadata, the private network, loopback by name
    for endpoint in [
        format!("{}/admin/hl7v2/messages/1/replay", app.root),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://10.0.0.5:5432/".into(),
        "http://[::1]:8080/".into(),
        "http://[::ffff:127.0.0.1]:8080/".into(),
        "http://localhost:8080/hook".into(),
        "http://0.0.0.0:8080/hook".into(),
    ] {
        refused(&app, &endpoint, "internal address").await;
    }
    let r = app.get("Subscription?_summary=count").await;
    assert_eq!(r.json()["total"], 0, "nothing was stored");
}

async fn credentials_and_bad_headers_are_refused(app: TestApp) {
    refused(
        &app,
        "https://hooks:s3cret@hooks.example.org/emr",
        "channel.header",
    )
    .await;
    // a header with a line break would add headers of its own to every delivery
    for header in [
        "Authorization: Bearer x\r\nX-Forged: 1",
        "Bad Name: x",
        "NoColon",
    ] {
        let mut s = subscription(
            "lab-result",
            &[],
            "https://hooks.example.org/emr",
            "id-only",
        );
        s["channel"]["header"] = json!([header]);
        let r = app.post("Subscription", &s).await;
        assert_eq!(r.status, 422, "{header:?}: {}", r.text);
        assert_eq!(r.first_issue().1, "Subscription.channel.header");
    }
    let r = app.get("Subscription?_summary=count").await;
    assert_eq!(r.json()["total"], 0, "nothing was stored");
    // a good one still goes in
    let mut s = subscription(
        "lab-result",
        &[],
        "https://hooks.example.org/emr",
        "id-only",
    );
    s["channel"]["header"] = json!(["Authorization: Bearer abc"]);
    let r = app.post("Subscription", &s).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// A name that is not `localhost` but resolves to loopback on this machine (its own host name
/// does, on Debian and in this sandbox), or `None` where none is known.
async fn a_name_for_loopback() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_string();
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .ok()?
        .collect();
    (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_inside_is_refused_when_delivering() {
    let Some(name) = a_name_for_loopback().await else {
        eprintln!("no host name resolves to loopback here: the resolver's unit test covers it");
        return;
    };
    let app = guarded(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    let port = hook
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let endpoint = format!("http://{name}:{port}/hook");
    // a name is accepted when written (what it resolves to may change) ...
    let r = app
        .post(
            "Subscription",
            &subscription("lab-result", &[], &endpoint, "id-only"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    // ... and refused at every connection, which never reaches the loopback receiver
    let mut said = String::new();
    for _ in 0..100 {
        said = app.get(&format!("Subscription/{id}/$status")).await.text;
        if said.contains("internal address") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(said.contains("internal address"), "{said}");
    assert!(hook.received().is_empty(), "nothing reached the receiver");
}
