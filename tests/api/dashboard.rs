//! The operations dashboard (`/admin`) used by a person in headless Chromium, and the
//! transaction log behind it (`GET /admin/transactions`): refusals before sign-in and to a
//! user without the admin role; an admin sees a feed in red, corrects the failed message in
//! the editor, replays it, and sees the feed green. Screenshots in
//! `target/tmp/dashboard-screenshots/`.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::{found, patient};
use crate::hl7v2_results::oru;
use crate::mllp_client::Mllp;
use diesel::prelude::*;
use emrsync::store::schema::hl7v2_messages;
use serde_json::Value;

const FEED: &str = "LAB@GOOD HEALTH";

async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.audit_flush_ms = 50;
    })
    .await
}

/// An admin and a user without the role; results from the lab, the last one refused at
/// OBX-5 (a potassium of "high").
async fn a_lab_feed_with_a_failure(app: &TestApp) -> Mllp {
    let mut db = app.db();
    emrsync::auth::users::add(&mut db, "ops", "s3cret-pass", "Practitioner/ops").unwrap();
    assert!(emrsync::auth::users::grant(&mut db, "ops", "admin").unwrap());
    emrsync::auth::users::add(&mut db, "clerk", "s3cret-pass", "Practitioner/clerk").unwrap();
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    for n in 1..=5 {
        let ack = mllp
            .send(&oru(&format!("OK{n}"), &format!("MRN90{n}"), "F", "4.2"))
            .await;
        assert_eq!(ack.code(), "AA", "{}", ack.text);
    }
    let ack = mllp.send(&oru("BAD1", "MRN950", "F", "high")).await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    mllp
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_corrects_and_replays_a_failed_message_in_chromium() {
    let app = spawn(Backend::Sqlite).await;
    let _mllp = a_lab_feed_with_a_failure(&app).await;

    // without a session: the pages send to the login, a form posted is refused
    let http = no_redirects();
    let r = http
        .get(format!("{}/admin", app.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/login?next=%2Fadmin");
    let id: String = hl7v2_messages::table
        .filter(hl7v2_messages::control_id.eq("BAD1"))
        .select(hl7v2_messages::id)
        .get_result(&mut app.db())
        .unwrap();
    let r = http
        .post(format!("{}/admin/messages/{id}/replay", app.root))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("message=MSH%7C")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // a forged cookie is no session
    let r = http
        .get(format!("{}/admin/messages", app.root))
        .header("cookie", "emrsync_admin=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    let dir = std::env::var("EMRSYNC_TEST_BROWSER").expect(
        "EMRSYNC_TEST_BROWSER is not set: run the suite with scripts/test, which installs \
         Chromium and tests/browser's npm packages",
    );
    let shots = format!("{}/dashboard-screenshots", env!("CARGO_TARGET_TMPDIR"));
    let root = app.root.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(format!("{dir}/dashboard.mjs"))
            .args([
                &root,
                "ops",
                "s3cret-pass",
                "clerk",
                "s3cret-pass",
                FEED,
                "high",
                "5.2",
            ])
            .arg(&shots)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{seen}");
    assert_eq!(seen["unsigned_at"], "/admin/login", "{seen}");
    assert_eq!(seen["clerk_at"], "/admin/login", "{seen}");
    assert!(
        seen["clerk_refusal"]
            .as_str()
            .unwrap()
            .contains("admin role"),
        "{seen}"
    );
    assert_eq!(seen["admin_at"], "/admin", "{seen}");
    assert_eq!(seen["health_before"], "red", "{seen}");
    assert_eq!(seen["queue_tile"], "1", "{seen}");
    assert_eq!(seen["queue_rows"], 1, "{seen}");
    // the error's place marked in the raw text: OBX-5 of the first OBX
    assert_eq!(seen["marked"], "high", "{seen}");
    assert!(seen["error"].as_str().unwrap().contains("OBX-5"), "{seen}");
    assert!(
        seen["banner"].as_str().unwrap().contains("applied (AA)"),
        "{seen}"
    );
    assert_eq!(seen["status_after"], "replayed", "{seen}");
    assert_eq!(seen["health_after"], "green", "{seen}");
    assert!(seen["audit_rows"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["after_sign_out_at"], "/admin/login", "{seen}");

    // the correction reached the store: the potassium as corrected
    let pid = patient(&app, "MRN950").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let obs = found(
        &app.get(&format!(
            "Observation?patient=Patient/{pid}&code=http://loinc.org|2823-3"
        ))
        .await,
    );
    assert_eq!(obs[0]["valueQuantity"]["value"], 5.2);

    // the dashboard's sign-ins, reads and replay are in the audit trail, by name
    let wanted = [
        ("login", "failure"),
        ("login", "success"),
        ("read", "success"),
        ("replay", "success"),
    ];
    let mut actions: Vec<(String, String)> = Vec::new();
    for _ in 0..100 {
        actions = emrsync::store::audit::all(&mut app.db())
            .unwrap()
            .into_iter()
            .filter(|e| e.actor.ends_with(" (dashboard)"))
            .map(|e| (e.action, e.outcome))
            .collect();
        let has = |w: &(&str, &str)| actions.iter().any(|(a, o)| (a.as_str(), o.as_str()) == *w);
        if wanted.iter().all(has) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for w in wanted {
        assert!(
            actions.iter().any(|(a, o)| (a.as_str(), o.as_str()) == w),
            "{w:?} in {actions:?}"
        );
    }
}

async fn the_transaction_log_is_searched_by_mrn_control_id_and_patient(app: TestApp) {
    let _mllp = a_lab_feed_with_a_failure(&app).await;
    let log = |q: &str| {
        let req = app
            .client
            .get(format!("{}/admin/transactions?{q}", app.root));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["entries"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    // the failed message has no Patient, but its MRN finds it
    let by_mrn = log("mrn=MRN950").await;
    assert_eq!(by_mrn.len(), 1, "{by_mrn:?}");
    assert_eq!(by_mrn[0]["controlId"], "BAD1");
    assert_eq!(by_mrn[0]["disposition"], "failed");
    assert_eq!(by_mrn[0]["errorLocation"], "OBX-5");
    assert_eq!(by_mrn[0]["source"], FEED);
    // an applied one by its control id, with the Patient it wrote; that Patient finds it
    let by_control = log("control-id=OK3").await;
    assert_eq!(by_control.len(), 1, "{by_control:?}");
    assert_eq!(by_control[0]["disposition"], "applied");
    assert_eq!(by_control[0]["ack"], "AA");
    let pid = by_control[0]["patient"].as_str().unwrap().to_string();
    assert_eq!(pid, patient(&app, "MRN903").await[0]["id"]);
    let by_patient = log(&format!("patient=Patient/{pid}")).await;
    assert_eq!(by_patient.len(), 1);
    assert_eq!(by_patient[0]["controlId"], "OK3");
    // by correlation id, and by time and disposition
    let corr = by_control[0]["correlationId"].as_str().unwrap();
    assert_eq!(log(&format!("correlation-id={corr}")).await.len(), 1);
    assert_eq!(log("direction=in&disposition=applied").await.len(), 5);
    assert_eq!(log("since=2999-01-01").await.len(), 0);
    // newest first
    let all = log("direction=in").await;
    assert_eq!(all[0]["controlId"], "BAD1");
    // a wrong word is told, not ignored
    let r = app
        .client
        .get(format!("{}/admin/transactions?since=yesterday", app.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // patient data: a patient's token may not
    let token = app.token_for("patient/*.rs", Some(&pid));
    let r = app
        .anonymous
        .get(format!("{}/admin/transactions", app.root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

crate::on_both_backends_with!(
    spawn,
    the_transaction_log_is_searched_by_mrn_control_id_and_patient
);
