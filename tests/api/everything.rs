//! `Patient/[id]/$everything`: the patient's whole record and what it refers to, paged, and
//! never more than the caller's token may read.

use crate::helpers::{Resp, TestApp, sorted};
use crate::on_both_backends;
use serde_json::{Value, json};

/// The `Type/id`s of the matches and includes of a searchset page, and its next link.
fn page(r: &Resp) -> (Vec<String>, Option<String>) {
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "searchset");
    let ids = b["entry"]
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
    let next = b["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string());
    (ids, next)
}

/// Every page of `$everything`, followed by its next links, as sorted `Type/id`s.
async fn everything(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut r = app.get_as(token, query).await;
    loop {
        let (ids, next) = page(&r);
        all.extend(ids);
        let Some(next) = next else { break };
        r = app.send(app.anonymous.get(next).bearer_auth(token)).await;
    }
    all.sort();
    all.dedup();
    all
}

on_both_backends!(
    patient_everything_returns_the_record_within_the_token,
    start_and_end_are_care_dates,
);

async fn patient_everything_returns_the_record_within_the_token(app: TestApp) {
    let (dr, _) = app
        .create(&json!({"resourceType":"Practitioner","name":[{"family":"Who"}]}))
        .await;
    let (a, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Alpha"}]}))
        .await;
    let (b, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Bravo"}]}))
        .await;
    let subject = |p: &str| json!({"reference": format!("Patient/{p}")});
    let (enc, _) = app
        .create(&json!({"resourceType":"Encounter","status":"finished",
            "class":{"code":"AMB"},"subject":subject(&a)}))
        .await;
    let obs = |p: &str| -> Value {
        json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
            "subject":subject(p),"performer":[{"reference":format!("Practitioner/{dr}")}]})
    };
    let (oa1, _) = app.create(&obs(&a)).await;
    let (oa2, _) = app.create(&obs(&a)).await;
    let (cond, _) = app
        .create(&json!({"resourceType":"Condition","subject":subject(&a),"code":{"text":"y"}}))
        .await;
    // A's record mentions B (a family member's observation of A): B must stay out of A's token
    let mut mentions_b = obs(&a);
    mentions_b["performer"] = json!([subject(&b)]);
    let (oa3, _) = app.create(&mentions_b).await;
    app.create(&obs(&b)).await;

    let full = app.token_for("system/*.rs", None);
    let record = sorted(vec![
        format!("Patient/{a}"),
        format!("Encounter/{enc}"),
        format!("Observation/{oa1}"),
        format!("Observation/{oa2}"),
        format!("Observation/{oa3}"),
        format!("Condition/{cond}"),
        format!("Practitioner/{dr}"),
    ]);
    let mut with_b = record.clone();
    with_b.push(format!("Patient/{b}"));
    let with_b = sorted(with_b);
    let path = format!("Patient/{a}/$everything");
    assert_eq!(everything(&app, &full, &path).await, with_b);
    // paged two at a time, the pages add up to the same record
    assert_eq!(
        everything(&app, &full, &format!("{path}?_count=2")).await,
        with_b
    );
    // _type keeps to the types named (and what they refer to: here the patient)
    assert_eq!(
        everything(&app, &full, &format!("{path}?_type=Encounter,Condition")).await,
        sorted(vec![
            format!("Encounter/{enc}"),
            format!("Condition/{cond}"),
            format!("Patient/{a}")
        ])
    );
    // _since: nothing changed after now
    assert!(
        everything(&app, &full, &format!("{path}?_since=2999-01-01T00:00:00Z"))
            .await
            .is_empty()
    );

    // A's own token: A's record, without B even where A's record points at B
    let own = app.token_for("patient/*.rs", Some(&a));
    assert_eq!(everything(&app, &own, &path).await, record);
    let r = app.get_as(&own, &format!("Patient/{b}/$everything")).await;
    assert_eq!(r.status, 404, "as if B did not exist: {}", r.text);
    assert_eq!(r.first_issue().0, "not-found");
    // a token that may search Observations only gets the patient's Observations
    let obs_only = app.token_for("system/Observation.rs system/Patient.r", None);
    assert_eq!(
        everything(&app, &obs_only, &path).await,
        sorted(vec![
            format!("Observation/{oa1}"),
            format!("Observation/{oa2}"),
            format!("Observation/{oa3}"),
        ])
    );
    let r = app
        .get_as(&obs_only, &format!("{path}?_type=Condition"))
        .await;
    assert_eq!(
        r.status, 403,
        "a type named that it may not search: {}",
        r.text
    );

    let r = app.get_as(&full, "Patient/nobody/$everything").await;
    assert_eq!(r.status, 404);
    let r = app.get_as(&full, &format!("{path}?_type=CodeSystem")).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("CodeSystem"), "{}", r.text);
}

/// `start` and `end` keep the records of care within the dates (by each type's clinical
/// `date`, ranges overlapping) and whatever has no such date.
async fn start_and_end_are_care_dates(app: TestApp) {
    let (p, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let subject = json!({"reference": format!("Patient/{p}")});
    let obs = |when: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": subject, "effectiveDateTime": when})
    };
    app.create(&obs("2020-01-05")).await;
    let (inside, _) = app.create(&obs("2022-05-05T10:00:00Z")).await;
    app.create(&obs("2023-06-01")).await;
    let (enc, _) = app
        .create(
            &json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
            "subject": subject, "period": {"start": "2022-12-30", "end": "2023-03-02"}}),
        )
        .await;
    let (cond, _) = app
        .create(&json!({"resourceType": "Condition", "subject": subject, "code": {"text": "y"}}))
        .await;
    let got = everything(
        &app,
        &app.token,
        &format!("Patient/{p}/$everything?start=2022-01-01&end=2023-03-01"),
    )
    .await;
    assert_eq!(
        got,
        sorted(vec![
            format!("Condition/{cond}"),
            format!("Encounter/{enc}"),
            format!("Observation/{inside}"),
            format!("Patient/{p}"),
        ])
    );
    let from = everything(
        &app,
        &app.token,
        &format!("Patient/{p}/$everything?start=2023-01-01"),
    )
    .await;
    assert_eq!(
        from.iter()
            .filter(|t| t.starts_with("Observation/"))
            .count(),
        1,
        "{from:?}"
    );
    let bad = app
        .get(&format!("Patient/{p}/$everything?start=yesterday"))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}
