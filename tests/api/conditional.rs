//! Conditional update, patch and delete: a search picks the one resource to change.

use crate::helpers::TestApp;
use crate::on_both_backends;
use serde_json::json;

on_both_backends!(conditional_writes_change_exactly_the_match);

async fn conditional_writes_change_exactly_the_match(app: TestApp) {
    let patient = |mrn: &str, family: &str| {
        json!({"resourceType": "Patient", "gender": "male",
               "identifier": [{"system": "http://hospital.example.org/mrn", "value": mrn}],
               "name": [{"family": family}]})
    };
    let by_mrn = |mrn: &str| format!("Patient?identifier=http://hospital.example.org/mrn|{mrn}");

    // no match: the update creates
    let created = app.put(&by_mrn("A1"), &patient("A1", "Ng")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();
    // one match: the same resource gets a new version
    let updated = app.put(&by_mrn("A1"), &patient("A1", "Nguyen")).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json()["id"], id.as_str());
    assert_eq!(updated.json()["meta"]["versionId"], "2");
    // a body id that contradicts the match is refused
    let mut wrong = patient("A1", "X");
    wrong["id"] = json!("someone-else");
    assert_eq!(app.put(&by_mrn("A1"), &wrong).await.status, 400);

    // patch the match; no match is 404
    let ops = json!([{"op": "replace", "path": "/name/0/family", "value": "Nguyễn"}]);
    let patched = app
        .send(
            app.client
                .patch(app.url(&by_mrn("A1")))
                .header("content-type", "application/json-patch+json")
                .body(ops.to_string()),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["name"][0]["family"], "Nguyễn");
    let missing = app
        .send(
            app.client
                .patch(app.url(&by_mrn("nobody")))
                .header("content-type", "application/json-patch+json")
                .body(ops.to_string()),
        )
        .await;
    assert_eq!(missing.status, 404);

    // several matches: 412, and nothing changes
    assert_eq!(
        app.put(&by_mrn("B2"), &patient("B2", "Okafor"))
            .await
            .status,
        201
    );
    assert_eq!(
        app.put("Patient?gender=male", &patient("C3", "Z"))
            .await
            .status,
        412
    );
    assert_eq!(app.delete("Patient?gender=male").await.status, 412);
    let still = app.get(&format!("Patient/{id}")).await;
    assert_eq!(still.json()["meta"]["versionId"], "3");

    // delete the match; then nothing matches
    let gone = app.delete(&by_mrn("A1")).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(app.get(&format!("Patient/{id}")).await.status, 410);
    let again = app.delete(&by_mrn("A1")).await;
    assert_eq!(again.status, 200);
    assert!(again.text.contains("matches no resource"), "{}", again.text);

    // a condition naming a reference by this server's absolute URL finds the relative one
    let obs = json!({"resourceType": "Observation", "status": "final",
                     "code": {"text": "heart rate"}, "subject": {"reference": "Patient/someone"}});
    let (obs_id, _) = app.create(&obs).await;
    let by_subject = format!("Observation?subject={}/Patient/someone", app.base);
    let again = app.put(&by_subject, &obs).await;
    assert_eq!(
        again.status, 200,
        "the match is updated, not duplicated: {}",
        again.text
    );
    assert_eq!(again.json()["id"], obs_id.as_str());

    // without a search, a conditional write would touch everything: refused
    assert_eq!(app.put("Patient", &patient("D4", "Q")).await.status, 400);
    assert_eq!(app.delete("Patient").await.status, 400);
}
