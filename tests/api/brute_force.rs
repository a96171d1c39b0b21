//! Guessing and flooding get nowhere: a user's or a client's failed attempts lock it for a
//! while (the right password included, until the lock ends), each failure is in the audit
//! trail, and requests past the configured rates get 429 with Retry-After while everybody
//! else is served.

use crate::helpers::{Backend, TestApp, spawn, spawn_with};
use crate::launch::{Flow, setup};
use emrsync::auth::clients::{self, ClientKind, NewClient};
use serde_json::{Value, json};

fn failures(app: &TestApp, action: &str) -> Vec<(String, Option<String>)> {
    emrsync::store::audit::all(&mut app.db())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action && e.outcome == "failure")
        .map(|e| (e.actor, e.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_password_locks_the_user() {
    let app = spawn(Backend::Sqlite).await;
    setup(&app).await;
    let flow = Flow::new(&app);
    let params = flow.authorize_params();
    let attempt = |password: &str| {
        let mut form = params.clone();
        form.push(("username".into(), "pat".into()));
        form.push(("password".into(), password.into()));
        form
    };
    for guess in ["a", "b", "c", "d", "e"] {
        let r = flow.post_form("authorize", &attempt(guess)).await;
        assert_eq!(r.status(), 401);
    }
    // locked: the right password is refused too, and says for how long
    let r = flow.post_form("authorize", &attempt("s3cret-pass")).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    // every failure is in the audit trail, with who was tried and from where
    let audited = failures(&app, "login");
    assert_eq!(audited.len(), 5, "{audited:?}");
    assert!(
        audited[0].0.contains("user pat from 127.0.0.1"),
        "{audited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_client_secret_locks_the_client() {
    let app = spawn(Backend::Sqlite).await;
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: "payer".into(),
            kind: ClientKind::Symmetric,
            scope: "system/Patient.rs".into(),
            redirect_uris: Vec::new(),
            secret: Some("correct-horse-battery".into()),
            jwks: None,
            jwks_uri: None,
        },
    )
    .unwrap();
    let token = |secret: &str| {
        app.anonymous
            .post(format!("{}/auth/token", app.root))
            .basic_auth("payer", Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=system/Patient.rs")
            .send()
    };
    for guess in ["a", "b", "c", "d", "e"] {
        assert_eq!(token(guess).await.unwrap().status(), 401);
    }
    let r = token("correct-horse-battery").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(failures(&app, "token client-authentication").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_rates_wait_and_others_are_served() {
    // slow rates, so that even a loaded machine sends faster than they allow
    let app = spawn_with(Backend::Sqlite, |s| {
        s.auth_rate = 2;
        s.api_rate = 1;
    })
    .await;
    // /auth/* per address: a burst of 4, then 429
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = app
            .anonymous
            .get(format!("{}/auth/jwks", app.root))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..4].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");

    // the FHIR API per client: one client's flood leaves another served
    let (id, _) = app.create(&json!({"resourceType": "Patient"})).await;
    let flood = app.token_for("system/*.rs", None);
    let mut refused = None;
    for _ in 0..10 {
        let r = app.get_as(&flood, "Patient").await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a flood is refused");
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.first_issue().0, "throttled");
    let other = emrsync::auth::mint_offline(
        &app.database,
        &app.base,
        &emrsync::auth::Mint {
            subject: "other".into(),
            scope: "system/*.rs".into(),
            client_id: Some("other-client".into()),
            lifetime: std::time::Duration::from_secs(600),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(app.get_as(&other, "Patient").await.status, 200);
    // a batch is charged per entry: 30 reads need the whole allowance (2), which one read
    // just spent half of; once it is full again, the batch goes and empties it
    let entries: Vec<Value> = (0..30)
        .map(|_| json!({"request": {"method": "GET", "url": format!("Patient/{id}")}}))
        .collect();
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let r = app
        .send_as(&other, reqwest::Method::POST, "", Some(&batch))
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = app
        .send_as(&other, reqwest::Method::POST, "", Some(&batch))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 30);
}
