//! Alerts as data (issue 24): rules set over the admin API (and refused when wrong), raised
//! when they start to hold and resolved when they stop, each one a Communication that an
//! `ops-alert` Subscription delivers like any clinical event, listed by the API and shown on
//! the dashboard.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2_results::oru;
use crate::mllp_client::Mllp;
use crate::receiver::{Receiver, focuses};
use crate::subscriptions::subscription;
use serde_json::{Value, json};

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.audit_flush_ms = 50;
        s.alert_interval_secs = 1;
    })
    .await
}

/// The Communications notified so far, newest version of each last: (id, status, priority).
fn alerts_notified(got: &[crate::receiver::Received]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for r in got {
        for e in r.body["entry"].as_array().into_iter().flatten() {
            let c = &e["resource"];
            if c["resourceType"] == "Communication" {
                out.push((
                    c["id"].as_str().unwrap_or_default().to_string(),
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["priority"].as_str().unwrap_or_default().to_string(),
                    c["topic"]["text"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

pub async fn alerts(app: &TestApp, status: &str) -> Vec<Value> {
    let r = app
        .client
        .get(format!("{}/admin/alerts?status={status}", app.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["alerts"]
        .as_array()
        .unwrap()
        .clone()
}

async fn an_alert_is_raised_delivered_shown_and_resolved(app: TestApp) {
    let rules_url = format!("{}/admin/alerts/rules", app.root);

    // the shipped rules are in force until someone sets theirs; wrong ones are told, not kept
    let shipped: Value = app
        .client
        .get(&rules_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shipped["version"], 0);
    assert!(shipped["rules"].as_array().unwrap().len() >= 6, "{shipped}");
    let wrong =
        json!({"rules": [{"name": "x", "kind": "queue-age", "queue": "nowhere", "seconds": 1}]});
    let r = app
        .client
        .put(&rules_url)
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let problems = r.json::<Value>().await.unwrap()["problems"].to_string();
    assert!(problems.contains("queue is"), "{problems}");
    // "night" is this hour and the next in UTC, whenever the test runs
    let hour = chrono::Timelike::hour(&chrono::Utc::now());
    let rules = json!({"rules": [
        {"name": "exception-queue", "kind": "queue-age", "queue": "hl7v2-failed", "seconds": 0, "severity": "critical"},
        {"name": "feed-errors", "kind": "error-rate", "feed": "*", "maxShare": 0.5, "minutes": 60, "minMessages": 1},
        {"name": "bulk-reads", "kind": "reads", "agent": "*", "patients": 3, "minutes": 60},
        {"name": "night-reads", "kind": "night-reads", "agent": "*", "patients": 3, "minutes": 60,
         "fromHour": hour, "toHour": (hour + 2) % 24, "timeZone": "UTC"}
    ]});
    let r = app
        .client
        .put(&rules_url)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
    // a patient's token may neither read nor set them
    let token = app.token_for("patient/*.rs", Some("p1"));
    let r = app
        .anonymous
        .get(&rules_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // an operator's app subscribes to the alerts
    let hook = Receiver::start().await;
    app.create(&subscription("ops-alert", &[], &hook.url, "full-resource"))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;

    // a lab result that cannot be applied: the exception queue is not empty
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&oru("AL1", "MRN700", "F", "high")).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    let got = hook
        .wait_until(15, "the alert's notification", |g| {
            alerts_notified(g)
                .iter()
                .any(|a| a.3.starts_with("exception-queue"))
        })
        .await;
    let raised = alerts_notified(&got)
        .into_iter()
        .find(|a| a.3.starts_with("exception-queue"))
        .unwrap();
    assert_eq!(raised.1, "in-progress");
    assert_eq!(raised.2, "urgent");
    assert_eq!(raised.3, "exception-queue: queue hl7v2-failed");
    assert!(
        focuses(&got.last().unwrap().body)
            .iter()
            .any(|f| f.contains("Communication/"))
    );
    let firing = alerts(&app, "firing").await;
    let queue_alert = firing
        .iter()
        .find(|a| a["rule"] == "exception-queue")
        .unwrap();
    assert_eq!(queue_alert["id"], raised.0.as_str());
    assert!(
        queue_alert["detail"]
            .as_str()
            .unwrap()
            .contains("1 waiting"),
        "{firing:?}"
    );
    // the feed's one message failed: over its error rate too, said in words
    let got = hook
        .wait_until(15, "the error-rate alert", |g| {
            alerts_notified(g)
                .iter()
                .any(|a| a.3.starts_with("feed-errors"))
        })
        .await;
    let errors = alerts_notified(&got)
        .into_iter()
        .find(|a| a.3.starts_with("feed-errors"))
        .unwrap();
    assert!(errors.3.starts_with("feed-errors: feed "), "{errors:?}");
    let firing = alerts(&app, "firing").await;
    let detail = firing.iter().find(|a| a["rule"] == "feed-errors").unwrap()["detail"].clone();
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("1 of 1 messages not applied"),
        "{detail}"
    );
    // raised once: later turns while they hold do not raise them again
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(alerts(&app, "firing").await.len(), 2);
    // the Communication is a resource like any other
    let c = app.get(&format!("Communication/{}", raised.0)).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["category"][0]["coding"][0]["code"], "alert");

    // one client reads three patients' records, one by id and two through a search (what a
    // search shows counts as read): unusual data movement, by this rule
    let mut ids = Vec::new();
    for n in 0..3 {
        let (id, _) = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": format!("Read{n}")}]}))
            .await;
        ids.push(id);
    }
    assert_eq!(app.get(&format!("Patient/{}", ids[0])).await.status, 200);
    let found = app.get(&format!("Patient?_id={},{}", ids[1], ids[2])).await;
    assert_eq!(found.json()["entry"].as_array().map(Vec::len), Some(2));
    hook.wait_until(15, "the reads alerts", |g| {
        let told = alerts_notified(g);
        ["bulk-reads: agent ", "night-reads: agent "]
            .iter()
            .all(|rule| told.iter().any(|a| a.3.starts_with(rule)))
    })
    .await;
    let firing = alerts(&app, "firing").await;
    let reads = firing.iter().find(|a| a["rule"] == "bulk-reads").unwrap();
    assert!(
        reads["detail"]
            .as_str()
            .unwrap()
            .contains("read 3 patients"),
        "{reads}"
    );
    assert_eq!(reads["severity"], "warning");
    let night = firing.iter().find(|a| a["rule"] == "night-reads").unwrap();
    let detail = night["detail"].as_str().unwrap();
    assert!(
        detail.contains("read 3 patients") && detail.contains("at night"),
        "{night}"
    );

    // the message corrected and replayed: the exception queue is empty, the alert resolved
    let queue: Value = app
        .client
        .get(format!("{}/admin/hl7v2/messages?status=failed", app.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = queue["messages"][0]["id"].as_str().unwrap().to_string();
    let r = app
        .client
        .post(format!("{}/admin/hl7v2/messages/{id}/replay", app.root))
        .body(oru("AL1", "MRN700", "F", "4.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "AA");
    // the queue is empty and the feed's one message applied: both alerts resolved
    hook.wait_until(15, "the alerts resolved", |g| {
        let told = alerts_notified(g);
        [&raised.0, &errors.0]
            .iter()
            .all(|id| told.iter().any(|a| &&a.0 == id && a.1 == "completed"))
    })
    .await;
    let resolved = alerts(&app, "resolved").await;
    let mut rules: Vec<&str> = resolved.iter().filter_map(|a| a["rule"].as_str()).collect();
    rules.sort();
    assert_eq!(rules, ["exception-queue", "feed-errors"], "{resolved:?}");
    assert!(resolved.iter().all(|a| a["resolvedAt"].is_string()));

    // the dashboard shows what fires
    let (http, cookie) = crate::helpers::admin_session(&app).await;
    let page = http
        .get(format!("{}/admin", app.root))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-rule=\"bulk-reads\""), "{page}");
    assert!(!page.contains("data-rule=\"exception-queue\""), "{page}");
}

crate::on_both_backends_with!(spawn, an_alert_is_raised_delivered_shown_and_resolved);

/// A feed slower than its target raises the latency alert: here the target is every message
/// within the shortest latency bound (10 ms), and the message is a panel of 300 results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_over_its_latency_target_raises_an_alert() {
    let app = spawn(Backend::Sqlite).await;
    let rules = json!({"rules": [
        {"name": "lab-latency", "kind": "latency", "feed": "*", "share": 1.0, "seconds": 0.01,
         "minutes": 60, "minMessages": 1, "severity": "critical"}
    ]});
    let r = crate::routing::admin_put(&app, "alerts/rules", &rules).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut panel = oru("LAT1", "MRN710", "F", "4.1");
    for n in 7..307 {
        panel.push_str(&format!(
            "OBX|{n}|NM|2823-3^Potassium^LN||4.{}|mmol/L^mmol/L^UCUM|3.5-5.1|N|||F\r",
            n % 10
        ));
    }
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(&panel).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let mut firing = Vec::new();
    for _ in 0..150 {
        firing = alerts(&app, "firing").await;
        if !firing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let alert = firing
        .iter()
        .find(|a| a["rule"] == "lab-latency")
        .unwrap_or_else(|| panic!("no latency alert: {firing:?}"));
    assert_eq!(alert["severity"], "critical");
    let detail = alert["detail"].as_str().unwrap();
    assert!(
        detail.contains("0.0% of 1 messages answered within 0.01 s"),
        "{detail}"
    );
}

/// A target that has taken nothing for the rule's minute raises `target-down` (not before);
/// back up, it takes what waited and the alert is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_for_a_minute_raises_an_alert_resolved_when_it_is_back() {
    use crate::legacy_emr::LegacyEmr;
    use crate::routing::{admin_put, adt, routes, send};
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.alert_interval_secs = 1;
        s.route_retry_max_secs = 2;
    })
    .await;
    let legacy = LegacyEmr::start().await;
    legacy.down();
    let r = admin_put(&app, "routes", &routes(&legacy)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rules = json!({"rules": [{"name": "legacy-down", "kind": "target-down",
        "target": "legacy-emr", "minutes": 1, "severity": "critical"}]});
    let r = admin_put(&app, "alerts/rules", &rules).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let stay = ("V310", "O", "CLINIC^2");
    send(&app, &adt("REG", "A08", "TD1", ("M310", "Waiting"), stay)).await;
    let started = std::time::Instant::now();
    let down = |a: &[Value]| a.iter().find(|a| a["rule"] == "legacy-down").cloned();
    let mut raised = None;
    while started.elapsed() < std::time::Duration::from_secs(100) {
        raised = down(&alerts(&app, "firing").await);
        if raised.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let raised = raised.expect("target-down raised within 100 s");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(55),
        "raised after {:?}, before its minute",
        started.elapsed()
    );
    let detail = raised["detail"].as_str().unwrap();
    assert!(
        detail.contains("has taken nothing for") && detail.contains("1 messages waiting"),
        "{detail}"
    );
    assert_eq!(raised["severity"], "critical");
    legacy.up().await;
    legacy.wait_for(1, 30).await;
    let mut resolved = None;
    for _ in 0..60 {
        resolved = down(&alerts(&app, "resolved").await);
        if resolved.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        resolved.is_some(),
        "resolved once the target took what waited"
    );
}
