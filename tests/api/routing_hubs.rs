//! Two emrsync hubs as each other's targets (issue 23): over TLS, a hub sends to another hub's
//! TLS MLLP port and the patient arrives there, while a target whose certificate no CA of ours
//! signed gets nothing (the messages wait, saying why); and two hubs that route every patient
//! change to each other, with no echo rule written at all, do not ping-pong: the message coming
//! back restates what the first hub holds, which writes nothing, so nothing is routed again.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::routing::{admin_get, admin_put, send};
use serde_json::{Value, json};
use std::time::Duration;

const PATIENT: &str = "Patient?identifier=urn:oid:1.2.840.114350.1|";

fn registration(control: &str, mrn: &str, family: &str) -> String {
    format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^A04^ADT_A01|{control}|P|2.5.1\r\
         EVN|A04|20261206120000\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||{family}^Ann||19700101|F\r\
         PV1|1|E|ED^^^GOOD HEALTH||||||||||||||||V-{mrn}^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261206113000\r"
    )
}

/// A hub's target: the other hub's MLLP port, every Patient and Encounter change.
fn hub_target(name: &str, port: u16, tls: Option<Value>) -> Value {
    let mut channel = json!({"type": "mllp", "address": format!("127.0.0.1:{port}"),
                             "ack_timeout_ms": 2000});
    if let Some(tls) = tls {
        channel["tls"] = tls;
    }
    json!({"name": name, "channel": channel,
           "format": {"type": "hl7v2", "sending_facility": format!("FROM-{name}")},
           "events": [{"criteria": "Patient"}, {"criteria": "Encounter"}]})
}

/// Wait until `app` has a patient with `mrn`; its records.
async fn arrived(app: &TestApp, mrn: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found = app.get(&format!("{PATIENT}{mrn}")).await.json();
        if found["total"].as_u64().unwrap_or(0) > 0 || found["entry"].is_array() {
            return found["entry"].as_array().cloned().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

fn sent(summary: &Value, target: &str) -> u64 {
    summary["targets"][target]["sent"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_sends_over_tls_to_the_certificate_it_trusts_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::certs::server(dir.path());
    let (stranger_ca, _, _) = crate::certs::client(dir.path(), "stranger");
    let secure = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_tls_cert = Some(cert.clone());
        s.mllp_tls_key = Some(key.clone());
    })
    .await;
    let hub = crate::routing::spawn(Backend::Sqlite).await;
    let port = secure.mllp.unwrap();
    let tls = json!({"ca_file": cert, "server_name": "localhost"});
    let routes = json!({"targets": [hub_target("secure", port, Some(tls))]});
    let r = admin_put(&hub, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(&hub, &registration("T1", "TLS-1", "Encrypted")).await;
    let there = arrived(&secure, "TLS-1").await;
    assert_eq!(there.len(), 1, "the patient did not arrive over TLS");
    assert_eq!(there[0]["resource"]["name"][0]["family"], "Encrypted");

    // a CA that did not sign the target's certificate: nothing is sent, and it says why
    let tls = json!({"ca_file": stranger_ca, "server_name": "localhost"});
    let routes = json!({"targets": [hub_target("secure", port, Some(tls))]});
    assert_eq!(admin_put(&hub, "routes", &routes).await.status, 200);
    send(&hub, &registration("T2", "TLS-2", "Refused")).await;
    let mut waiting = json!(null);
    for _ in 0..100 {
        waiting = admin_get(&hub, "outbound?status=pending").await;
        let error = waiting["messages"][0]["lastError"].as_str().unwrap_or("");
        if error.contains("TLS") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = waiting["messages"][0]["lastError"].as_str().unwrap_or("");
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "{waiting}"
    );
    assert!(arrived(&secure, "TLS-2").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_routing_to_each_other_do_not_loop() {
    let (a, b) = (
        crate::routing::spawn(Backend::Sqlite).await,
        crate::routing::spawn(Backend::Sqlite).await,
    );
    let to_b = json!({"targets": [hub_target("hub-b", b.mllp.unwrap(), None)]});
    let to_a = json!({"targets": [hub_target("hub-a", a.mllp.unwrap(), None)]});
    assert_eq!(admin_put(&a, "routes", &to_b).await.status, 200);
    assert_eq!(admin_put(&b, "routes", &to_a).await.status, 200);
    send(&a, &registration("L1", "LOOP-1", "Roundtrip")).await;
    assert_eq!(arrived(&b, "LOOP-1").await.len(), 1);
    assert_eq!(arrived(&a, "LOOP-1").await.len(), 1);
    // what went back and forth settles: a few seconds more move nothing
    let mut before = (0, 0);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (
            sent(&admin_get(&a, "outbound/summary").await, "hub-b"),
            sent(&admin_get(&b, "outbound/summary").await, "hub-a"),
        );
        if now == before && now.0 > 0 {
            break;
        }
        before = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (
        sent(&admin_get(&a, "outbound/summary").await, "hub-b"),
        sent(&admin_get(&b, "outbound/summary").await, "hub-a"),
    );
    assert_eq!(after, before, "messages still moving between the hubs");
    // one registration: to B, back to A at most once, and nothing more
    assert!(after.0 >= 1 && after.0 <= 2 && after.1 <= 2, "{after:?}");
    // the patient is one record at each hub, as registered
    for hub in [&a, &b] {
        let p = arrived(hub, "LOOP-1").await;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["resource"]["name"][0]["family"], "Roundtrip");
    }
}
