//! Sync out (issue 23): a legacy EMR (`legacy_emr`, a real MLLP receiver) is a target of
//! routes written as data. A patient's stay (ED arrival, admission, transfer, discharge) comes
//! in over MLLP from the registration system and reaches the legacy EMR as ADT, in order, by
//! the MRN it knows; what the legacy EMR itself sent is not echoed back; the EMR down for a
//! while gets what it missed, in order, when it returns; a message it refuses waits in the
//! outbound exception queue and goes on replay; routes are kept with who changed them.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::legacy_emr::{LegacyEmr, field};
use crate::mllp_client::Mllp;
use serde_json::{Value, json};
use std::time::Duration;

const GH: &str = "urn:oid:1.2.840.114350.1";

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.route_retry_max_secs = 1;
    })
    .await
}

/// An ADT message from `app` for patient (`mrn`, family name) in visit (`visit`, class PV1-2,
/// bed PV1-3).
pub fn adt(
    app: &str,
    trigger: &str,
    control: &str,
    (mrn, family): (&str, &str),
    (visit, class, bed): (&str, &str, &str),
) -> String {
    let discharge = if trigger == "A03" {
        "20261206180000"
    } else {
        ""
    };
    format!(
        "MSH|^~\\&|{app}|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20261206120000\r\
         PID|1||{mrn}^^^GH&{oid}&ISO^MR||{family}^Ann||19700101|F\r\
         PV1|1|{class}|{bed}^^^GOOD HEALTH||||||||||||||||{visit}^^^GH&{oid}&ISO^VN|||||||||||||||||||||||||20261206113000|{discharge}\r",
        oid = GH.trim_start_matches("urn:oid:"),
    )
}

pub fn routes(legacy: &LegacyEmr) -> Value {
    json!({"targets": [{
        "name": "legacy-emr",
        "channel": {"type": "mllp", "address": legacy.address(), "ack_timeout_ms": 2000},
        "format": {"type": "hl7v2", "receiving_application": "LEGACY", "receiving_facility": "GOOD HEALTH"},
        "events": [{"criteria": "Encounter"}, {"criteria": "Patient"}],
        "identifier_system": GH,
        "origins": ["hl7v2 LEGACY@GOOD HEALTH"]
    }]})
}

pub async fn admin_put(app: &TestApp, path: &str, body: &Value) -> crate::helpers::Resp {
    let url = format!("{}/admin/{path}", app.root);
    app.send(
        app.client
            .put(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

pub async fn admin_get(app: &TestApp, path: &str) -> Value {
    let r = app.get_url(&format!("{}/admin/{path}", app.root)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The outbound summary once `done` holds of it, or the last one after 10 s. A target has a
/// message before the hub has recorded the target's ACK, so a summary read right after the
/// target got it may still count it as pending.
pub async fn summary_when(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    let mut summary = admin_get(app, "outbound/summary").await;
    for _ in 0..100 {
        if done(&summary) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        summary = admin_get(app, "outbound/summary").await;
    }
    summary
}

pub async fn send(app: &TestApp, message: &str) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp.send(message).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
}

pub fn events(got: &[String]) -> Vec<String> {
    got.iter().map(|m| field(m, "MSH", 9)).collect()
}

async fn a_stay_reaches_the_legacy_emr_in_order_without_echo(app: TestApp) {
    let legacy = LegacyEmr::start().await;
    let r = admin_put(&app, "routes", &routes(&legacy)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // ED arrival, admission, a transfer, the discharge, from the registration system
    let stay = [
        ("A04", "E", "ED^1"),
        ("A01", "I", "4W^401"),
        ("A02", "I", "4W^402"),
        ("A03", "I", "4W^402"),
    ];
    for (n, (trigger, class, bed)) in stay.iter().enumerate() {
        send(
            &app,
            &adt(
                "REG",
                trigger,
                &format!("R{n}"),
                ("M100", "Rivera"),
                ("V100", class, bed),
            ),
        )
        .await;
    }
    // the legacy EMR's own update of another patient is not sent back to it
    send(
        &app,
        &adt(
            "LEGACY",
            "A08",
            "L1",
            ("M200", "Echo"),
            ("V200", "O", "CLINIC^1"),
        ),
    )
    .await;
    let got = legacy.wait_for(4, 20).await;
    assert_eq!(
        events(&got),
        [
            "ADT^A04^ADT_A01",
            "ADT^A01^ADT_A01",
            "ADT^A02^ADT_A02",
            "ADT^A03^ADT_A03"
        ],
        "{got:#?}"
    );
    for m in &got {
        assert!(field(m, "PID", 3).starts_with("M100^^^"), "{m}");
        assert_eq!(field(m, "PID", 5), "Rivera^Ann", "{m}");
        assert_eq!(field(m, "MSH", 5), "LEGACY");
    }
    assert_eq!(field(&got[0], "PV1", 2), "E");
    assert_eq!(field(&got[1], "PV1", 2), "I");
    assert!(field(&got[2], "PV1", 3).contains("402"), "{}", got[2]);
    assert!(!field(&got[3], "PV1", 45).is_empty(), "{}", got[3]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        legacy.got().iter().all(|m| !m.contains("Echo")),
        "echoed: {:#?}",
        legacy.got()
    );
    let sent = admin_get(&app, "outbound?target=legacy-emr&status=sent").await;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 4, "{sent}");
    let kinds: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ADT^A03", "ADT^A02", "ADT^A01", "ADT^A04"]);
}

async fn a_target_down_catches_up_in_order_and_a_refusal_waits_for_replay(app: TestApp) {
    let legacy = LegacyEmr::start().await;
    legacy.down();
    let r = admin_put(&app, "routes", &routes(&legacy)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (n, family) in ["First", "Second", "Third"].iter().enumerate() {
        send(
            &app,
            &adt(
                "REG",
                "A08",
                &format!("D{n}"),
                ("M300", family),
                ("V300", "O", "CLINIC^2"),
            ),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = admin_get(&app, "outbound?target=legacy-emr&status=pending").await;
    let held = held["messages"].as_array().unwrap().clone();
    assert_eq!(held.len(), 3, "{held:#?}");
    assert!(
        held.iter().any(|m| m["attempts"].as_i64().unwrap() > 0),
        "{held:#?}"
    );
    legacy.up().await;
    let got = legacy.wait_for(3, 20).await;
    let names: Vec<String> = got.iter().map(|m| field(m, "PID", 5)).collect();
    assert_eq!(names, ["First^Ann", "Second^Ann", "Third^Ann"]);

    // a refusal goes to the exception queue; the queue goes on
    legacy.refuse(Some("Refused"));
    send(
        &app,
        &adt(
            "REG",
            "A08",
            "D3",
            ("M300", "Refused"),
            ("V300", "O", "CLINIC^2"),
        ),
    )
    .await;
    send(
        &app,
        &adt(
            "REG",
            "A08",
            "D4",
            ("M300", "Accepted"),
            ("V300", "O", "CLINIC^2"),
        ),
    )
    .await;
    let got = legacy.wait_for(4, 20).await;
    assert_eq!(field(&got[3], "PID", 5), "Accepted^Ann");
    let failed = admin_get(&app, "outbound?status=failed").await;
    let failed = failed["messages"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["ackCode"], "AE");
    assert_eq!(failed[0]["lastError"], "PID-5 Name not accepted here");
    let seq = failed[0]["seq"].as_i64().unwrap();
    let one = admin_get(&app, &format!("outbound/{seq}")).await;
    assert!(
        one["text"].as_str().unwrap().contains("Refused^Ann"),
        "{one}"
    );
    // the team fixes the cause (here: the EMR takes it now) and replays
    legacy.refuse(None);
    let url = format!("{}/admin/outbound/{seq}/replay", app.root);
    let r = app.send(app.client.post(&url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = legacy.wait_for(5, 20).await;
    assert_eq!(field(&got[4], "PID", 5), "Refused^Ann");
    let r = app.send(app.client.post(&url)).await;
    assert_eq!(r.status, 409, "a sent message is not replayed: {}", r.text);
    let summary = summary_when(&app, |s| s["targets"]["legacy-emr"]["sent"] == 5).await;
    assert_eq!(summary["targets"]["legacy-emr"]["sent"], 5, "{summary}");

    // retention forgets what was sent, never what waits in the exception queue
    legacy.refuse(Some("Kept"));
    send(
        &app,
        &adt(
            "REG",
            "A08",
            "D5",
            ("M300", "Kept"),
            ("V300", "O", "CLINIC^2"),
        ),
    )
    .await;
    let mut failed = 0;
    for _ in 0..200 {
        failed = admin_get(&app, "outbound?status=failed").await["messages"]
            .as_array()
            .unwrap()
            .len();
        if failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed, 1);
    let store = app.store();
    let keep_a_day = emrsync::ops::retention::Retention {
        hl7v2_archive_days: 1,
        event_days: 1,
        audit_days: 0,
        stream: false,
    };
    let later = emrsync::fhir::resource::now_micros() + 2 * 86_400 * 1_000_000;
    let swept = emrsync::ops::retention::sweep(&store, keep_a_day, later).unwrap();
    assert_eq!(swept.route_messages, 5, "{swept:?}");
    let left = admin_get(&app, "outbound").await;
    let left = left["messages"].as_array().unwrap().clone();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["status"], "failed");
}

async fn routes_are_checked_and_kept_with_who_changed_them(app: TestApp) {
    let legacy = LegacyEmr::start().await;
    let mut bad = routes(&legacy);
    bad["targets"][0]["events"] =
        json!([{"criteria": "Encounter", "filters": ["Encounter?colour=red"]}]);
    bad["targets"][0]["channel"]["address"] = json!("no port");
    let r = admin_put(&app, "routes", &bad).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("colour") && r.text.contains("no port"),
        "{}",
        r.text
    );
    let first = admin_put(&app, "routes", &routes(&legacy)).await.json();
    assert_eq!(first["revision"]["version"], 1);
    assert_eq!(first["revision"]["summary"], "added legacy-emr");
    // the same routes again are no new version
    let again = admin_put(&app, "routes", &routes(&legacy)).await.json();
    assert_eq!(again["revision"]["version"], 1);
    let mut off = routes(&legacy);
    off["targets"][0]["enabled"] = json!(false);
    let second = admin_put(&app, "routes", &off).await.json();
    assert_eq!(second["revision"]["summary"], "changed legacy-emr");
    let history = admin_get(&app, "routes/history").await;
    let versions: Vec<i64> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);
    assert!(
        !history["revisions"][0]["actor"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let v1 = admin_get(&app, "routes/history/1").await;
    assert_eq!(v1["routes"]["targets"][0]["enabled"], true);
    // a disabled target is sent nothing
    send(
        &app,
        &adt("REG", "A04", "X1", ("M400", "Quiet"), ("V400", "E", "ED^2")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(legacy.got().is_empty(), "{:#?}", legacy.got());
    // a token that may not read every patient may not see or change routes
    let narrow = app.token_for("system/Observation.read", None);
    let r = app
        .send(
            app.anonymous
                .get(format!("{}/admin/routes", app.root))
                .bearer_auth(narrow),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

async fn only_the_source_of_truth_changes_what_it_owns(app: TestApp) {
    let routes = json!({"truth": [{
        "domain": "adt", "resources": ["Patient"], "elements": ["name", "birthDate", "gender"],
        "owners": ["hl7v2 REG@GOOD HEALTH"]}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(
        &app,
        &adt("REG", "A04", "T1", ("M500", "Owner"), ("V500", "E", "ED^3")),
    )
    .await;
    // the lab's message renaming the patient is refused, and kept for review
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp
        .send(&adt(
            "LAB",
            "A08",
            "T2",
            ("M500", "Intruder"),
            ("V500", "E", "ED^3"),
        ))
        .await;
    assert_eq!(ack.code(), "AE", "{}", ack.text);
    assert!(
        ack.text
            .contains("Patient.name belongs to the 'adt' domain")
            && ack.text.contains("hl7v2 LAB@GOOD HEALTH may not change it"),
        "{}",
        ack.text
    );
    let failed = app
        .get_url(&format!("{}/admin/hl7v2/messages?status=failed", app.root))
        .await
        .json();
    assert_eq!(failed["messages"].as_array().unwrap().len(), 1, "{failed}");
    let found = app.get("Patient?identifier=M500").await.json();
    let mut patient = found["entry"][0]["resource"].clone();
    assert_eq!(patient["name"][0]["family"], "Owner");
    // a REST client: 409 with an OperationOutcome for an owned element...
    let id = patient["id"].as_str().unwrap().to_string();
    patient["birthDate"] = json!("1971-01-01");
    let r = app.put(&format!("Patient/{id}"), &patient).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["issue"][0]["code"], "business-rule");
    assert!(r.text.contains("Patient.birthDate"), "{}", r.text);
    // ...and its change to what no domain covers goes through
    patient["birthDate"] = json!("1970-01-01");
    patient["telecom"] = json!([{"system": "phone", "value": "555-0100"}]);
    let r = app.put(&format!("Patient/{id}"), &patient).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A rule that holds rather than refuses: the lab's rename is taken (AA, saying it is held),
/// changes nothing, and waits for a person; released, it applies, its Provenance naming who
/// released it; a REST client's change is still refused (it cannot wait for review).
async fn a_held_change_waits_for_a_person_and_applies_on_release(app: TestApp) {
    let routes = json!({"truth": [{
        "domain": "adt", "resources": ["Patient"], "elements": ["name"],
        "owners": ["hl7v2 REG@GOOD HEALTH"], "on_conflict": "hold"}]});
    let r = admin_put(&app, "routes", &routes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send(
        &app,
        &adt("REG", "A04", "H1", ("M600", "Owner"), ("V600", "E", "ED^3")),
    )
    .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let rename = adt(
        "LAB",
        "A08",
        "H2",
        ("M600", "Renamed"),
        ("V600", "E", "ED^3"),
    );
    let ack = mllp.send(&rename).await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert!(ack.text.contains("held for review"), "{}", ack.text);
    async fn family(app: &TestApp) -> Value {
        let found = app.get("Patient?identifier=M600").await.json();
        found["entry"][0]["resource"]["name"][0]["family"].clone()
    }
    assert_eq!(family(&app).await, "Owner");
    async fn messages(app: &TestApp, status: &str) -> Value {
        let url = format!("{}/admin/hl7v2/messages?status={status}", app.root);
        app.get_url(&url).await.json()["messages"].clone()
    }
    let held = messages(&app, "held").await;
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");
    assert!(held[0]["error"].as_str().unwrap().contains("Patient.name"));
    // the same message sent again is held again, not applied
    assert_eq!(mllp.send(&rename).await.code(), "AA");
    assert_eq!(family(&app).await, "Owner");
    // a person releases it
    let url = format!(
        "{}/admin/hl7v2/messages/{}/release",
        app.root,
        held[0]["id"].as_str().unwrap()
    );
    let r = app.send(app.client.post(&url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["code"], "AA", "{}", r.text);
    assert_eq!(family(&app).await, "Renamed");
    assert!(messages(&app, "held").await.as_array().unwrap().is_empty());
    let provenance = app
        .get(&format!(
            "Provenance/{}",
            r.json()["correlationId"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(
        provenance["agent"][2]["type"]["coding"][0]["code"], "verifier",
        "{provenance}"
    );
    // released once: not again
    let again = app.send(app.client.post(&url)).await;
    assert_eq!(again.status, 409, "{}", again.text);
    // a client's change to what the rule holds is refused, not held
    let found = app.get("Patient?identifier=M600").await.json();
    let mut patient = found["entry"][0]["resource"].clone();
    patient["name"][0]["family"] = json!("ByClient");
    let r = app
        .put(
            &format!("Patient/{}", patient["id"].as_str().unwrap()),
            &patient,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
}

crate::on_both_backends_with!(
    spawn,
    only_the_source_of_truth_changes_what_it_owns,
    a_held_change_waits_for_a_person_and_applies_on_release,
    a_stay_reaches_the_legacy_emr_in_order_without_echo,
    a_target_down_catches_up_in_order_and_a_refusal_waits_for_replay,
    routes_are_checked_and_kept_with_who_changed_them,
);
