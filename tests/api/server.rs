//! The server as a whole: health, metadata, unknown routes, security by default, formats.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::on_both_backends;
use serde_json::json;

on_both_backends!(
    health_reports_the_database,
    metadata_says_what_is_supported,
    unknown_routes_and_types_get_operation_outcomes,
    xml_in_and_out,
);

async fn health_reports_the_database(app: TestApp) {
    let r = app
        .send(app.client.get(format!("{}/health", app.root)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "pass");
    assert_eq!(r.json()["database"], "ok");
}

async fn metadata_says_what_is_supported(app: TestApp) {
    let r = app.get("metadata").await;
    assert_eq!(r.status, 200);
    let cs = r.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["implementation"]["url"], app.base);
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146, "every R4 resource type");
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for c in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
    ] {
        assert!(codes.contains(&c), "Patient supports {c}: {codes:?}");
    }
    assert!(codes.contains(&"search-type"));
    assert_eq!(patient["operation"][0]["name"], "everything");
    // the Subscription topics, the Backport IG's way, and its operations
    let subscription = resources
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap();
    let topics: Vec<&str> = subscription["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["valueCanonical"].as_str().unwrap())
        .collect();
    assert!(
        topics.contains(&"http://emrsync.org/SubscriptionTopic/encounter-start"),
        "{topics:?}"
    );
    assert!(topics.len() >= 12);
    let ops: Vec<&str> = subscription["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["status", "events"]);
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "family",
        "identifier",
        "birthdate",
        "general-practitioner",
    ] {
        assert!(params.contains(&p), "Patient lists {p}: {params:?}");
    }
    let obs = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let obs_params: Vec<&str> = obs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(obs_params.contains(&"code-value-quantity"));
    let has = |r: &serde_json::Value, key: &str, v: &str| {
        r[key].as_array().unwrap().iter().any(|x| x == v)
    };
    assert!(has(obs, "searchInclude", "Observation:subject"));
    assert!(has(patient, "searchRevInclude", "Observation:subject"));
    assert!(
        !has(patient, "searchInclude", "Patient:name"),
        "only references include"
    );
    assert_eq!(patient["conditionalUpdate"], true);
    assert_eq!(patient["conditionalDelete"], "single");
    let seq = resources
        .iter()
        .find(|r| r["type"] == "MolecularSequence")
        .unwrap();
    let seq_params: Vec<&str> = seq["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        seq_params.contains(&"chromosome-variant-coordinate"),
        "a three-part composite is offered"
    );
    let document = resources
        .iter()
        .find(|r| r["type"] == "DocumentReference")
        .unwrap();
    assert!(
        !document["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "relationship"),
        "a composite that starts with a reference is not offered"
    );
    let system: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        system,
        ["transaction", "batch", "history-system", "search-system"]
    );
}

async fn unknown_routes_and_types_get_operation_outcomes(app: TestApp) {
    let unknown_type = app.get("Pateint/1").await;
    assert_eq!(unknown_type.status, 404);
    assert_eq!(unknown_type.first_issue().0, "not-supported");
    let bad_id = app.get("Patient/has space").await;
    assert_eq!(bad_id.status, 400);
    let wrong_method = app
        .send(app.client.put(app.url("Patient/p1/_history")))
        .await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text);
    assert_eq!(wrong_method.first_issue().0, "not-supported");
    // an instance takes GET, PUT, PATCH and DELETE; another method is told, not taken elsewhere
    let post_instance = app
        .send(
            app.client
                .post(app.url("Patient/p1"))
                .header("content-type", "application/fhir+json")
                .body(r#"{"resourceType": "Patient"}"#),
        )
        .await;
    assert_eq!(post_instance.status, 405, "{}", post_instance.text);
    assert_eq!(post_instance.first_issue().0, "not-supported");
    // keywords and operations are never taken for an id
    let history = app.get("Patient/_history").await;
    assert_eq!(history.status, 200, "{}", history.text);
    assert_eq!(history.json()["type"], "history");
    let nowhere = app
        .send(app.client.get(format!("{}/nowhere", app.root)))
        .await;
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.first_issue().0, "not-found");
    let bad_format = app.get("metadata?_format=yaml").await;
    assert_eq!(bad_format.status, 406);
}

async fn xml_in_and_out(app: TestApp) {
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><birthDate value="1980-03-04"/></Patient>"#;
    let created = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+xml")
                .body(xml),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let as_xml = app
        .send(
            app.client
                .get(app.url(&format!("Patient/{id}")))
                .header("accept", "application/fhir+xml"),
        )
        .await;
    assert!(
        as_xml
            .header("content-type")
            .unwrap()
            .starts_with("application/fhir+xml")
    );
    assert!(
        as_xml.text.contains(r#"<birthDate value="1980-03-04"/>"#),
        "{}",
        as_xml.text
    );
    assert!(
        as_xml.text.contains(&format!(r#"<id value="{id}"/>"#)),
        "{}",
        as_xml.text
    );
    let by_param = app.get(&format!("Patient/{id}?_format=xml")).await;
    assert!(
        by_param
            .text
            .contains("<Patient xmlns=\"http://hl7.org/fhir\">"),
        "{}",
        by_param.text
    );
    let bad_xml = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+xml")
                .body("<Patient"),
        )
        .await;
    assert_eq!(bad_xml.status, 400);
    assert_eq!(bad_xml.first_issue().0, "structure");
}

/// The body limit is configurable, and a body past it is refused before it is buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let app = spawn_with(Backend::Sqlite, |s| s.max_body_bytes = 1024).await;
    let big = json!({"resourceType":"Patient","name":[{"family":"x".repeat(2000)}]});
    let r = app.post("Patient", &big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.first_issue().0, "too-costly");
    let small = app
        .post("Patient", &json!({"resourceType":"Patient","active":true}))
        .await;
    assert_eq!(small.status, 201, "the server still serves after refusing");
}

/// A browser app on its own origin can call the FHIR API and the token endpoint: preflights
/// are answered before authentication, and a 401 is readable by the app's script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_apps_on_another_origin_may_call() {
    let app = crate::helpers::spawn(crate::helpers::Backend::Sqlite).await;
    let origin = "http://127.0.0.1:5555";
    for path in [
        format!("{}/Patient", app.base),
        format!("{}/auth/token", app.root),
    ] {
        let pre = app
            .send(
                app.anonymous
                    .request(reqwest::Method::OPTIONS, &path)
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header(
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
            )
            .await;
        assert_eq!(pre.status, 200, "{path}: {}", pre.text);
        assert_eq!(
            pre.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        let allowed = pre
            .header("access-control-allow-headers")
            .unwrap_or_default();
        assert!(allowed.contains("authorization"), "{allowed}");
    }
    let r = app
        .send(
            app.anonymous
                .get(app.url("Patient"))
                .header("origin", origin),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(
        exposed.to_lowercase().contains("www-authenticate"),
        "{exposed}"
    );
    // the login pages are navigated to, never fetched across origins
    let r = app
        .send(
            app.anonymous
                .request(
                    reqwest::Method::OPTIONS,
                    format!("{}/auth/authorize", app.root),
                )
                .header("origin", origin)
                .header("access-control-request-method", "POST"),
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
}
