//! Contained resources in search (issue 28): `_contained=true` finds them by their own
//! parameters and returns their containers or (`_containedType=contained`) themselves; chains
//! follow local references into them; updates, deletes and the backfill keep their index; and
//! nothing of them leaks into searches of stored resources.

use crate::helpers::{TestApp, link, matched_ids, sorted};
use crate::on_both_backends;
use serde_json::{Value, json};

on_both_backends!(
    contained_resources_are_searched_apart_and_returned_as_asked,
    the_contained_index_follows_updates_deletes_and_the_backfill,
    a_patient_app_finds_and_counts_its_own_containers_only,
);

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// A MedicationRequest holding one Medication of `code`, named by a local reference.
fn order(patient: &str, code: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": format!("Patient/{patient}")},
        "contained": [{"resourceType": "Medication", "id": "med1",
            "code": {"coding": [{"system": RXNORM, "code": code}]}}],
        "medicationReference": {"reference": "#med1"}})
}

async fn search(app: &TestApp, query: &str) -> Value {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    r.json()
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    sorted(matched_ids(&search(app, query).await))
}

async fn contained_resources_are_searched_apart_and_returned_as_asked(app: TestApp) {
    let (patient, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Okafor"}]}))
        .await;
    let (rx1, _) = app.create(&order(&patient, "1049502")).await;
    let (rx2, _) = app.create(&order(&patient, "197361")).await;
    // a stored Medication of the same code, and an order that points at it
    let (stored, _) = app
        .create(&json!({"resourceType": "Medication",
            "code": {"coding": [{"system": RXNORM, "code": "1049502"}]}}))
        .await;
    let (rx3, _) = app
        .create(
            &json!({"resourceType": "MedicationRequest", "status": "active",
            "intent": "order", "subject": {"reference": format!("Patient/{patient}")},
            "medicationReference": {"reference": format!("Medication/{stored}")}}),
        )
        .await;

    // by default only stored resources are searched
    assert_eq!(
        ids(&app, "Medication?code=1049502").await,
        [stored.as_str()]
    );
    // _contained=true: the containers of what matches, each once
    let b = search(&app, "Medication?code=1049502&_contained=true").await;
    assert_eq!(matched_ids(&b), [rx1.as_str()]);
    assert_eq!(b["total"], 1);
    let entry = &b["entry"][0];
    assert_eq!(entry["resource"]["resourceType"], "MedicationRequest");
    assert!(
        entry["fullUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/MedicationRequest/{rx1}")),
        "{entry}"
    );
    // _containedType=contained: the contained Medication itself, named inside its container
    let b = search(
        &app,
        "Medication?code=1049502&_contained=true&_containedType=contained",
    )
    .await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 1, "{b}");
    let entry = &b["entry"][0];
    assert_eq!(entry["resource"]["resourceType"], "Medication");
    assert_eq!(entry["resource"]["id"], "med1");
    assert!(
        entry["fullUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/MedicationRequest/{rx1}#med1")),
        "{entry}"
    );
    // a chain follows the local reference into the contained Medication, as R4 asks
    assert_eq!(
        ids(&app, "MedicationRequest?medication.code=1049502").await,
        sorted(vec![rx1.clone(), rx3.clone()])
    );
    assert_eq!(
        ids(&app, "MedicationRequest?medication.code=197361").await,
        [rx2.as_str()]
    );

    // pages of containers, forward, each container once
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(app.create(&order(&patient, "1049502")).await.0);
    }
    let mut seen = Vec::new();
    let mut next = Some("Medication?code=1049502&_contained=true&_count=2".to_string());
    while let Some(url) = next {
        let b = if url.starts_with("http") {
            let r = app.get_url(&url).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()
        } else {
            search(&app, &url).await
        };
        let page = matched_ids(&b);
        assert!(page.len() <= 2, "{b}");
        seen.extend(page);
        next = link(&b, "next");
    }
    let mut want = more.clone();
    want.push(rx1.clone());
    assert_eq!(sorted(seen), sorted(want));

    // contained resources never answer a search of stored ones: a contained Observation about
    // the patient does not make the patient one that an Observation points at
    app.create(
        &json!({"resourceType": "DiagnosticReport", "status": "final",
        "code": {"text": "panel"},
        "contained": [{"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": format!("Patient/{patient}")}}],
        "result": [{"reference": "#o1"}]}),
    )
    .await;
    assert!(
        ids(&app, "Patient?_has:Observation:subject:code=2345-7")
            .await
            .is_empty()
    );
    assert!(ids(&app, "Observation?code=2345-7").await.is_empty());
    let about = format!("Observation?code=2345-7&_contained=true&subject=Patient/{patient}");
    assert_eq!(ids(&app, &about).await.len(), 1);

    // both: the stored Medication and the containers (or the contained Medications)
    let mut want = more.clone();
    want.extend([rx1.clone(), stored.clone()]);
    assert_eq!(
        ids(&app, "Medication?code=1049502&_contained=both").await,
        sorted(want)
    );
    let b = search(
        &app,
        "Medication?code=1049502&_contained=both&_containedType=contained",
    )
    .await;
    assert_eq!(b["total"], 5, "{b}");
    let entries = b["entry"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Medication")
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["resource"]["id"] == "med1")
            .count(),
        4
    );
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["id"] == stored.as_str())
    );
    // _summary=count: how many containers hold a match, and no entries
    let b = search(
        &app,
        "Medication?code=1049502&_contained=true&_summary=count",
    )
    .await;
    assert_eq!(b["total"], 4, "{b}");
    assert!(b["entry"].is_null(), "{b}");

    // what a contained search cannot honour is refused by name
    for query in [
        "Medication?code=1049502&_contained=true&_sort=code",
        "Medication?_id=med1&_contained=true",
        "Medication?code=1049502&_contained=true&_include=Medication:manufacturer",
        "Medication?_contained=maybe",
        "Medication?_containedType=inside",
    ] {
        let r = app.get(query).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
    }
}

async fn the_contained_index_follows_updates_deletes_and_the_backfill(app: TestApp) {
    use diesel::prelude::*;
    let (patient, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Ito"}]}))
        .await;
    let (rx, _) = app.create(&order(&patient, "1049502")).await;
    let contained = |code: &str| format!("Medication?code={code}&_contained=true");

    // a local id used twice (invalid, yet sent): the first resource holds it, the write goes on
    let mut twice = order(&patient, "1191");
    twice["contained"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resourceType": "Medication",
        "id": "med1", "code": {"coding": [{"system": RXNORM, "code": "5640"}]}}));
    let r = app.post("MedicationRequest", &twice).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(ids(&app, &contained("1191")).await.len(), 1);
    assert!(ids(&app, &contained("5640")).await.is_empty());

    // a new contained Medication replaces the old one in the index
    let mut changed = order(&patient, "310965");
    changed["id"] = json!(rx);
    let r = app.put(&format!("MedicationRequest/{rx}"), &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids(&app, &contained("1049502")).await.is_empty());
    assert_eq!(ids(&app, &contained("310965")).await, [rx.as_str()]);
    assert_eq!(
        ids(&app, "MedicationRequest?medication.code=310965").await,
        [rx.as_str()]
    );

    // as a database from before the index would be: none of it; the backfill restores it
    let mut conn = app.db();
    for table in ["search_contained", "search_token", "search_reference"] {
        diesel::sql_query(format!(
            "DELETE FROM {table} WHERE resource_id LIKE 'MedicationRequest/%'"
        ))
        .execute(&mut conn)
        .unwrap();
    }
    assert!(ids(&app, &contained("310965")).await.is_empty());
    diesel::sql_query("INSERT INTO pending_backfills (name) VALUES ('search_contained')")
        .execute(&mut conn)
        .unwrap();
    app.database.migrate().unwrap();
    assert_eq!(ids(&app, &contained("310965")).await, [rx.as_str()]);

    // a deleted container takes its contained resources out of every search
    assert_eq!(
        app.delete(&format!("MedicationRequest/{rx}")).await.status,
        200
    );
    assert!(ids(&app, &contained("310965")).await.is_empty());
    assert!(
        ids(&app, "MedicationRequest?medication.code=310965")
            .await
            .is_empty()
    );
}

/// A container is a result of its own type: a patient's app finds its own patient's orders
/// holding a match and not another's, and is not told how many the others hold.
async fn a_patient_app_finds_and_counts_its_own_containers_only(app: TestApp) {
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Adeyemi"}]});
    let (mine, _) = app.create(&patient).await;
    let (other, _) = app.create(&patient).await;
    let (my_order, _) = app.create(&order(&mine, "1049502")).await;
    app.create(&order(&other, "1049502")).await;
    app.create(&order(&other, "1049502")).await;
    let token = app.token_for("patient/*.rs", Some(&mine));
    let r = app
        .get_as(&token, "Medication?code=1049502&_contained=true")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(matched_ids(&b), [my_order.as_str()], "{b}");
    assert_eq!(b["total"], 1, "{b}");
    for count in ["_summary=count", "_total=accurate", "_count=0"] {
        let query = format!("Medication?code=1049502&_contained=true&{count}");
        let r = app.get_as(&token, &query).await;
        assert_eq!(r.status, 403, "{query}: {}", r.text);
    }
    // a token over every type counts them all
    assert_eq!(
        search(
            &app,
            "Medication?code=1049502&_contained=true&_summary=count"
        )
        .await["total"],
        3
    );
}
