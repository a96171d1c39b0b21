//! External identity provider mode, with a second emrsync as the provider: its tokens, verified
//! with the keys it publishes, are accepted and their scopes enforced; tokens it did not sign or
//! did not mean for this server are not.

use crate::helpers::{Backend, spawn, spawn_with};
use emrsync::auth::keys::KeyRing;
use emrsync::auth::{Mint, issuer_for, mint_with};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_the_configured_identity_provider_are_accepted_and_enforced() {
    let provider = spawn(Backend::Sqlite).await;
    let provider_issuer = issuer_for(&provider.base);
    let jwks_uri = format!("{}/auth/jwks", provider.root);
    let (iss, uri) = (provider_issuer.clone(), jwks_uri.clone());
    let app = spawn_with(Backend::Sqlite, move |s| {
        s.idp_issuer = Some(iss);
        s.idp_jwks_uri = Some(uri);
    })
    .await;
    let (pid, _) = app.create(&json!({"resourceType":"Patient"})).await;

    let provider_ring = KeyRing::load(&mut provider.db(), None).unwrap();
    let from_provider = |audience: &str, scope: &str| {
        let m = Mint {
            subject: "nurse-7".into(),
            scope: scope.into(),
            client_id: Some("ward-app".into()),
            lifetime: Duration::from_secs(300),
            ..Default::default()
        };
        mint_with(&provider_ring, &provider_issuer, audience, &m).0
    };

    let token = from_provider(&app.base, "user/Patient.rs");
    assert_eq!(
        app.get_as(&token, &format!("Patient/{pid}")).await.status,
        200
    );
    let w = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "Patient",
            Some(&json!({"resourceType":"Patient"})),
        )
        .await;
    assert_eq!(w.status, 403, "the provider's scopes are enforced");
    assert_eq!(app.get_as(&token, "Observation").await.status, 403);

    let for_the_provider = from_provider(&provider.base, "user/Patient.rs");
    assert_eq!(
        app.get_as(&for_the_provider, &format!("Patient/{pid}"))
            .await
            .status,
        401,
        "a token the provider minted for another audience"
    );
    // signed by this server's own key but claiming to be the provider's
    let own_ring = KeyRing::load(&mut app.db(), None).unwrap();
    let impostor = mint_with(
        &own_ring,
        &provider_issuer,
        &app.base,
        &Mint {
            subject: "x".into(),
            scope: "user/*.cruds".into(),
            lifetime: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .0;
    assert_eq!(
        app.get_as(&impostor, "Patient").await.status,
        401,
        "not the provider's key"
    );
    assert_eq!(
        app.get("Patient").await.status,
        200,
        "the server's own tokens still work"
    );
}
