//! What a Subscription may and may not be: refused with the reason when its topic, filters or
//! endpoint are wrong; its headers never shown; its notifications never carrying what the
//! subscriber's own authorization could not read.

use crate::helpers::{Backend, TestApp, spawn, spawn_with};
use crate::receiver::{Receiver, focuses, kind};
use crate::subscriptions::{subscription, wait_status};
use serde_json::{Value, json};

async fn refused(app: &TestApp, body: &Value, says: &str) {
    let r = app.post("Subscription", body).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains(says), "expected '{says}' in {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscriptions_are_refused_with_the_reason() {
    let app = spawn(Backend::Sqlite).await;
    let hook = "http://127.0.0.1:9/hook";
    let mut unknown = subscription("encounter-start", &[], hook, "id-only");
    unknown["criteria"] = json!("http://example.org/SubscriptionTopic/nope");
    refused(&app, &unknown, "is neither a topic of this server").await;
    let r = app.post("Subscription", &unknown).await;
    assert_eq!(r.first_issue().1, "Subscription.criteria");
    refused(
        &app,
        &subscription(
            "encounter-start",
            &["Encounter?status=finished"],
            hook,
            "id-only",
        ),
        "does not allow filtering Encounter by 'status'",
    )
    .await;
    refused(
        &app,
        &subscription(
            "encounter-start",
            &["Observation?patient=Patient/1"],
            hook,
            "id-only",
        ),
        "has no Observation events",
    )
    .await;
    refused(
        &app,
        &subscription("lab-result", &["Observation?patient"], hook, "id-only"),
        "empty value",
    )
    .await;
    refused(
        &app,
        &subscription("lab-result", &[], "ftp://files.example.org/in", "id-only"),
        "must be an http or https URL",
    )
    .await;
    refused(
        &app,
        &subscription("lab-result", &[], hook, "everything"),
        "is not one of empty, id-only, full-resource",
    )
    .await;
    let mut no_endpoint = subscription("lab-result", &[], hook, "id-only");
    no_endpoint["channel"]
        .as_object_mut()
        .unwrap()
        .remove("endpoint");
    refused(&app, &no_endpoint, "needs an endpoint").await;
    // nothing of them was kept
    let r = app.get("Subscription?_summary=count").await;
    assert_eq!(r.json()["total"], 0);

    // a server with an allow list refuses other endpoints
    let strict = spawn_with(Backend::Sqlite, |s| {
        s.subscription_endpoint_allow = vec!["https://hooks.example.org/".parse().unwrap()];
    })
    .await;
    refused(
        &strict,
        &subscription("lab-result", &[], hook, "id-only"),
        "allow list",
    )
    .await;
    let ok = strict
        .post(
            "Subscription",
            &subscription(
                "lab-result",
                &[],
                "https://hooks.example.org/emr-1",
                "id-only",
            ),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_write_only_and_kept_across_updates() {
    let app = spawn(Backend::Postgres).await;
    let hook = Receiver::start().await;
    let (sid, created) = app
        .create(&subscription(
            "patient-demographics",
            &[],
            &hook.url,
            "id-only",
        ))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    for body in [
        created,
        app.get(&format!("Subscription/{sid}")).await.json(),
        app.get("Subscription").await.json(),
        app.get(&format!("Subscription/{sid}/_history"))
            .await
            .json(),
    ] {
        assert!(!body.to_string().contains("receiver-secret"), "{body}");
    }
    // an update that does not repeat the headers keeps them: the next handshake carries them
    // (after the server's own status change, which a concurrent PUT would race with)
    wait_status(&app, &sid, "active").await;
    let mut changed = app.get(&format!("Subscription/{sid}")).await.json();
    changed["reason"] = json!("renamed");
    let r = app.put(&format!("Subscription/{sid}"), &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["status"],
        "requested",
        "a changed subscription shakes hands again"
    );
    let got = hook
        .wait_until(10, "a second handshake", |g| {
            g.iter().filter(|r| kind(&r.body) == "handshake").count() == 2
        })
        .await;
    assert!(
        got.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer receiver-secret"))
    );
    // off: no more notifications
    wait_status(&app, &sid, "active").await;
    let mut off = app.get(&format!("Subscription/{sid}")).await.json();
    off["status"] = json!("off");
    assert_eq!(
        app.put(&format!("Subscription/{sid}"), &off).await.status,
        200
    );
    let before = hook.received().len();
    app.create(&json!({"resourceType":"Patient"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        hook.received().len(),
        before,
        "an off subscription is silent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_never_carries_what_the_subscriber_may_not_read() {
    let app = spawn(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    // the subscriber may read Encounters, not Observations
    let token = app.token_for("system/Subscription.cruds system/Encounter.rs", None);
    let r = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "Subscription",
            Some(&subscription(
                "resource-change",
                &[],
                &hook.url,
                "full-resource",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    let (p, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let (enc, _) = app
        .create(
            &json!({"resourceType":"Encounter","status":"planned","class":{"code":"AMB"},
            "subject":{"reference":format!("Patient/{p}")}}),
        )
        .await;
    let (obs, _) = app
        .create(
            &json!({"resourceType":"Observation","status":"final","code":{"text":"secret"},
            "subject":{"reference":format!("Patient/{p}")}}),
        )
        .await;
    let got = hook
        .wait_until(10, "three events", |g| {
            g.iter()
                .filter(|r| kind(&r.body) == "event-notification")
                .count()
                >= 3
        })
        .await;
    let events: Vec<&Value> = got
        .iter()
        .filter(|r| kind(&r.body) == "event-notification")
        .map(|r| &r.body)
        .collect();
    let all = serde_json::to_string(&events).unwrap();
    assert!(
        !all.contains("secret"),
        "the Observation's content never leaves"
    );
    assert!(!all.contains(&format!("Observation/{obs}")), "nor its id");
    assert!(
        !all.contains(&format!("\"id\":\"{p}\"")),
        "nor the Patient's content"
    );
    // the Encounter it may read arrives whole
    let shown: Vec<String> = events.iter().flat_map(|b| focuses(b)).collect();
    assert_eq!(
        shown,
        [format!("{}/Encounter/{enc}", app.base)],
        "all received: {}",
        serde_json::to_string_pretty(&got.iter().map(|r| &r.body).collect::<Vec<_>>()).unwrap()
    );
    let with_encounter = events.iter().find(|b| !focuses(b).is_empty()).unwrap();
    assert_eq!(with_encounter["entry"][1]["resource"]["id"], enc.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_gets_heartbeats() {
    let app = spawn(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    let mut s = subscription("order-placed", &[], &hook.url, "id-only");
    s["channel"]["extension"] = json!([{
        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period",
        "valueUnsignedInt": 1
    }]);
    let (_, created) = app.create(&s).await;
    assert_eq!(created["channel"]["extension"][0]["valueUnsignedInt"], 1);
    let got = hook
        .wait_until(10, "two heartbeats", |g| {
            g.iter().filter(|r| kind(&r.body) == "heartbeat").count() >= 2
        })
        .await;
    assert_eq!(kind(&got[0].body), "handshake");
    let heartbeat = got.iter().find(|r| kind(&r.body) == "heartbeat").unwrap();
    assert_eq!(
        heartbeat.body["entry"].as_array().unwrap().len(),
        1,
        "status only"
    );
}

/// A subscription hears of changes made after it was created, even when changes made before
/// it had not been dispatched yet (the server's own start-up writes, a busy dispatcher). The
/// store is driven directly, with no dispatcher running, so that such changes are pending.
#[test]
fn changes_from_before_a_subscription_are_not_its_events() {
    use emrsync::store::StoreError;
    use emrsync::subscriptions::dispatch;
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = crate::helpers::store_in(dir.path());
    let put =
        |rtype: &str, id: &str, body: Value| crate::helpers::put_in(&store, &ctx, rtype, id, body);
    put(
        "Patient",
        "before",
        json!({"resourceType":"Patient","id":"before"}),
    );
    let mut sub = subscription(
        "resource-change",
        &[],
        "https://hooks.example.org/never-called",
        "id-only",
    );
    sub["id"] = json!("s1");
    put("Subscription", "s1", sub);
    put(
        "Patient",
        "after",
        json!({"resourceType":"Patient","id":"after"}),
    );
    let mut listeners = dispatch::Listeners::default();
    store
        .write_rows(|c| dispatch::dispatch_batch(c, &mut listeners, 500))
        .unwrap();
    let events: Vec<(String, i64)> = store
        .read(|c| {
            use diesel::prelude::*;
            use emrsync::store::schema::subscription_events as e;
            Ok::<_, StoreError>(e::table.select((e::resource_id, e::event_number)).load(c)?)
        })
        .unwrap();
    assert_eq!(events, [("after".to_string(), 1)]);
}

/// The server's own writes are spared the Subscription rules; a token that names itself as
/// the server (an identity provider issues whatever `sub` it likes) is not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_named_as_the_server_gets_no_more_than_its_scopes() {
    let app = spawn(Backend::Sqlite).await;
    let hook = Receiver::start().await;
    for name in ["emrsync subscriptions", "emrsync (server)"] {
        let m = emrsync::auth::Mint {
            subject: name.into(),
            scope: "system/*.cruds".into(),
            lifetime: std::time::Duration::from_secs(600),
            ..Default::default()
        };
        let token =
            emrsync::auth::mint_offline(&app.database, &app.base, &m, app.seal.as_deref()).unwrap();
        let post = |body: Value| {
            let token = token.clone();
            let app = &app;
            async move {
                app.send_as(&token, reqwest::Method::POST, "Subscription", Some(&body))
                    .await
            }
        };
        // an endpoint the server refuses stays refused
        let mut inside = subscription(
            "patient-demographics",
            &[],
            "http://10.1.2.3/hook",
            "id-only",
        );
        inside["status"] = json!("active");
        let r = post(inside).await;
        assert_eq!(r.status, 422, "{name}: {}", r.text);
        // and a Subscription it sends as active starts as requested, as every client's does
        let mut active = subscription("patient-demographics", &[], &hook.url, "id-only");
        active["status"] = json!("active");
        let r = post(active).await;
        assert_eq!(r.status, 201, "{name}: {}", r.text);
        assert_eq!(r.json()["status"], "requested", "{name}");
    }
}
