//! Outside clients' calls that issue 28 found refused, driven against the real server: the
//! Python `fhirpy` package (patch, get_or_create, is_valid, count) and the npm
//! `fhir-kit-client` (compartment search by POST).

use crate::helpers::{Backend, spawn};
use serde_json::{Value, json};

fn python() -> String {
    std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    )
}

/// Run an outside client; what it printed, as JSON (it must succeed).
pub fn run(cmd: &mut std::process::Command) -> Value {
    let out = cmd.output().expect("the client runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpy_patches_gets_or_creates_and_validates() {
    let app = spawn(Backend::Sqlite).await;
    let (base, token) = (app.base.clone(), app.token.clone());
    let seen = tokio::task::spawn_blocking(move || {
        run(std::process::Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/fhirpy_calls.py"
            ))
            .args([&base, &token]))
    })
    .await
    .unwrap();
    let id = seen["created_id"].as_str().unwrap();
    assert_eq!(
        seen["patched"],
        json!({"gender": "other", "birthDate": null,
               "name": [{"family": "Okafor", "given": ["Ada"]}], "versionId": "2"}),
        "{seen:#}"
    );
    assert_eq!(seen["resource_patch"]["active"], true, "{seen:#}");
    assert_eq!(seen["resource_patch"]["gender"], "other", "{seen:#}");
    assert_eq!(
        seen["get_or_create"],
        json!({"first_created": true, "second_created": false, "same": true, "count": 1}),
        "{seen:#}"
    );
    assert_eq!(
        (&seen["valid"], &seen["invalid"]),
        (&json!(true), &json!(false))
    );
    assert!(
        seen["invalid_raised"]
            .as_str()
            .is_some_and(|m| m.contains("banana")),
        "{seen:#}"
    );
    assert_eq!(seen["stored_after_validate"], 0, "$validate stores nothing");
    let stored = app.get(&format!("Patient/{id}")).await.json();
    assert_eq!(stored["meta"]["versionId"], "3", "{stored:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_kit_client_searches_a_compartment_by_post() {
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let obs = |code: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": format!("Patient/{pid}")}})
    };
    let (heart, _) = app.create(&obs("8867-4")).await;
    let (weight, _) = app.create(&obs("29463-7")).await;
    let dir = std::env::var("EMRSYNC_TEST_BROWSER").expect(
        "EMRSYNC_TEST_BROWSER is not set: run the suite with scripts/test, which installs \
         tests/browser's npm packages",
    );
    let (base, token) = (app.base.clone(), app.token.clone());
    let seen = tokio::task::spawn_blocking(move || {
        run(std::process::Command::new("node")
            .arg(format!("{dir}/fhir_kit_compartment.mjs"))
            .args([&base, &token, &pid, "http://loinc.org|8867-4"]))
    })
    .await
    .unwrap();
    let mut all = vec![heart.clone(), weight];
    all.sort();
    assert_eq!(
        seen,
        json!({"posted": [heart.clone()], "all": all, "got": [heart], "type": "searchset"})
    );
}
