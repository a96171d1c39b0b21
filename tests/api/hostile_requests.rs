//! Requests that are small but ask for a great deal: patches that multiply a resource, Bundles
//! of a hundred thousand entries, searches that fan out past what the database takes,
//! transactions that contradict themselves. Each is refused with a status and a text that say
//! which bound it met (never a 500, never the database's own words), and nothing of it is kept.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::on_both_backends;
use crate::on_both_backends_with;
use serde_json::{Value, json};

on_both_backends!(
    patches_that_multiply_a_resource_are_refused,
    searches_past_the_bounds_are_refused_by_name,
    transactions_must_resolve_every_local_reference,
);
on_both_backends_with!(small_bundles, bundles_have_an_entry_limit);

async fn patch(app: &TestApp, path: &str, ops: &Value) -> crate::helpers::Resp {
    app.send(
        app.client
            .patch(app.url(path))
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string()),
    )
    .await
}

async fn patches_that_multiply_a_resource_are_refused(app: TestApp) {
    let (id, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Copy"}],
                        "text": {"status": "generated",
                                 "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(100_000))}}))
        .await;
    let path = format!("Patient/{id}");

    // twenty copies, each doubling the last: 100 GB if applied
    let mut ops = vec![json!({"op": "add", "path": "/contained", "value": []})];
    ops.push(json!({"op": "add", "path": "/contained/-",
                    "value": {"resourceType": "Basic", "id": "b", "code": {"text": "x".repeat(50_000)}}}));
    for _ in 0..20 {
        ops.push(json!({"op": "copy", "from": "/contained", "path": "/contained/-"}));
    }
    let r = patch(&app, &path, &Value::Array(ops)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.first_issue().0, "too-costly");

    // copies of a branch into itself, each one level deeper
    let mut ops =
        vec![json!({"op": "add", "path": "/extension", "value": [{"url": "http://e/x"}]})];
    for _ in 0..120 {
        ops.push(json!({"op": "copy", "from": "/extension", "path": "/extension/0/extension"}));
    }
    let r = patch(&app, &path, &Value::Array(ops)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.text.contains("levels deep"), "{}", r.text);

    // more operations than any patch needs
    let ops: Vec<Value> = (0..1001)
        .map(|_| json!({"op": "test", "path": "/id", "value": id}))
        .collect();
    let r = patch(&app, &path, &Value::Array(ops)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("at most 1000"), "{}", r.text);

    // none of it was applied; an ordinary patch still is
    let r = app.get(&path).await;
    assert_eq!(r.json()["meta"]["versionId"], "1");
    let r = patch(
        &app,
        &path,
        &json!([{"op": "add", "path": "/gender", "value": "other"}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "2");
}

async fn small_bundles(backend: Backend) -> TestApp {
    spawn_with(backend, |s| s.max_bundle_entries = 50).await
}

async fn bundles_have_an_entry_limit(app: TestApp) {
    let (id, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let reader = app.token_for("patient/*.rs", Some(&id));
    let gets = |n: usize| {
        let entries: Vec<Value> = (0..n)
            .map(|_| json!({"request": {"method": "GET", "url": format!("Patient/{id}")}}))
            .collect();
        json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
    };
    // a read-only patient app: 51 reads are refused before any runs, 50 are answered
    let r = app
        .send_as(&reader, reqwest::Method::POST, "", Some(&gets(51)))
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.text.contains("at most 50"), "{}", r.text);
    let r = app
        .send_as(&reader, reqwest::Method::POST, "", Some(&gets(50)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries = r.json()["entry"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 50);
    assert!(entries.iter().all(|e| e["response"]["status"] == "200 OK"));
    // the limit holds for transactions alike
    let creates: Vec<Value> = (0..51)
        .map(|_| {
            json!({"resource": {"resourceType": "Basic", "code": {"text": "t"},
                                     "identifier": [{"system": "urn:t", "value": "limit"}]},
                        "request": {"method": "POST", "url": "Basic"}})
        })
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": creates}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(
        app.get("Basic?identifier=urn:t|limit&_total=accurate")
            .await
            .json()["total"],
        0
    );
}

async fn searches_past_the_bounds_are_refused_by_name(app: TestApp) {
    let values =
        |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>().join(",");
    let many = |n: usize, name: &str, value: &str| {
        (0..n)
            .map(|_| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // (query, what the refusal names): each is a 400 that says so
    let refused = [
        (
            format!("Observation?code={}", values(500, &|i| format!("c{i}"))),
            "at most 100",
        ),
        (
            format!("Observation?{}", many(101, "code", "x")),
            "101 parameters; at most 100",
        ),
        (
            "Provenance?target._has:Provenance:target:target._has:Provenance:target:_id=x".into(),
            "more than 500 terms",
        ),
        (
            format!("Observation?{}", many(99, "subject.name", "a,b,c,d,e")),
            "more than 500 terms",
        ),
        ("Observation?_count=-1".into(), "0 or more"),
        ("Observation?_count=many".into(), "0 or more"),
        (
            format!("Observation?_sort={}", values(9, &|_| "date".into())),
            "at most 8",
        ),
    ];
    for (query, says) in refused {
        let r = app.get(&query).await;
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            &query[..query.len().min(80)],
            r.text
        );
        assert!(
            r.text.contains(says),
            "{}: {}",
            &query[..80.min(query.len())],
            r.text
        );
    }
    // at the bounds, of every kind of parameter: answered, never a database error
    let answered = [
        format!(
            "Observation?code={}",
            values(100, &|i| format!("http://loinc.org|{i}-1"))
        ),
        format!(
            "Observation?date={}",
            values(100, &|i| format!("ge20{:02}-01-01", i % 100))
        ),
        format!(
            "Observation?value-quantity={}",
            values(100, &|i| format!("lt{i}|http://unitsofmeasure.org|mg"))
        ),
        format!(
            "Observation?combo-code-value-quantity={}",
            values(100, &|i| format!("c{i}$gt{i}"))
        ),
        format!(
            "Observation?subject={}",
            values(100, &|i| format!("Patient/p{i}"))
        ),
        format!(
            "Patient?name:contains={}",
            values(100, &|i| format!("n{i}"))
        ),
        format!(
            "Observation?{}",
            many(100, "code:not", &values(5, &|i| format!("s|{i}")))
        ),
        format!("Observation?{}", many(100, "date", "ge2020-01-01")),
        format!(
            "Observation?{}",
            many(
                20,
                "subject:Patient.name",
                &values(20, &|i| format!("n{i}"))
            )
        ),
        format!(
            "Patient?{}",
            many(
                50,
                "_has:Observation:patient:code",
                &values(9, &|i| format!("c{i}"))
            )
        ),
        "Observation?_count=5000".into(),
        // a chain through a reference to any type, passing over the types where the next
        // parameter is no reference (MessageDefinition.focus is a token)
        "Observation?focus.focus.name=x".into(),
    ];
    for query in answered {
        let r = app.get(&query).await;
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            &query[..80.min(query.len())],
            r.text
        );
        assert_eq!(r.json()["resourceType"], "Bundle");
    }
}

async fn transactions_must_resolve_every_local_reference(app: TestApp) {
    let patient = |url: &str| {
        json!({"fullUrl": url, "resource": {"resourceType": "Patient"},
               "request": {"method": "POST", "url": "Patient"}})
    };
    let observation = |subject: &str| {
        json!({"resource": {"resourceType": "Observation", "status": "final",
                            "code": {"text": "t"}, "subject": {"reference": subject}},
               "request": {"method": "POST", "url": "Observation"}})
    };
    let tx = |entries: Vec<Value>| json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let a = "urn:uuid:0b2c8a7e-3f5d-4d1e-9a4b-6c2f1e0d9a11";
    let b = "urn:uuid:5e7f1c2d-8a9b-4c3d-b2e1-f0a9c8d7e6b5";

    // two entries with one fullUrl: which would a reference mean?
    let r = app
        .post("", &tx(vec![patient(a), patient(a), observation(a)]))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("also the fullUrl of entry[0]"),
        "{}",
        r.text
    );
    // a reference to a urn:uuid that no entry has
    let r = app.post("", &tx(vec![patient(a), observation(b)])).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("Bundle.entry[1]") && r.text.contains(b),
        "{}",
        r.text
    );
    for t in ["Patient", "Observation"] {
        let total = app.get(&format!("{t}?_total=accurate")).await.json()["total"].clone();
        assert_eq!(total, 0, "nothing of a refused transaction is stored");
    }
    // resolved, it goes in with the server's id in the reference
    let r = app.post("", &tx(vec![patient(a), observation(a)])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let obs = app.get("Observation").await.json();
    let subject = obs["entry"][0]["resource"]["subject"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(subject.starts_with("Patient/"), "{subject}");

    // in a batch, entries stand alone: such an entry fails, the others are written
    let batch = json!({"resourceType": "Bundle", "type": "batch",
                       "entry": [patient(a), observation(a)]});
    let r = app.post("", &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let out = r.json();
    assert_eq!(out["entry"][0]["response"]["status"], "201 Created");
    assert!(
        out["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("400"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_patient_data_are_neither_cached_nor_sniffed() {
    let app = crate::helpers::spawn(Backend::Sqlite).await;
    let (id, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let answers = [
        app.get(&format!("Patient/{id}")).await,
        app.get("Patient").await,
        app.get("Patient/nobody").await,
        app.send(app.anonymous.get(app.url("Patient"))).await,
        app.send(app.client.get(format!("{}/admin/hl7v2/messages", app.root)))
            .await,
    ];
    for r in answers {
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{}",
            r.status
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
    }
    // the public signing keys may be cached
    let jwks = app
        .send(app.anonymous.get(format!("{}/auth/jwks", app.root)))
        .await;
    assert!(jwks.header("cache-control").unwrap().contains("max-age"));
}
