//! Create, read, vread, update, patch and delete, with their headers and preconditions.

use crate::helpers::TestApp;
use crate::on_both_backends;
use diesel::prelude::*;
use emrsync::store::schema::outbox;
use serde_json::json;

on_both_backends!(
    create_then_read,
    update_keeps_every_version,
    update_creates_with_client_id,
    delete_then_read_is_gone,
    if_match_guards_updates,
    concurrent_updates_with_same_if_match_one_wins,
    if_none_exist_finds_the_existing_identifier,
    prefer_return_shapes_the_answer,
    json_patch_applies_and_validates,
    change_writes_outbox_and_audit_with_correlation_id,
);

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":family}],
           "name":[{"family":family,"given":["Ana"]}],"gender":"female","birthDate":"1974-12-25"})
}

async fn create_then_read(app: TestApp) {
    let r = app.post("Patient", &patient("Chalmers")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("etag").unwrap(), "W/\"1\"");
    assert_eq!(
        r.header("location").unwrap(),
        app.url(&format!("Patient/{id}/_history/1"))
    );
    assert!(r.header("last-modified").unwrap().ends_with("GMT"));

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), body, "read returns what create returned");
    assert_eq!(read.header("etag").unwrap(), "W/\"1\"");
    assert!(
        read.header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );

    let not_modified = app
        .send(
            app.client
                .get(app.url(&format!("Patient/{id}")))
                .header("If-None-Match", "W/\"1\""),
        )
        .await;
    assert_eq!(not_modified.status, 304);
    let missing = app.get("Patient/does-not-exist").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.first_issue().0, "not-found");
}

async fn update_keeps_every_version(app: TestApp) {
    let (id, mut body) = app.create(&patient("Chalmers")).await;
    body["name"][0]["family"] = json!("Windsor");
    let r = app.put(&format!("Patient/{id}"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "2");
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");

    let v1 = app.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["name"][0]["family"], "Chalmers");
    let v2 = app.get(&format!("Patient/{id}/_history/2")).await;
    assert_eq!(v2.json()["name"][0]["family"], "Windsor");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("Patient/{id}")).await.json()["name"][0]["family"],
        "Windsor"
    );
}

async fn update_creates_with_client_id(app: TestApp) {
    let mut body = patient("Ng");
    body["id"] = json!("mrn-42");
    let r = app.put("Patient/mrn-42", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.header("location").unwrap(),
        app.url("Patient/mrn-42/_history/1")
    );
    let again = app.put("Patient/mrn-42", &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["meta"]["versionId"], "2");
}

async fn delete_then_read_is_gone(app: TestApp) {
    let (id, _) = app.create(&patient("Gone")).await;
    let d = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.header("etag").unwrap(), "W/\"2\"");
    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 410, "{}", read.text);
    assert_eq!(read.first_issue().0, "deleted");
    assert_eq!(
        read.header("etag").unwrap(),
        "W/\"2\"",
        "410 names the deleted version"
    );
    assert!(read.header("last-modified").is_some());
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.status,
        200,
        "old versions stay readable"
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/2")).await.status,
        410
    );
    let again = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(again.status, 200, "delete is idempotent");
    // re-creating a deleted id continues its version line
    let mut body = patient("Back");
    body["id"] = json!(id);
    let back = app.put(&format!("Patient/{id}"), &body).await;
    assert_eq!(back.status, 201);
    assert_eq!(back.json()["meta"]["versionId"], "3");
}

async fn if_match_guards_updates(app: TestApp) {
    let (id, body) = app.create(&patient("Match")).await;
    let put = |etag: &'static str| {
        app.client
            .put(app.url(&format!("Patient/{id}")))
            .header("content-type", "application/fhir+json")
            .header("If-Match", etag)
            .body(body.to_string())
    };
    assert_eq!(app.send(put("W/\"1\"")).await.status, 200);
    let stale = app.send(put("W/\"1\"")).await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_eq!(app.send(put("W/\"2\"")).await.status, 200);
    assert_eq!(app.send(put("bogus")).await.status, 400);
}

async fn concurrent_updates_with_same_if_match_one_wins(app: TestApp) {
    let (id, body) = app.create(&patient("Race")).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut b = body.clone();
        b["name"][0]["given"] = json!([format!("writer{i}")]);
        let req = app
            .client
            .put(app.url(&format!("Patient/{id}")))
            .header("content-type", "application/fhir+json")
            .header("If-Match", "W/\"1\"")
            .body(b.to_string());
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(won, 1, "exactly one writer wins: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 409, 412].contains(s)),
        "{statuses:?}"
    );
    let now = app.get(&format!("Patient/{id}")).await.json();
    assert_eq!(now["meta"]["versionId"], "2");
}

async fn if_none_exist_finds_the_existing_identifier(app: TestApp) {
    let body = patient("Unique");
    let cond = "identifier=urn:oid:1.2.36.146.595.217.0.1|Unique";
    let post = || {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("If-None-Exist", cond)
            .body(body.to_string())
    };
    let first = app.send(post()).await;
    assert_eq!(first.status, 201);
    let second = app.send(post()).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json()["id"], first.json()["id"]);
    // two matches: the condition is ambiguous
    app.create(&body).await;
    assert_eq!(app.send(post()).await.status, 412);
    // any search parameter can be a condition; an unknown one is refused
    let by_name = app
        .post_with(
            "Patient",
            &patient("Other"),
            ("If-None-Exist", "family=Chalmers-not&birthdate=1974-12-25"),
        )
        .await;
    assert_eq!(by_name.status, 201, "{}", by_name.text);
    let again = app
        .post_with(
            "Patient",
            &patient("Other"),
            ("If-None-Exist", "family=other&birthdate=1974-12-25"),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["id"], by_name.json()["id"]);
    let bad = app
        .post_with("Patient", &patient("Other"), ("If-None-Exist", "nmae=x"))
        .await;
    assert_eq!(bad.status, 400);
}

async fn prefer_return_shapes_the_answer(app: TestApp) {
    let send = |prefer: &'static str| {
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("Prefer", prefer)
            .body(patient("Prefer").to_string())
    };
    let minimal = app.send(send("return=minimal")).await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let oo = app.send(send("return=OperationOutcome")).await;
    assert_eq!(oo.json()["resourceType"], "OperationOutcome");
    let full = app.send(send("return=representation")).await;
    assert_eq!(full.json()["resourceType"], "Patient");
}

async fn json_patch_applies_and_validates(app: TestApp) {
    let (id, _) = app.create(&patient("Patchy")).await;
    let patch = |ops: serde_json::Value, ct: &'static str| {
        app.client
            .patch(app.url(&format!("Patient/{id}")))
            .header("content-type", ct)
            .body(ops.to_string())
    };
    let ok = app
        .send(patch(json!([{"op":"replace","path":"/gender","value":"male"},{"op":"add","path":"/active","value":true}]), "application/json-patch+json"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let v = ok.json();
    assert_eq!(
        (
            v["gender"].as_str(),
            v["active"].as_bool(),
            v["meta"]["versionId"].as_str()
        ),
        (Some("male"), Some(true), Some("2"))
    );
    let bad = app
        .send(patch(
            json!([{"op":"replace","path":"/gender","value":"banana"}]),
            "application/json-patch+json",
        ))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(
        bad.first_issue(),
        ("code-invalid".into(), "Patient.gender".into())
    );
    let wrong_ct = app.send(patch(json!([]), "text/plain")).await;
    assert_eq!(wrong_ct.status, 415);
    let failing = app
        .send(patch(
            json!([{"op":"test","path":"/gender","value":"female"}]),
            "application/json-patch+json",
        ))
        .await;
    assert_eq!(failing.status, 422);
    assert_eq!(
        app.get(&format!("Patient/{id}")).await.json()["meta"]["versionId"],
        "2",
        "failed patches change nothing"
    );
}

async fn change_writes_outbox_and_audit_with_correlation_id(app: TestApp) {
    let r = app
        .post_with(
            "Patient",
            &patient("Audit"),
            ("X-Request-Id", "corr-test-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id").unwrap(), "corr-test-123");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let generated = app
        .get(&format!("Patient/{id}"))
        .await
        .header("x-request-id")
        .unwrap();
    assert_eq!(
        generated.len(),
        36,
        "a correlation id is generated when none is sent"
    );

    let mut db = app.db();
    let events: Vec<(String, String, i64, String)> = outbox::table
        .filter(outbox::correlation_id.eq("corr-test-123"))
        .select((
            outbox::resource_type,
            outbox::resource_id,
            outbox::version_id,
            outbox::action,
        ))
        .load(&mut db)
        .unwrap();
    assert_eq!(
        events,
        vec![("Patient".to_string(), id.clone(), 1, "create".to_string())]
    );
    let audits: Vec<(String, String, String)> = emrsync::store::audit::all(&mut db)
        .unwrap()
        .into_iter()
        .filter(|e| e.correlation_id == "corr-test-123")
        .map(|e| (e.action, e.outcome, e.actor))
        .collect();
    assert_eq!(audits.len(), 1);
    assert_eq!(
        (audits[0].0.as_str(), audits[0].1.as_str()),
        ("create", "success")
    );

    // a refused write is audited as a failure, and leaves no outbox event
    let refused = app
        .post_with(
            "Patient",
            &json!({"resourceType":"Patient","gender":"banana"}),
            ("X-Request-Id", "corr-refused"),
        )
        .await;
    assert_eq!(refused.status, 422);
    let mut failure = 0;
    for _ in 0..50 {
        failure = emrsync::store::audit::all(&mut db)
            .unwrap()
            .iter()
            .filter(|e| e.correlation_id == "corr-refused" && e.outcome == "failure")
            .count();
        if failure > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(failure, 1, "the refused write is in the audit trail");
    let leaked: i64 = outbox::table
        .filter(outbox::correlation_id.eq("corr-refused"))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(leaked, 0);
}

on_both_backends!(concurrent_writers_commit_together_and_fail_alone);

/// Many writers at once (on SQLite they share commits): every accepted create is stored, and a
/// writer refused in the middle of a group changes nothing and harms no one else.
async fn concurrent_writers_commit_together_and_fail_alone(app: TestApp) {
    let (target, body) = app.create(&patient("Target")).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let (url, req_body, if_match) = if i % 2 == 0 {
            (app.url("Patient"), patient(&format!("Group{i}")), None)
        } else {
            (
                app.url(&format!("Patient/{target}")),
                body.clone(),
                Some("W/\"99\""),
            )
        };
        tasks.push(tokio::spawn(async move {
            let mut req = if if_match.is_some() {
                client.put(url)
            } else {
                client.post(url)
            };
            req = req
                .header("content-type", "application/fhir+json")
                .body(req_body.to_string());
            if let Some(m) = if_match {
                req = req.header("If-Match", m);
            }
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        20,
        "{statuses:?}"
    );
    use emrsync::store::schema::resource_versions;
    // (the server's own SubscriptionTopic Basics left out, and the golden record the MPI makes
    // of 20 records of one person)
    app.mpi_settled().await;
    let golden = app
        .get("/Patient?_tag=http://emrsync.org/fhir/CodeSystem/mpi|golden-record")
        .await
        .json();
    let golden: Vec<String> = golden["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    let versions: i64 = resource_versions::table
        .filter(resource_versions::resource_type.ne("Basic"))
        .filter(resource_versions::resource_id.ne_all(&golden))
        .count()
        .get_result(&mut app.db())
        .unwrap();
    assert_eq!(
        versions, 21,
        "20 creates and the target's first version, nothing else"
    );
    assert_eq!(
        app.get(&format!("Patient/{target}")).await.json()["meta"]["versionId"],
        "1"
    );
}
