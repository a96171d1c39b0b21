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
    emrsync::auth::users::add(
        &mut app.db(),
        "py-pat",
        "s3cret-pass",
        &format!("Patient/{me}"),
    )
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
    assert_eq!(
        seen["observations"],
        json!([mine]),
        "only the patient's own"
    );
    assert_eq!(seen["other_patient"], 404, "{seen}");
    assert_eq!(seen["refreshed"], true, "{seen}");
}

/// The npm `fhirclient` in headless Chromium (`tests/browser/ehr_launch.mjs`): an EHR mints a
/// launch for a patient and encounter, opens the app's launch page with it, a practitioner
/// signs in and approves, and the app reads its context and data from the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_fhirclient_completes_an_ehr_launch_in_chromium() {
    let app = spawn(Backend::Sqlite).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let redirect = format!("http://127.0.0.1:{port}/index.html");
    let me = app_and_patient(&app, "js-app", &redirect).await;
    emrsync::auth::users::add(&mut app.db(), "dr-js", "s3cret-pass", "Practitioner/dr-js").unwrap();
    let (enc, _) = app
        .create(&json!({"resourceType":"Encounter","status":"in-progress",
            "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
            "subject":{"reference":format!("Patient/{me}")}}))
        .await;
    let (mine, _) = app
        .create(
            &json!({"resourceType":"Observation","status":"final","code":{"text":"pulse"},
            "subject":{"reference":format!("Patient/{me}")}}),
        )
        .await;
    let (other, _) = app.create(&json!({"resourceType":"Patient"})).await;

    // the EHR, with its own token, mints the launch
    let minted = app
        .send(
            app.client
                .post(format!("{}/auth/launch", app.root))
                .header("content-type", "application/json")
                .body(json!({"patient": me, "encounter": enc, "intent": "review"}).to_string()),
        )
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let launch = minted.json()["launch"].as_str().unwrap().to_string();

    let dir = std::env::var("EMRSYNC_TEST_BROWSER").expect(
        "EMRSYNC_TEST_BROWSER is not set: run the suite with scripts/test, which installs \
         Chromium and tests/browser's npm packages",
    );
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(format!("{dir}/ehr_launch.mjs"))
            .args([
                &port.to_string(),
                &base,
                &launch,
                "dr-js",
                "s3cret-pass",
                &other,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let authorize = seen["authorize_url"].as_str().unwrap_or_default();
    assert!(
        authorize.contains("code_challenge_method=S256") && authorize.contains("launch="),
        "{seen}"
    );
    assert_eq!(seen["login_at"], "/auth/authorize", "{seen}");
    assert!(
        seen["consent_text"]
            .as_str()
            .unwrap()
            .contains("patient/*.rs"),
        "{seen}"
    );
    assert_eq!(seen["app_at"], "/index.html", "{seen}");
    let got = &seen["app"];
    assert_eq!(got["error"], Value::Null, "{seen}");
    assert_eq!(got["patient"], json!(me), "{seen}");
    assert_eq!(got["family"], "Launched");
    assert_eq!(got["encounter"], json!(enc));
    assert_eq!(got["intent"], "review");
    assert_eq!(got["user"], "Practitioner/dr-js");
    assert_eq!(got["observations"], json!([mine]));
    assert_eq!(seen["other_patient"], 404, "{seen}");
}
