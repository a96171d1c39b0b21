//! SMART v2 query-restricted scopes (`patient/Observation.rs?category=laboratory`): the token
//! reads and searches what the restriction's search matches and nothing else, by every way in;
//! a read by id (tested in memory) and a search (tested in SQL) agree.

use crate::helpers::{Resp, TestApp};
use crate::on_both_backends;
use serde_json::{Value, json};

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn obs(patient: &str, category: &str, code: &str, status: &str) -> Value {
    json!({"resourceType":"Observation","status":status,
        "category":[{"coding":[{"system":CATEGORY,"code":category}]}],
        "code":{"coding":[{"system":"http://loinc.org","code":code}]},
        "subject":{"reference":format!("Patient/{patient}")}})
}

/// The `Type/id`s of a search's matches and includes, sorted.
fn found(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text);
    let mut v: Vec<String> = r.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

on_both_backends!(
    a_query_restricted_scope_reaches_only_what_its_query_matches,
    a_restricted_read_and_a_restricted_search_agree
);

async fn a_query_restricted_scope_reaches_only_what_its_query_matches(app: TestApp) {
    let (a, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Alpha"}]}))
        .await;
    let (b, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Bravo"}]}))
        .await;
    let (lab_a, _) = app.create(&obs(&a, "laboratory", "2345-7", "final")).await;
    let (vitals_a, _) = app.create(&obs(&a, "vital-signs", "8867-4", "final")).await;
    let (lab_b, _) = app.create(&obs(&b, "laboratory", "2345-7", "final")).await;

    // SMART's own example, written as the spec writes it (a literal `|`)
    let t = app.token_for(
        &format!("patient/Observation.rs?category={CATEGORY}|laboratory patient/Patient.rs"),
        Some(&a),
    );
    assert_eq!(
        found(&app.get_as(&t, "Observation").await),
        [format!("Observation/{lab_a}")]
    );
    assert_eq!(
        app.get_as(&t, &format!("Observation/{lab_a}")).await.status,
        200
    );
    // outside the restriction: answered as if it did not exist, so that its existence is
    // not told either
    let r = app.get_as(&t, &format!("Observation/{vitals_a}")).await;
    assert_eq!(r.status, 404, "vital signs are outside the restriction");
    assert!(r.text.contains("is not known"), "{}", r.text);
    assert_eq!(
        app.get_as(&t, &format!("Observation/{lab_b}")).await.status,
        404,
        "another patient's lab result"
    );
    assert_eq!(
        app.get_as(&t, &format!("Observation/{vitals_a}/_history/1"))
            .await
            .status,
        404,
        "vread"
    );
    // _revinclude and _has see only what the scope reaches
    assert_eq!(
        found(
            &app.get_as(&t, "Patient?_revinclude=Observation:subject")
                .await
        ),
        [format!("Observation/{lab_a}"), format!("Patient/{a}")]
    );
    assert!(
        found(
            &app.get_as(&t, "Patient?_has:Observation:subject:code=8867-4")
                .await
        )
        .is_empty(),
        "_has must not reveal that a vital sign exists"
    );
    // history of the type keeps to the restriction too
    let h = found(&app.get_as(&t, "Observation/_history").await);
    assert_eq!(h, [format!("Observation/{lab_a}")]);
    // a restricted scope cannot write
    let w = app
        .send_as(
            &t,
            reqwest::Method::POST,
            "Observation",
            Some(&obs(&a, "laboratory", "1", "final")),
        )
        .await;
    assert_eq!(w.status, 403);

    // two restrictions on one type add up; a system scope reaches every patient
    let t = app.token_for(
        "system/Observation.rs?category=laboratory system/Observation.rs?category=vital-signs&code=8867-4",
        None,
    );
    assert_eq!(
        found(
            &app.get_as(&t, &format!("Observation?subject={a},{b}"))
                .await
        ),
        {
            let mut v = vec![
                format!("Observation/{lab_a}"),
                format!("Observation/{vitals_a}"),
                format!("Observation/{lab_b}"),
            ];
            v.sort();
            v
        }
    );
    // a restriction that is no search of the type reaches nothing, and says why
    let t = app.token_for("system/Observation.rs?colour=red", None);
    let r = app.get_as(&t, "Observation").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.first_issue().0, "forbidden");
    assert!(
        r.text.contains("colour is not a search parameter"),
        "{}",
        r.text
    );
}

/// For several restrictions, each Observation is readable by id exactly when a search finds
/// it: the in-memory matcher and the SQL say the same.
async fn a_restricted_read_and_a_restricted_search_agree(app: TestApp) {
    let (p, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let mut all = Vec::new();
    for (category, code, status) in [
        ("laboratory", "2345-7", "final"),
        ("laboratory", "718-7", "amended"),
        ("vital-signs", "8867-4", "final"),
        ("vital-signs", "8310-5", "preliminary"),
        ("social-history", "72166-2", "final"),
    ] {
        let (id, _) = app.create(&obs(&p, category, code, status)).await;
        all.push(id);
    }
    let (no_category, _) = app
        .create(&json!({"resourceType":"Observation","status":"final",
            "code":{"text":"free text"},"subject":{"reference":format!("Patient/{p}")}}))
        .await;
    all.push(no_category);

    for restriction in [
        "category=laboratory",
        "category=laboratory,vital-signs&status=final",
        "status:not=final",
        "code=http://loinc.org|8867-4",
        "category:missing=true",
        "category=vital-signs&_lastUpdated=gt2000-01-01",
    ] {
        let t = app.token_for(&format!("system/Observation.rs?{restriction}"), None);
        let searched = found(&app.get_as(&t, &format!("Observation?subject={p}")).await);
        let mut read = Vec::new();
        for id in &all {
            let r = app.get_as(&t, &format!("Observation/{id}")).await;
            assert!(matches!(r.status, 200 | 404), "{}", r.text);
            if r.status == 200 {
                read.push(format!("Observation/{id}"));
            }
        }
        read.sort();
        assert_eq!(searched, read, "{restriction}");
        assert!(!read.is_empty() && read.len() < all.len(), "{restriction}");
    }
}
