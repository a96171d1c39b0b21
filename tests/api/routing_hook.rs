//! Sync out to a REST-hook target (issue 23: "any Subscription channel"): an app that takes
//! notifications the way a rest-hook Subscription sends them is a target of the routes, with
//! the queue's guarantees a Subscription does not give: a patient's stay arrives in order, the
//! app down for a while gets what it missed in order, a refusal waits in the outbound
//! exception queue and goes on replay. Its credential is read from a file, never written in
//! the routes.

use crate::helpers::{Backend, TestApp};
use crate::receiver::{Received, Receiver, focuses, kind, status_param};
use crate::routing::{admin_get, admin_put, send};
use serde_json::{Value, json};
use std::time::Duration;

const OID: &str = "1.2.840.114350.1";

fn adt(trigger: &str, control: &str, family: &str, (class, bed): (&str, &str)) -> String {
    format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20261206120000\r\
         PID|1||H900^^^GH&{OID}&ISO^MR||{family}^Hana||19800808|F\r\
         PV1|1|{class}|{bed}^^^GOOD HEALTH||||||||||||||||V900^^^GH&{OID}&ISO^VN|||||||||||||||||||||||||20261206113000\r"
    )
}

/// The resources of `rtype` a notification carries in full.
fn carried(bundle: &Value, rtype: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == rtype)
        .map(|e| e["resource"].clone())
        .collect()
}

fn version(resource: &Value) -> i64 {
    resource["meta"]["versionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn failed_messages(hub: &TestApp) -> Vec<Value> {
    for _ in 0..200 {
        let failed = admin_get(hub, "outbound?status=failed").await;
        let messages = failed["messages"].as_array().unwrap().clone();
        if !messages.is_empty() {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing reached the outbound exception queue");
}

async fn a_stay_reaches_an_app_as_notifications(hub: TestApp) {
    let hook = Receiver::start().await;
    let token = hub.dir.path().join("hook-token");
    std::fs::write(&token, "Bearer hook's own token\n").unwrap();
    let target = |content: &str| {
        json!({"targets": [{
            "name": "bed-board",
            "channel": {"type": "rest-hook", "endpoint": hook.url, "timeout_ms": 2000,
                        "headers": [{"name": "Authorization", "value_file": token}]},
            "format": {"type": "notification", "content": content},
            "events": [{"criteria": "Patient"}, {"criteria": "Encounter"}]}]})
    };
    let r = admin_put(&hub, "routes", &target("full-resource")).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // ED arrival: one notification for the write, Patient and Encounter in it, in full
    send(&hub, &adt("A04", "H1", "Hook", ("E", "ED^1"))).await;
    let got = hook.wait_until(20, "the arrival", |g| !g.is_empty()).await;
    let first = &got[0].body;
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Bearer hook's own token")
    );
    assert_eq!(first["type"], "history");
    assert_eq!(kind(first), "event-notification");
    let subscription = status_param(first, "subscription")["valueReference"].clone();
    assert_eq!(
        subscription["identifier"]["value"], "bed-board",
        "{first:#}"
    );
    let refs = focuses(first);
    assert_eq!(refs.len(), 2, "{first:#}");
    assert!(
        refs.iter()
            .all(|r| r.starts_with(&format!("{}/", hub.base))),
        "{refs:?}"
    );
    let patient = &carried(first, "Patient")[0];
    assert_eq!(patient["name"][0]["family"], "Hook");
    assert!(refs.contains(&format!(
        "{}/Patient/{}",
        hub.base,
        patient["id"].as_str().unwrap()
    )));
    assert_eq!(carried(first, "Encounter")[0]["class"]["code"], "EMER");

    // the app down: the admission and the transfer wait, then arrive in order
    hook.set_down(true);
    send(&hub, &adt("A01", "H2", "Hook", ("I", "4W^401"))).await;
    send(&hub, &adt("A02", "H3", "Hook", ("I", "4W^402"))).await;
    for _ in 0..100 {
        if *hook.refused.lock().unwrap() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(*hook.refused.lock().unwrap() >= 2, "the hub kept trying");
    assert_eq!(hook.received().len(), 1, "nothing got through while down");
    hook.set_down(false);
    let got = hook.wait_until(20, "the stay", |g| g.len() >= 3).await;
    assert_eq!(got.len(), 3, "each message once");
    let encounters: Vec<Value> = got
        .iter()
        .map(|r: &Received| carried(&r.body, "Encounter")[0].clone())
        .collect();
    let versions: Vec<i64> = encounters.iter().map(version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "in order: {versions:?}"
    );
    assert_eq!(encounters[1]["class"]["code"], "IMP");
    let bed = |e: &Value| e["location"].clone();
    assert_ne!(bed(&encounters[1]), bed(&encounters[2]), "{encounters:#?}");

    // a refusal: to the exception queue with the app's words; replayed once it takes again
    hook.set_refusing(true);
    send(&hub, &adt("A08", "H4", "Renamed", ("I", "4W^402"))).await;
    let failed = failed_messages(&hub).await;
    assert_eq!(failed[0]["ackCode"], "422", "{failed:#?}");
    assert!(
        failed[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("takes nothing now"),
        "{failed:#?}"
    );
    hook.set_refusing(false);
    let seq = failed[0]["seq"].as_i64().unwrap();
    let r = hub
        .send(
            hub.client
                .post(format!("{}/admin/outbound/{seq}/replay", hub.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = hook.wait_until(20, "the replay", |g| g.len() >= 4).await;
    assert_eq!(
        carried(&got[3].body, "Patient")[0]["name"][0]["family"],
        "Renamed"
    );

    // id-only: the references, no resource
    let r = admin_put(&hub, "routes", &target("id-only")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&hub, &adt("A08", "H5", "Again", ("I", "4W^402"))).await;
    let got = hook
        .wait_until(20, "an id-only notification", |g| g.len() >= 5)
        .await;
    let last = &got[4].body;
    assert!(carried(last, "Patient").is_empty(), "{last:#}");
    assert_eq!(focuses(last).len(), 1, "only the Patient changed: {last:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stay_reaches_an_app_as_notifications_on_postgres() {
    a_stay_reaches_an_app_as_notifications(crate::routing::spawn(Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_in_the_routes_is_refused() {
    let hub = crate::routing::spawn(Backend::Sqlite).await;
    let routes = json!({"targets": [{
        "name": "leaky",
        "channel": {"type": "rest-hook", "endpoint": "https://user:pw@app.example/hook",
                    "headers": [{"name": "Authorization", "value": "Bearer plain"},
                                {"name": "X Bad", "value": "v"}]},
        "format": {"type": "notification"},
        "events": [{"criteria": "Patient"}]}]});
    let r = admin_put(&hub, "routes", &routes).await;
    assert_eq!(r.status, 422, "{}", r.text);
    for part in [
        "no credentials",
        "value_env or value_file",
        "'X Bad' is not an HTTP token",
    ] {
        assert!(r.text.contains(part), "{part} missing from {}", r.text);
    }
}
