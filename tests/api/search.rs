//! Search: the index is written with each version and replaced or removed with it.

use crate::helpers::TestApp;
use crate::on_both_backends;
use diesel::prelude::*;
use emrsync::store::schema::{search_reference, search_string, search_token};
use serde_json::json;

on_both_backends!(index_rows_follow_the_current_version);

async fn index_rows_follow_the_current_version(app: TestApp) {
    let (id, mut body) = app
        .create(
            &json!({"resourceType":"Patient","name":[{"family":"Müller"}],"gender":"female",
                        "generalPractitioner":[{"reference":"Practitioner/dr1"}]}),
        )
        .await;
    let families = |db: &mut emrsync::store::DbConnection| -> Vec<String> {
        search_string::table
            .filter(search_string::resource_id.eq(&id))
            .filter(search_string::param.eq("family"))
            .select(search_string::norm)
            .load(db)
            .unwrap()
    };
    let mut db = app.db();
    assert_eq!(families(&mut db), ["muller"]);
    let gender: Vec<(Option<String>, Option<String>)> = search_token::table
        .filter(search_token::resource_id.eq(&id))
        .filter(search_token::param.eq("gender"))
        .select((search_token::system, search_token::code))
        .load(&mut db)
        .unwrap();
    assert_eq!(
        gender,
        [(
            Some("http://hl7.org/fhir/administrative-gender".into()),
            Some("female".into())
        )]
    );

    body["name"][0]["family"] = json!("Ng");
    assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 200);
    assert_eq!(
        families(&mut db),
        ["ng"],
        "an update replaces the old version's rows"
    );
    let genders = |db: &mut emrsync::store::DbConnection| -> Vec<Option<String>> {
        search_token::table
            .filter(search_token::resource_id.eq(&id))
            .filter(search_token::param.eq("gender"))
            .select(search_token::code)
            .load(db)
            .unwrap()
    };
    assert_eq!(
        genders(&mut db),
        [Some("female".to_string())],
        "rows of values an update left alone stay"
    );
    body.as_object_mut().unwrap().remove("gender");
    assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 200);
    assert!(
        genders(&mut db).is_empty(),
        "a removed value is not findable"
    );
    assert_eq!(families(&mut db), ["ng"]);

    // Updates rewrite only the rows that changed: after names added, changed and removed (the
    // list growing, changing in place and shifting), the rows stored are those a fresh copy of
    // the same content gets.
    let rows = |db: &mut emrsync::store::DbConnection, id: &str| -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = search_string::table
            .filter(search_string::resource_id.eq(id))
            .select((
                search_string::param,
                search_string::norm,
                search_string::exact,
            ))
            .load(db)
            .unwrap();
        rows.sort();
        rows
    };
    for names in [
        json!([{"family":"Ng","given":["Ann"]},{"family":"Okafor"}]),
        json!([{"family":"Ng","given":["Anne"]},{"family":"Okafor","given":["B"]}]),
        json!([{"family":"Okafor","given":["B"]}]),
    ] {
        body["name"] = names;
        assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 200);
        let mut fresh = body.clone();
        fresh.as_object_mut().unwrap().remove("id");
        let (copy, _) = app.create(&fresh).await;
        assert_eq!(
            rows(&mut db, &id),
            rows(&mut db, &copy),
            "after {}",
            body["name"]
        );
        assert!(!rows(&mut db, &id).is_empty());
    }

    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 200);
    assert!(
        families(&mut db).is_empty(),
        "a deleted resource is not findable"
    );
    let refs: i64 = search_reference::table
        .filter(search_reference::resource_id.eq(&id))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(refs, 0);

    body["gender"] = json!("other");
    assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 201);
    assert_eq!(
        (families(&mut db), genders(&mut db)),
        (vec!["okafor".to_string()], vec![Some("other".to_string())]),
        "a resource re-created after its delete is indexed again"
    );
}

on_both_backends!(
    basic_search_by_each_parameter_type,
    search_paging_and_errors
);

/// The ids of a searchset's matches, sorted.
async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "searchset");
    crate::helpers::matched_ids(&b)
}

async fn put(app: &TestApp, body: serde_json::Value) {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let r = app.put(&path, &body).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
}

async fn basic_search_by_each_parameter_type(app: TestApp) {
    put(&app, json!({"resourceType":"Patient","id":"p1","name":[{"family":"Müller","given":["Anna"]}],"gender":"female","birthDate":"1974-12-25",
        "identifier":[{"system":"http://mrn","value":"A1"}],"address":[{"city":"Zürich"}]})).await;
    put(&app, json!({"resourceType":"Patient","id":"p2","name":[{"family":"Mullins"}],"gender":"male","birthDate":"1980",
        "identifier":[{"system":"http://other","value":"A1"}]})).await;
    put(
        &app,
        json!({"resourceType":"Patient","id":"p3","name":[{"family":"Ng"}],"gender":"other",
               "meta":{"tag":[{"system":"http://example.org/tags","code":"vip"}]}}),
    )
    .await;
    let obs = |id: &str, patient: &str, code: &str, value: f64, date: &str| {
        json!({"resourceType":"Observation","id":id,"status":"final",
               "code":{"coding":[{"system":"http://loinc.org","code":code}],"text":"Heart rate"},
               "subject":{"reference":format!("Patient/{patient}")},"effectiveDateTime":date,
               "valueQuantity":{"value":value,"unit":"beats/min","system":"http://unitsofmeasure.org","code":"/min"}})
    };
    put(
        &app,
        obs("o1", "p1", "8867-4", 72.0, "2026-01-10T08:00:00Z"),
    )
    .await;
    put(
        &app,
        obs("o2", "p1", "8867-4", 110.0, "2026-02-10T08:00:00Z"),
    )
    .await;
    put(
        &app,
        obs("o3", "p2", "9279-1", 16.0, "2025-12-31T23:00:00Z"),
    )
    .await;

    // string: prefix, case- and accent-insensitive; :exact; :contains
    assert_eq!(ids(&app, "Patient?family=mul").await, ["p1", "p2"]);
    assert_eq!(ids(&app, "Patient?family=MÜLLER").await, ["p1"]);
    assert_eq!(ids(&app, "Patient?family:exact=Müller").await, ["p1"]);
    assert!(ids(&app, "Patient?family:exact=muller").await.is_empty());
    assert_eq!(ids(&app, "Patient?name:contains=llin").await, ["p2"]);
    assert_eq!(ids(&app, "Patient?address-city=zurich").await, ["p1"]);
    // token
    assert_eq!(ids(&app, "Patient?gender=male,other").await, ["p2", "p3"]);
    assert_eq!(ids(&app, "Patient?gender:not=male").await, ["p1", "p3"]);
    assert_eq!(ids(&app, "Patient?identifier=A1").await, ["p1", "p2"]);
    assert_eq!(ids(&app, "Patient?identifier=http://mrn|A1").await, ["p1"]);
    assert_eq!(ids(&app, "Patient?identifier=http://mrn|").await, ["p1"]);
    assert_eq!(ids(&app, "Patient?identifier:missing=true").await, ["p3"]);
    assert_eq!(
        ids(&app, "Observation?code:text=heart").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(ids(&app, "Patient?_id=p2,p3").await, ["p2", "p3"]);
    // reference, with and without type
    assert_eq!(
        ids(&app, "Observation?subject=Patient/p1").await,
        ["o1", "o2"]
    );
    assert_eq!(ids(&app, "Observation?patient=p2").await, ["o3"]);
    assert_eq!(ids(&app, "Observation?subject:Patient=p2").await, ["o3"]);
    // date prefixes and partial dates
    assert_eq!(ids(&app, "Patient?birthdate=1974").await, ["p1"]);
    assert_eq!(ids(&app, "Patient?birthdate=lt1975-01-01").await, ["p1"]);
    // ge: the range at or after June 1980 overlaps the year 1980 (the spec's range semantics)
    assert_eq!(ids(&app, "Patient?birthdate=ge1980-06").await, ["p2"]);
    assert_eq!(
        ids(&app, "Patient?birthdate=sa1980-06").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "Observation?date=2026-01").await, ["o1"]);
    assert_eq!(
        ids(&app, "Observation?date=ge2026-01-01&date=lt2026-03-01").await,
        ["o1", "o2"]
    );
    assert_eq!(ids(&app, "Observation?date=sa2026-01-31").await, ["o2"]);
    assert_eq!(ids(&app, "Observation?date=eb2026").await, ["o3"]);
    // quantity with precision and units
    assert_eq!(ids(&app, "Observation?value-quantity=72").await, ["o1"]);
    assert_eq!(ids(&app, "Observation?value-quantity=gt100").await, ["o2"]);
    assert_eq!(
        ids(
            &app,
            "Observation?value-quantity=lt80|http://unitsofmeasure.org|/min"
        )
        .await,
        ["o1", "o3"]
    );
    assert!(
        ids(
            &app,
            "Observation?value-quantity=72|http://unitsofmeasure.org|mg"
        )
        .await
        .is_empty()
    );
    // composite: code and value of the same observation
    assert_eq!(
        ids(
            &app,
            "Observation?code-value-quantity=http://loinc.org|8867-4$gt100"
        )
        .await,
        ["o2"]
    );
    // _id and _lastUpdated come from the stored resource itself
    assert_eq!(
        ids(&app, "Patient?_lastUpdated=gt2020-01-01").await,
        ["p1", "p2", "p3"]
    );
    assert!(
        ids(&app, "Patient?_lastUpdated=lt2020-01-01")
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&app, "Patient?_id:not=p1&gender=male,female").await,
        ["p2"]
    );
    // meta.tag
    assert_eq!(
        ids(&app, "Patient?_tag=http://example.org/tags|vip").await,
        ["p3"]
    );
    assert!(ids(&app, "Patient?_tag=vip-not").await.is_empty());
    // a reference to this server written as an absolute URL is the same reference
    assert_eq!(
        ids(
            &app,
            &format!("Observation?subject={}/Patient/p1", app.base)
        )
        .await,
        ["o1", "o2"]
    );
    // several clauses are ANDed
    assert_eq!(
        ids(&app, "Observation?patient=p1&value-quantity=lt100").await,
        ["o1"]
    );
}

async fn search_paging_and_errors(app: TestApp) {
    for i in 0..7 {
        put(
            &app,
            json!({"resourceType":"Patient","id":format!("pg{i}"),"gender":"unknown"}),
        )
        .await;
    }
    let first = app
        .get("Patient?gender=unknown&_count=3&_total=accurate")
        .await
        .json();
    assert_eq!(first["total"], 7);
    // without _total, a result of several pages is not counted; one that fits in a page is
    let uncounted = app.get("Patient?gender=unknown&_count=3").await.json();
    assert!(uncounted.get("total").is_none(), "{uncounted}");
    let one_page = app.get("Patient?gender=unknown&_count=7").await.json();
    assert_eq!(one_page["total"], 7);
    let mut seen: Vec<String> = Vec::new();
    let mut late = 0;
    let mut page = first;
    loop {
        seen.extend(
            page["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        let Some(next) = next else { break };
        // a write while paging neither repeats nor skips anything
        put(
            &app,
            json!({"resourceType":"Patient","id":format!("late{}", seen.len()),"gender":"unknown"}),
        )
        .await;
        late += 1;
        page = app.get_url(&next).await.json();
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len());
    assert!((0..7).all(|i| seen.contains(&format!("pg{i}"))), "{seen:?}");

    let unknown = app.get("Patient?nmae=x").await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.text.contains("nmae"), "{}", unknown.text);
    let lenient = app
        .send(
            app.client
                .get(app.url("Patient?nmae=x&gender=unknown&_count=1"))
                .header("Prefer", "handling=lenient"),
        )
        .await
        .json();
    let outcome = lenient["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
    assert_eq!(app.get("Patient?birthdate=yesterday").await.status, 400);
    assert_eq!(app.get("Patient?family:below=x").await.status, 400);
    assert_eq!(
        app.get("Observation?_sort=code-value-quantity")
            .await
            .status,
        400,
        "a composite has no order"
    );
    assert_eq!(
        app.get("Patient?_query=everyone").await.status,
        400,
        "not offered, so refused"
    );
    let post = app
        .send(
            app.client
                .post(app.url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("gender=unknown&_count=2&_total=accurate"),
        )
        .await;
    assert_eq!(post.status, 200, "{}", post.text);
    assert_eq!(post.json()["total"], 7 + late);
}

on_both_backends!(paging_a_large_sorted_result_while_another_client_writes);

/// 300 matches walked 17 at a time, sorted by birth date, while another client keeps creating
/// matching Patients (with birth dates before, among and after the ones paged) and updating
/// others: every one of the 300 is seen exactly once.
async fn paging_a_large_sorted_result_while_another_client_writes(app: TestApp) {
    let patient = |i: usize, tag: &str| {
        json!({"resourceType": "Patient", "gender": "unknown",
               "identifier": [{"system": "http://paging.test", "value": format!("{tag}{i}")}],
               "birthDate": format!("{}-{:02}-{:02}", 1950 + i % 50, 1 + i % 12, 1 + i % 28)})
    };
    let entries: Vec<serde_json::Value> = (0..300)
        .map(|i| json!({"resource": patient(i, "orig"), "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, base) = (app.client.clone(), app.base.clone());
        let written = written.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let body = patient(i * 7, "late");
                let resp = client
                    .post(format!("{base}/Patient"))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                if !resp.is_ok_and(|r| r.status() == 201) {
                    break;
                }
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };

    let mut seen: Vec<String> = Vec::new();
    let mut url = app.url("Patient?gender=unknown&_sort=birthdate&_count=17");
    let mut pages = 0;
    loop {
        let page = app.get_url(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        pages += 1;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(
                e["resource"]["identifier"][0]["value"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    writer.abort();
    let written = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        written >= 10,
        "the other client wrote while paging ({written})"
    );
    let originals: Vec<&String> = seen.iter().filter(|v| v.starts_with("orig")).collect();
    let mut unique = originals.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), originals.len(), "no result is repeated");
    assert_eq!(originals.len(), 300, "no result is missing");
    let late = seen.len() - originals.len();
    assert!(pages >= 18, "{pages} pages");
    eprintln!("walked {pages} pages while {written} Patients were written; {late} of them seen");
}

on_both_backends!(a_common_code_sorted_by_date_reads_the_date_index_in_order);

/// 2,100 Observations of one code: enough that a sorted search walks the date index instead
/// of sorting every match. Its pages must follow the dates exactly, ties broken by id, and
/// those without a date come last.
async fn a_common_code_sorted_by_date_reads_the_date_index_in_order(app: TestApp) {
    let obs = |i: usize| {
        let mut o = json!({"resourceType": "Observation", "id": format!("hr{i:04}"), "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
        // every 10th has no date; others share a date in pairs, so ties need the id
        if !i.is_multiple_of(10) {
            o["effectiveDateTime"] = json!(format!(
                "2025-{:02}-{:02}T{:02}:00:00Z",
                1 + (i * 7) % 12,
                1 + (i / 2) % 28,
                (i / 2) % 24
            ));
        }
        o
    };
    for chunk in (0..2100).collect::<Vec<_>>().chunks(300) {
        let entries: Vec<serde_json::Value> = chunk
            .iter()
            .map(|i| json!({"resource": obs(*i), "request": {"method": "PUT", "url": format!("Observation/hr{i:04}")}}))
            .collect();
        let r = app
            .post(
                "",
                &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // the expected order: latest date first, equal dates by id, undated last by id
    let mut expected: Vec<(Option<String>, String)> = (0..2100)
        .map(|i| {
            let o = obs(i);
            (
                o["effectiveDateTime"].as_str().map(str::to_string),
                format!("hr{i:04}"),
            )
        })
        .collect();
    expected.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => y.cmp(x).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    // the first pages, then a jump to the tail through the cursor of a late page
    let mut seen = Vec::new();
    let mut url = app.url("Observation?code=http://loinc.org|8867-4&_sort=-date&_count=250");
    loop {
        let page = app.get_url(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        seen.extend(
            page["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len());
    assert!(
        seen == expected,
        "pages out of order; first difference at {:?}",
        seen.iter().zip(&expected).position(|(a, b)| a != b)
    );
}
