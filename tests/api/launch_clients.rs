//! SMART launches completed by clients written by others: the Python `fhirclient` package
//! (standalone launch, the login and consent forms submitted over HTTP) and the npm
//! `fhirclient` (SMART's JavaScript client) in headless Chromium (EHR launch).

use crate::helpers::{Backend, TestApp, spawn};
use emrsync::auth::clients::{self, ClientKind, NewClient};
use serde_json::{Value, json};

/// Register a public app and a patient who signs in to it; the patient's id.
async fn app_and_patient(app: &TestApp, client_id: &str, redirect: &str) -> String {
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: client_id.into(),
            kind: ClientKind::Public,
            scope: "openid fhirUser launch launch/patient patient/*.rs offline_access".into(),
            redirect_uris: vec![redirect.into()],
            secret: None,
            jwks: None,
            jwks_uri: None,
        },
    )
    .unwrap();
    let (me, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Launched","given":["Py"]}]}))
        .await;
    emrsync::auth::users::add(&mut app.db(), "py-pat", "s3cret-pass", &format!("Patient/{me}"))
        .unwrap();
    me
}

fn python() -> String {
    std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_fhirclient_completes_a_standalone_launch() {
    let app = spawn(Backend::Sqlite).await;
    let redirect = "http://127.0.0.1:9/py-callback";
    let me = app_and_patient(&app, "py-app", redirect).await;
    let obs = |p: &str| {
        json!({"resourceType":"Observation","status":"final","code":{"text":"weight"},
            "subject":{"reference":format!("Patient/{p}")}})
    };
    let (mine, _) = app.create(&obs(&me)).await;
    let (other, _) = app.create(&json!({"resourceType":"Patient"})).await;
    app.create(&obs(&other)).await;

    let base = app.base.clone();
    let redirect = redirect.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/standalone_launch.py"
            ))
            .args([&base, "py-app", &redirect, "py-pat", "s3cret-pass", &other])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["authorize_url_has_pkce"], true, "{seen}");
    assert_eq!(seen["login_status"], 200, "{seen}");
    assert_eq!(seen["consent_status"], 200, "{seen}");
    assert_eq!(seen["consent_lists_scope"], true, "{seen}");
    assert_eq!(seen["redirect_status"], 302, "{seen}");
    assert_eq!(seen["redirect_to_app"], true, "{seen}");
    assert_eq!(seen["ready"], true, "{seen}");
    assert_eq!(seen["patient_id"], json!(me));
    assert_eq!(seen["has_refresh_token"], true, "{seen}");
    assert_eq!(seen["patient_family"], "Launched");
    assert_eq!(seen["observations"], json!([mine]), "only the patient's own");
    assert_eq!(seen["other_patient"], 403, "{seen}");
    assert_eq!(seen["refreshed"], true, "{seen}");
}
