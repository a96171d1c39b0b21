//! What a search or a history showed is in the audit trail (issue 24): one AuditEvent per
//! patient whose records the page disclosed, as IHE BALP's Patient Query asks, so that an
//! auditor asking "who saw this patient's record" finds a search by name that showed it, and
//! a client paging through everyone's records is counted by the `reads` alert.

use crate::audit::{correlation, entities, of, spawn, trail, with_id};
use crate::helpers::{Backend, TestApp, mint};
use serde_json::{Value, json};

async fn a_search_is_audited_once_per_patient_it_showed(app: TestApp) {
    let auditor = mint(&app.database, &app.base, "system/AuditEvent.rs", None);
    let mut patients = Vec::new();
    for given in ["Ann", "Bo"] {
        let (id, _) = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": "Shownfamily", "given": [given]}]}))
            .await;
        app.create(&json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("Patient/{id}")}}))
            .await;
        patients.push(id);
    }
    let (a, b) = (
        format!("Patient/{}", patients[0]),
        format!("Patient/{}", patients[1]),
    );
    for (path, id) in [
        ("Patient?family=Shownfamily", "d-patients"),
        ("Observation?code=http://loinc.org|8867-4", "d-observations"),
        ("Observation/_history", "d-history"),
        ("Patient?family=Nobodyhere", "d-nothing"),
    ] {
        assert_eq!(
            with_id(&app, app.client.get(app.url(path)), id).await,
            200,
            "{path}"
        );
    }
    let events = trail(&app, &auditor, "date=ge2026-01-01", |e| {
        ["d-patients", "d-observations", "d-history", "d-nothing"]
            .iter()
            .all(|id| !of(e, id).is_empty())
    })
    .await;
    let patients_of = |id: &str| {
        let mut p: Vec<String> = of(&events, id)
            .iter()
            .flat_map(|e| entities(e))
            .filter(|r| r.starts_with("Patient/"))
            .collect();
        p.sort();
        p
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    for id in ["d-patients", "d-observations", "d-history"] {
        assert_eq!(
            of(&events, id).len(),
            2,
            "{id}: one event per patient shown"
        );
        assert_eq!(patients_of(id), both, "{id}");
        for e in of(&events, id) {
            let query = e["entity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["role"]["code"] == "24");
            assert_eq!(
                query,
                id != "d-history",
                "{id}: the query kept on each: {e:#}"
            );
        }
    }
    // a search that showed no one is still one event, about no patient
    assert_eq!(of(&events, "d-nothing").len(), 1);
    assert_eq!(patients_of("d-nothing"), Vec::<String>::new());

    // the auditor's question: the searches that showed Bo's record are in Bo's trail
    let about_b = trail(&app, &auditor, &format!("patient={}", patients[1]), |_| {
        true
    })
    .await;
    let seen: Vec<&str> = about_b.iter().map(correlation).collect();
    for id in ["d-patients", "d-observations", "d-history"] {
        assert!(
            seen.contains(&id),
            "{id} missing from {b}'s trail: {seen:?}"
        );
    }
    let agents: Vec<&Value> = about_b
        .iter()
        .map(|e| &e["agent"][0]["who"]["display"])
        .collect();
    assert!(
        agents
            .iter()
            .all(|a| a.as_str().is_some_and(|a| a.starts_with("client"))),
        "{agents:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_is_audited_once_per_patient_it_showed_on_sqlite() {
    a_search_is_audited_once_per_patient_it_showed(spawn(Backend::Sqlite).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_is_audited_once_per_patient_it_showed_on_postgres() {
    a_search_is_audited_once_per_patient_it_showed(spawn(Backend::Postgres).await).await
}

/// A notification is a disclosure too: each change it told a subscriber of is an AuditEvent
/// under the change's own correlation id, naming the resource and its patient, so that
/// "where did this result go" is answered from the write's correlation id or the patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_audited_per_change_under_the_changes_correlation_id() {
    let app = spawn(Backend::Sqlite).await;
    let auditor = mint(&app.database, &app.base, "system/AuditEvent.rs", None);
    let hook = crate::receiver::Receiver::start().await;
    let (sid, _) = app
        .create(&crate::subscriptions::subscription(
            "resource-change",
            &[],
            &hook.url,
            "id-only",
        ))
        .await;
    hook.wait_until(10, "the handshake", |g| !g.is_empty())
        .await;
    let (pid, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Notified"}]}))
        .await;
    let r = app
        .post_with(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                "subject": {"reference": format!("Patient/{pid}")}}),
            ("X-Request-Id", "d-glucose"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let oid = r.json()["id"].as_str().unwrap().to_string();
    let told = |e: &[Value]| {
        of(e, "d-glucose")
            .iter()
            .any(|x| x["type"]["code"] == "110106")
    };
    let events = trail(&app, &auditor, &format!("entity=Observation/{oid}"), told).await;
    let mut kinds: Vec<&str> = of(&events, "d-glucose")
        .iter()
        .map(|e| e["type"]["code"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["110106", "rest"],
        "the write and its notification: {events:#?}"
    );
    let delivery = of(&events, "d-glucose")
        .into_iter()
        .find(|e| e["type"]["code"] == "110106")
        .unwrap();
    let refs = entities(delivery);
    assert!(
        refs.iter()
            .any(|r| r.starts_with(&format!("Observation/{oid}/"))),
        "{refs:?}"
    );
    assert!(refs.contains(&format!("Patient/{pid}")), "{refs:?}");
    let detail = delivery["outcomeDesc"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("Subscription/{sid}")), "{detail}");
    // and in the patient's trail, among the deliveries
    let about = trail(&app, &auditor, &format!("patient={pid}&type=110106"), |e| {
        !of(e, "d-glucose").is_empty()
    })
    .await;
    assert_eq!(of(&about, "d-glucose").len(), 1, "{about:#?}");
}
