//! Bad input is answered with the right status and an OperationOutcome that points at the
//! element, and nothing is written.

use crate::helpers::TestApp;
use crate::on_both_backends;
use diesel::prelude::*;
use emrsync::store::schema::resource_versions;
use serde_json::json;

on_both_backends!(
    invalid_content_is_422_at_the_element,
    malformed_requests_are_400_or_415,
    unknown_elements_refused_unless_lenient,
    refused_writes_leave_nothing_behind,
);

async fn invalid_content_is_422_at_the_element(app: TestApp) {
    let cases = [
        (
            json!({"resourceType":"Patient","gender":"banana"}),
            "code-invalid",
            "Patient.gender",
        ),
        (
            json!({"resourceType":"Patient","birthDate":"01/02/1970"}),
            "value",
            "Patient.birthDate",
        ),
        (
            json!({"resourceType":"Patient","birthDate":"2023-02-30"}),
            "value",
            "Patient.birthDate",
        ),
        (
            json!({"resourceType":"Patient","name":[{"family":""}]}),
            "value",
            "Patient.name[0].family",
        ),
        (
            json!({"resourceType":"Observation","code":{"text":"x"}}),
            "required",
            "Observation.status",
        ),
        (
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"comparator":"~"}}),
            "code-invalid",
            "Observation.valueQuantity.comparator",
        ),
        (
            json!({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","active":"yes"}]}),
            "structure",
            "Patient.contained[0].ofType(Organization).active",
        ),
        (
            json!({"resourceType":"Patient","identifier":[{"system":"has space","value":"1"}]}),
            "value",
            "Patient.identifier[0].system",
        ),
    ];
    for (body, code, at) in cases {
        let r = app
            .post(body["resourceType"].as_str().unwrap(), &body)
            .await;
        assert!(
            r.status == 422 || r.status == 400,
            "{body}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            r.first_issue(),
            (code.to_string(), at.to_string()),
            "{body}"
        );
        assert_eq!(r.json()["issue"][0]["severity"], "error");
    }
}

async fn malformed_requests_are_400_or_415(app: TestApp) {
    let raw = |body: &'static str, ct: &'static str| {
        app.client
            .post(app.url("Patient"))
            .header("content-type", ct)
            .body(body)
    };
    let broken = app
        .send(raw(
            "{\"resourceType\":\"Patient\",",
            "application/fhir+json",
        ))
        .await;
    assert_eq!(broken.status, 400);
    assert_eq!(broken.first_issue().0, "structure");
    let not_object = app.send(raw("[1,2]", "application/fhir+json")).await;
    assert_eq!(not_object.status, 400);
    let empty = app.send(raw("", "application/fhir+json")).await;
    assert_eq!(empty.status, 400);
    let wrong_ct = app.send(raw("{}", "text/plain")).await;
    assert_eq!(wrong_ct.status, 415);
    let wrong_type = app
        .post(
            "Patient",
            &json!({"resourceType":"Observation","status":"final","code":{"text":"x"}}),
        )
        .await;
    assert_eq!(wrong_type.status, 400);
    assert_eq!(wrong_type.first_issue().1, "Patient.resourceType");
    let mismatch = app
        .put("Patient/abc", &json!({"resourceType":"Patient","id":"xyz"}))
        .await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.text);
    let no_id = app
        .put("Patient/abc", &json!({"resourceType":"Patient"}))
        .await;
    assert_eq!(no_id.status, 400);
    let unknown = app
        .post("Spaceship", &json!({"resourceType":"Spaceship"}))
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.first_issue().0, "not-supported");
    let bad_id = app
        .put("Patient/a_b", &json!({"resourceType":"Patient","id":"a_b"}))
        .await;
    assert_eq!(bad_id.status, 400);
}

async fn unknown_elements_refused_unless_lenient(app: TestApp) {
    let body = json!({"resourceType":"Patient","nmae":[{"family":"Typo"}],"gender":"other"});
    let strict = app.post("Patient", &body).await;
    assert_eq!(strict.status, 400, "{}", strict.text);
    assert_eq!(
        strict.first_issue(),
        ("structure".to_string(), "Patient.nmae".to_string())
    );
    let lenient = app
        .post_with(
            "Patient",
            &body,
            ("Prefer", "handling=lenient, return=OperationOutcome"),
        )
        .await;
    assert_eq!(lenient.status, 201, "{}", lenient.text);
    let oo = lenient.json();
    assert_eq!(
        oo["issue"][0]["severity"], "warning",
        "the dropped element is reported"
    );
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.nmae");
    let location = lenient.header("location").unwrap();
    let stored = app
        .get_url(location.split("/_history").next().unwrap())
        .await
        .json();
    assert!(stored.get("nmae").is_none());
    assert_eq!(stored["gender"], "other");
}

async fn refused_writes_leave_nothing_behind(app: TestApp) {
    for body in [
        json!({"resourceType":"Patient","gender":"banana"}),
        json!({"resourceType":"Patient","unknownThing":true}),
        json!({"resourceType":"Observation","status":"final"}),
    ] {
        let r = app
            .post(body["resourceType"].as_str().unwrap(), &body)
            .await;
        assert!(r.status >= 400, "{}", r.text);
    }
    // (the server's own SubscriptionTopic Basics left out)
    let versions: i64 = resource_versions::table
        .filter(resource_versions::resource_type.ne("Basic"))
        .count()
        .get_result(&mut app.db())
        .unwrap();
    assert_eq!(versions, 0);
}
