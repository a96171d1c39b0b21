//! Batch and transaction Bundles.

use crate::helpers::TestApp;
use crate::on_both_backends;
use diesel::prelude::*;
use emrsync::store::schema::{outbox, resource_versions};
use serde_json::{Value, json};

on_both_backends!(
    transaction_rewrites_urn_uuid_references,
    failing_entry_rolls_back_the_whole_transaction,
    batch_entries_succeed_or_fail_alone,
    transaction_conditional_create_and_update,
    bundle_misuse_is_refused,
    patches_ride_in_transactions_and_batches,
);

fn patient_entry(uuid: &str, family: &str) -> Value {
    json!({"fullUrl": format!("urn:uuid:{uuid}"),
           "resource": {"resourceType":"Patient","name":[{"family":family}],
                        "identifier":[{"system":"http://hospital.example/mrn","value":family}]},
           "request": {"method":"POST","url":"Patient"}})
}

fn observation_entry(subject_uuid: &str) -> Value {
    json!({"fullUrl":"urn:uuid:5c4e3b2a-0000-4000-8000-000000000002",
           "resource": {"resourceType":"Observation","status":"final","code":{"text":"heart rate"},
                        "subject":{"reference": format!("urn:uuid:{subject_uuid}")},
                        "valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},
           "request": {"method":"POST","url":"Observation"}})
}

const P1: &str = "5c4e3b2a-0000-4000-8000-000000000001";

async fn transaction_rewrites_urn_uuid_references(app: TestApp) {
    let bundle = json!({"resourceType":"Bundle","type":"transaction",
                        "entry":[observation_entry(P1), patient_entry(P1, "Txn")]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "transaction-response");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e.len(), 2, "one response entry per request entry, in order");
    assert_eq!(e[0]["response"]["status"], "201 Created");
    let obs_loc = e[0]["response"]["location"].as_str().unwrap();
    assert!(obs_loc.starts_with("Observation/"), "{obs_loc}");
    let patient_loc = e[1]["response"]["location"].as_str().unwrap();
    let patient_id = patient_loc.split('/').nth(1).unwrap();
    assert_eq!(e[1]["response"]["etag"], "W/\"1\"");

    let obs_id = obs_loc.split('/').nth(1).unwrap();
    let obs = app.get(&format!("Observation/{obs_id}")).await.json();
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(
        app.get(&format!("Patient/{patient_id}")).await.json()["name"][0]["family"],
        "Txn"
    );

    // one outbox event per resource written, and both are in the history, newest first
    // (the server's own SubscriptionTopic Basics are left out)
    let events: i64 = outbox::table
        .filter(outbox::resource_type.ne("Basic"))
        .count()
        .get_result(&mut app.db())
        .unwrap();
    assert_eq!(events, 2);
    let history = app.get("_history").await.json();
    let urls: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .filter(|url| !url.starts_with("Basic/"))
        .collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(
        urls.contains(&"Patient") && urls.contains(&"Observation"),
        "{urls:?}"
    );
    // the identifier of a resource created in a transaction is indexed (conditional create finds it)
    let again = app
        .post_with(
            "Patient",
            &json!({"resourceType":"Patient"}),
            (
                "If-None-Exist",
                "identifier=http://hospital.example/mrn|Txn",
            ),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["id"], patient_id);
}

async fn failing_entry_rolls_back_the_whole_transaction(app: TestApp) {
    let (existing, _) = app
        .create(&json!({"resourceType":"Patient","active":true}))
        .await;
    let bad = json!({"resource":{"resourceType":"Observation","status":"nonsense","code":{"text":"x"}},
                     "request":{"method":"POST","url":"Observation"}});
    let delete = json!({"request":{"method":"DELETE","url":format!("Patient/{existing}")}});
    let bundle = json!({"resourceType":"Bundle","type":"transaction",
                        "entry":[patient_entry(P1, "Rolled"), delete, bad]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let issue = &r.json()["issue"][0];
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[2]"),
        "{issue}"
    );

    // the failure of a write inside the transaction (If-Match on a stale version) also rolls back
    let stale = json!({"resource":{"resourceType":"Patient","id":existing,"active":false},
                       "request":{"method":"PUT","url":format!("Patient/{existing}"),"ifMatch":"W/\"9\""}});
    let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":[patient_entry(P1, "Rolled"), stale]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 412, "{}", r.text);

    let mut db = app.db();
    let versions: i64 = resource_versions::table
        .filter(resource_versions::resource_type.ne("Basic"))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(
        versions, 1,
        "only the patient created before the transactions"
    );
    let events: i64 = outbox::table
        .filter(outbox::resource_type.ne("Basic"))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(events, 1);
    assert_eq!(
        app.get(&format!("Patient/{existing}")).await.status,
        200,
        "the delete was rolled back"
    );
}

async fn batch_entries_succeed_or_fail_alone(app: TestApp) {
    let (existing, _) = app
        .create(&json!({"resourceType":"Patient","active":true}))
        .await;
    let bundle = json!({"resourceType":"Bundle","type":"batch","entry":[
        {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Patient","gender":"banana"},"request":{"method":"POST","url":"Patient"}},
        {"request":{"method":"GET","url":format!("Patient/{existing}")}},
        {"request":{"method":"GET","url":"Patient/missing"}},
        {"request":{"method":"DELETE","url":format!("Patient/{existing}")}},
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "batch-response");
    let statuses: Vec<&str> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "200 OK",
            "404 Not Found",
            "204 No Content"
        ]
    );
    assert_eq!(
        resp["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(resp["entry"][2]["resource"]["id"], existing.as_str());
    assert_eq!(app.get(&format!("Patient/{existing}")).await.status, 410);
}

async fn transaction_conditional_create_and_update(app: TestApp) {
    let first = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:5c4e3b2a-0000-4000-8000-0000000000aa",
         "resource":{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"777"}]},
         "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://hospital.example/mrn|777"}}]});
    let r1 = app.post("", &first).await.json();
    assert_eq!(r1["entry"][0]["response"]["status"], "201 Created");
    let r2 = app.post("", &first).await.json();
    assert_eq!(
        r2["entry"][0]["response"]["status"], "200 OK",
        "the existing match is kept"
    );
    assert_eq!(
        r1["entry"][0]["response"]["location"],
        r2["entry"][0]["response"]["location"]
    );

    let update = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","active":false,"identifier":[{"system":"http://hospital.example/mrn","value":"777"}]},
         "request":{"method":"PUT","url":"Patient?identifier=http://hospital.example/mrn|777"}}]});
    let r3 = app.post("", &update).await;
    assert_eq!(r3.status, 200, "{}", r3.text);
    let loc = r3.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        loc.ends_with("/_history/2"),
        "the conditional update changed the match: {loc}"
    );
}

async fn bundle_misuse_is_refused(app: TestApp) {
    let not_bundle = app.post("", &json!({"resourceType":"Patient"})).await;
    assert_eq!(not_bundle.status, 400);
    let wrong_kind = app
        .post("", &json!({"resourceType":"Bundle","type":"collection"}))
        .await;
    assert_eq!(wrong_kind.status, 400);
    let twice = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","id":"dup"},"request":{"method":"PUT","url":"Patient/dup"}},
        {"resource":{"resourceType":"Patient","id":"dup"},"request":{"method":"PUT","url":"Patient/dup"}}]});
    let r = app.post("", &twice).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let no_request = json!({"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]});
    assert_eq!(app.post("", &no_request).await.status, 400);
    assert_eq!(app.get("Patient/dup").await.status, 404);
}

async fn patches_ride_in_transactions_and_batches(app: TestApp) {
    use base64::Engine;
    let patient = |mrn: &str| {
        json!({"resourceType": "Patient", "gender": "female",
            "identifier": [{"system": "http://hospital.example/mrn", "value": mrn}],
            "name": [{"family": "Ito", "given": ["Yuki"]}]})
    };
    let (a, _) = app.create(&patient("P-8")).await;
    let (b, _) = app.create(&patient("P-9")).await;
    let binary = |content_type: &str, patch: Value| {
        json!({"resourceType": "Binary", "contentType": content_type,
               "data": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
    };
    let fhirpath = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "birthDate"}, {"name": "value", "valueDate": "1990-04-01"}]}]});
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary("application/json-patch+json",
            json!([{"op": "replace", "path": "/gender", "value": "other"}])),
         "request": {"method": "PATCH", "url": format!("Patient/{a}")}},
        {"resource": binary("application/merge-patch+json", json!({"active": true})),
         "request": {"method": "PATCH", "url": "Patient?identifier=http://hospital.example/mrn|P-9"}},
    ]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let statuses: Vec<Value> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("200 OK"), json!("200 OK")]);
    let (now_a, now_b) = (
        app.get(&format!("Patient/{a}")).await.json(),
        app.get(&format!("Patient/{b}")).await.json(),
    );
    assert_eq!(
        (&now_a["gender"], &now_a["meta"]["versionId"]),
        (&json!("other"), &json!("2"))
    );
    assert_eq!(
        (&now_b["active"], &now_b["meta"]["versionId"]),
        (&json!(true), &json!("2"))
    );

    // a patch that fails (its test does not hold) rolls the whole transaction back
    let failing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": fhirpath.clone(), "request": {"method": "PATCH", "url": format!("Patient/{a}")}},
        {"resource": binary("application/json-patch+json",
            json!([{"op": "test", "path": "/gender", "value": "male"}])),
         "request": {"method": "PATCH", "url": format!("Patient/{b}")}},
    ]});
    let r = app.post("", &failing).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("entry[1]"), "{}", r.text);
    let unchanged = app.get(&format!("Patient/{a}")).await.json();
    assert_eq!(unchanged["meta"]["versionId"], "2");
    assert!(unchanged.get("birthDate").is_none());

    // in a batch each stands alone: the FHIRPath Patch applies, the unmatched one is 404, a
    // patch that is neither a Binary nor a Parameters is 400
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": fhirpath, "request": {"method": "PATCH", "url": format!("Patient/{a}")}},
        {"resource": binary("application/json-patch+json", json!([])),
         "request": {"method": "PATCH", "url": "Patient?identifier=http://hospital.example/mrn|none"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": format!("Patient/{b}")}},
    ]});
    let r = app.post("", &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let out = r.json();
    let status = |i: usize| {
        out["entry"][i]["response"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status(0), "200 OK");
    assert!(status(1).starts_with("404"), "{}", status(1));
    assert!(status(2).starts_with("400"), "{}", status(2));
    assert_eq!(
        app.get(&format!("Patient/{a}")).await.json()["birthDate"],
        "1990-04-01"
    );

    // a patch may point at what its transaction creates: the urn:uuid becomes the new id, in
    // a reference the patch adds and in a `reference` it sets; a urn:uuid of no entry is 400
    let gp = "urn:uuid:6f1c2e4a-5b3d-4c2e-9f00-000000000001";
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": gp, "resource": {"resourceType": "Practitioner", "name": [{"family": "Sato"}]},
         "request": {"method": "POST", "url": "Practitioner"}},
        {"resource": binary("application/json-patch+json", json!([
            {"op": "add", "path": "/generalPractitioner", "value": [{"reference": gp}]},
            {"op": "add", "path": "/managingOrganization", "value": {"reference": "Organization/x"}},
            {"op": "replace", "path": "/managingOrganization/reference", "value": gp}])),
         "request": {"method": "PATCH", "url": format!("Patient/{b}")}},
    ]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let location = r.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    let practitioner = location.split("/_history").next().unwrap();
    let now_b = app.get(&format!("Patient/{b}")).await.json();
    assert!(
        practitioner.ends_with(
            now_b["generalPractitioner"][0]["reference"]
                .as_str()
                .unwrap()
        ),
        "{location} {now_b}"
    );
    assert_eq!(
        now_b["managingOrganization"]["reference"],
        now_b["generalPractitioner"][0]["reference"]
    );
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary("application/json-patch+json", json!([
            {"op": "add", "path": "/generalPractitioner", "value": [{"reference": "urn:uuid:6f1c2e4a-5b3d-4c2e-9f00-00000000dead"}]}])),
         "request": {"method": "PATCH", "url": format!("Patient/{b}")}},
    ]});
    assert_eq!(app.post("", &dangling).await.status, 400);
}
