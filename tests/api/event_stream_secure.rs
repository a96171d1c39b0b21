//! The event stream to a broker that asks who is publishing: TLS with the hospital's CA, a
//! token, an nkey. A server given what the broker asks for publishes; one without it publishes
//! nothing and keeps every change in its outbox.

use crate::event_stream::{Access, Nats, outbox};
use crate::helpers::{Backend, TestApp, spawn_with};
use emrsync::stream::config::BrokerArgs;
use serde_json::json;
use std::time::Duration;

fn port() -> u16 {
    crate::process::free_port()
}

async fn publishing(nats: &Nats, set: impl FnOnce(&mut BrokerArgs)) -> TestApp {
    let mut broker = BrokerArgs {
        url: Some(nats.url.clone()),
        ..Default::default()
    };
    set(&mut broker);
    spawn_with(Backend::Sqlite, move |s| s.stream.broker = broker).await
}

/// A Patient written to `app` is on the stream (the stream's first event).
async fn reaches(nats: &Nats, app: &TestApp) {
    let (id, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Secure"}]}))
        .await;
    let events = nats.events("EMRSYNC", 1).await;
    assert!(
        events
            .iter()
            .any(|(_, _, e)| e["resourceId"] == id.as_str()),
        "{events:?}"
    );
}

/// A Patient written to `app` stays in its outbox, unpublished.
async fn stays_in_the_outbox(app: &TestApp) {
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "Outsider"}]}))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rows = outbox(app);
    assert!(
        !rows.is_empty() && rows.iter().all(|(_, p)| p.is_none()),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = crate::certs::server(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-stream-token\n").unwrap();
    let conf = r#"authorization { token: "s3cret-stream-token" }
tls { cert_file: "{dir}/cert.pem", key_file: "{dir}/key.pem" }"#;
    let access = Access {
        token: Some("s3cret-stream-token".into()),
        ca: Some(cert.clone()),
        ..Default::default()
    };
    let nats = Nats::start_in(dir, port(), conf, access).await;
    assert!(nats.url.starts_with("tls://"));

    // without the token, or without the CA that signed the broker's certificate: nothing
    let (ca, token_path) = (cert.clone(), token.clone());
    let no_token = publishing(&nats, move |s| s.ca_file = Some(ca)).await;
    stays_in_the_outbox(&no_token).await;
    let no_ca = publishing(&nats, move |s| s.token_file = Some(token_path)).await;
    stays_in_the_outbox(&no_ca).await;

    let app = publishing(&nats, move |s| {
        s.ca_file = Some(cert);
        s.token_file = Some(token);
    })
    .await;
    reaches(&nats, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let conf = format!(
        "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}",
        user.public_key()
    );
    let access = Access {
        nkey_seed: Some(seed.clone()),
        ..Default::default()
    };
    let nats = Nats::start_with(port(), &conf, access).await;
    let seed_file = nats.dir.path().join("emrsync.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).unwrap();

    // another key the broker does not know
    let stranger = nats.dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let outsider = publishing(&nats, move |s| s.nkey_file = Some(stranger)).await;
    stays_in_the_outbox(&outsider).await;

    let app = publishing(&nats, move |s| s.nkey_file = Some(seed_file)).await;
    reaches(&nats, &app).await;
}
