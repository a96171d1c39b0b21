//! SMART Backend Services: discovery, the client registry and the `client_credentials` grant,
//! with assertions signed here by keys generated for each test, as a payer's backend would.

use crate::helpers::{Backend, TestApp, spawn};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use emrsync::auth::clients::{self, ClientKind, NewClient};
use emrsync::auth::now_secs;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A client's signing key: its private half, and its public JWK under `kid`.
struct ClientKey {
    alg: Algorithm,
    kid: String,
    private: EncodingKey,
    public: Jwk,
}

fn es384(kid: &str) -> ClientKey {
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
    key(
        Algorithm::ES384,
        kid,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
}

fn rs384(kid: &str) -> ClientKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    key(
        Algorithm::RS384,
        kid,
        EncodingKey::from_rsa_der(pkcs1_of(der.as_ref())),
    )
}

/// The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (what jsonwebtoken signs with):
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }.
fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
    // (tag, content start, content end) of the DER element at `at`
    let element = |at: usize| -> (u8, usize, usize) {
        let first = pkcs8[at + 1] as usize;
        let (len, start) = if first < 0x80 {
            (first, at + 2)
        } else {
            let n = first & 0x7f;
            let len = pkcs8[at + 2..at + 2 + n]
                .iter()
                .fold(0, |l, b| (l << 8) | *b as usize);
            (len, at + 2 + n)
        };
        (pkcs8[at], start, start + len)
    };
    let (_, body, _) = element(0);
    let (_, _, version_end) = element(body);
    let (_, _, algorithm_end) = element(version_end);
    let (tag, start, end) = element(algorithm_end);
    assert_eq!(tag, 0x04, "PKCS#8 holds the key in an OCTET STRING");
    &pkcs8[start..end]
}

fn key(alg: Algorithm, kid: &str, private: EncodingKey) -> ClientKey {
    let mut public = Jwk::from_encoding_key(&private, alg).unwrap();
    public.common.key_id = Some(kid.into());
    ClientKey {
        alg,
        kid: kid.into(),
        private,
        public,
    }
}

fn jwks(keys: &[&ClientKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.public.clone()).collect(),
    })
    .unwrap()
}

fn register(
    app: &TestApp,
    id: &str,
    kind: ClientKind,
    scope: &str,
    secret: Option<&str>,
    jwks: Option<String>,
) {
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: id.into(),
            kind,
            scope: scope.into(),
            redirect_uris: Vec::new(),
            secret: secret.map(Into::into),
            jwks,
            jwks_uri: None,
        },
    )
    .unwrap();
}

fn token_url(app: &TestApp) -> String {
    format!("{}/auth/token", app.root)
}

/// A client assertion: `claims` over the standard ones.
fn assertion(
    app: &TestApp,
    client: &str,
    key: &ClientKey,
    tweak: impl FnOnce(&mut Value),
) -> String {
    let mut claims = json!({
        "iss": client, "sub": client, "aud": token_url(app),
        "exp": now_secs() + 240, "jti": uuid::Uuid::new_v4().to_string()
    });
    tweak(&mut claims);
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, &claims, &key.private).unwrap()
}

async fn ask(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app
        .send(
            app.anonymous
                .post(token_url(app))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(form).unwrap()),
        )
        .await;
    (
        r.status,
        serde_json::from_str(&r.text).unwrap_or(Value::Null),
    )
}

async fn with_assertion(app: &TestApp, jwt: &str, scope: &str) -> (u16, Value) {
    ask(
        app,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
            ("scope", scope),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_names_the_endpoints_that_exist() {
    let app = spawn(Backend::Sqlite).await;
    let conf = app
        .send(
            app.anonymous
                .get(app.url(".well-known/smart-configuration")),
        )
        .await;
    assert_eq!(conf.status, 200);
    let conf = conf.json();
    assert_eq!(conf["token_endpoint"], token_url(&app));
    assert_eq!(conf["issuer"], format!("{}/auth", app.root));
    let jwks = app
        .send(app.anonymous.get(conf["jwks_uri"].as_str().unwrap()))
        .await;
    assert_eq!(jwks.status, 200);
    assert!(
        conf["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("client-confidential-asymmetric"))
    );
    assert!(
        conf["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS384"))
    );
    assert_eq!(conf["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        conf["authorization_endpoint"],
        format!("{}/auth/authorize", app.root)
    );
    let cs = app.get("metadata").await.json();
    let security = &cs["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris: Vec<(String, String)> = security["extension"][0]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["url"].as_str().unwrap().to_string(),
                e["valueUri"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        uris.contains(&("token".into(), token_url(&app))),
        "{uris:?}"
    );
    assert!(uris.contains(&("authorize".into(), format!("{}/auth/authorize", app.root))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_service_gets_a_token_with_a_signed_assertion_and_searches() {
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Payer"}]}))
        .await;
    let ec = es384("ec-1");
    let rsa = rs384("rsa-1");
    register(
        &app,
        "payer",
        ClientKind::Asymmetric,
        "system/Patient.rs system/Observation.rs",
        None,
        Some(jwks(&[&ec, &rsa])),
    );

    for key in [&ec, &rsa] {
        let jwt = assertion(&app, "payer", key, |_| {});
        let (status, body) =
            with_assertion(&app, &jwt, "system/Patient.rs system/Observation.cud").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["scope"], "system/Patient.rs", "asked ∩ allowed");
        assert_eq!(body["expires_in"], 300);
        let token = body["access_token"].as_str().unwrap();
        let r = app.get_as(token, &format!("Patient?_id={pid}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["entry"][0]["resource"]["id"], pid.as_str());
        assert_eq!(
            app.get_as(token, "Observation").await.status,
            403,
            "not granted"
        );

        // the same assertion again is a replay
        let (status, body) = with_assertion(&app, &jwt, "system/Patient.rs").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
    }

    let refused = |why: &'static str, jwt: String| async move { (why, jwt) };
    let stranger = es384("ec-1"); // same kid, a key the client never registered
    for (why, jwt) in [
        refused(
            "exp too far ahead",
            assertion(&app, "payer", &ec, |c| c["exp"] = json!(now_secs() + 900)),
        )
        .await,
        refused(
            "expired",
            assertion(&app, "payer", &ec, |c| c["exp"] = json!(now_secs() - 120)),
        )
        .await,
        refused(
            "other audience",
            assertion(&app, "payer", &ec, |c| {
                c["aud"] = json!("https://elsewhere.example/token")
            }),
        )
        .await,
        refused(
            "sub is not iss",
            assertion(&app, "payer", &ec, |c| c["sub"] = json!("someone")),
        )
        .await,
        refused(
            "unregistered key",
            assertion(&app, "payer", &stranger, |_| {}),
        )
        .await,
        refused("unknown client", assertion(&app, "nobody", &ec, |_| {})).await,
        refused(
            "no jti",
            assertion(&app, "payer", &ec, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        )
        .await,
    ] {
        let (status, body) = with_assertion(&app, &jwt, "system/Patient.rs").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{why}: {body}"
        );
    }

    let jwt = assertion(&app, "payer", &ec, |_| {});
    let (status, body) = with_assertion(&app, &jwt, "system/Encounter.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // no scope asked: the client's registered ones, said in the answer (Medplum asks none)
    let jwt = assertion(&app, "payer", &ec, |_| {});
    let (status, body) = with_assertion(&app, &jwt, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "system/Patient.rs system/Observation.rs");
    let (status, body) = ask(&app, &[("grant_type", "password"), ("username", "x")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symmetric_client_authenticates_with_its_secret() {
    let app = spawn(Backend::Postgres).await;
    register(
        &app,
        "hie",
        ClientKind::Symmetric,
        "system/*.rs",
        Some("correct horse battery staple"),
        None,
    );
    let basic_as = |id: &str, secret: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let basic = |secret: &str| basic_as("hie", secret);
    let post = |auth: String| {
        app.anonymous
            .post(token_url(&app))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", auth)
            .body("grant_type=client_credentials&scope=system%2F*.rs")
    };
    let ok = app.send(post(basic("correct horse battery staple"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.header("cache-control").as_deref(), Some("no-store"));
    let token = ok.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get_as(&token, "Patient").await.status, 200);

    // introspection and revocation, each by an authenticated client
    register(
        &app,
        "other",
        ClientKind::Symmetric,
        "system/*.rs",
        Some("another long secret!"),
        None,
    );
    let form = |path: &str, auth: String, body: String| {
        app.anonymous
            .post(format!("{}/auth/{path}", app.root))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", auth)
            .body(body)
    };
    let token_form = format!("token={token}");
    let seen = app
        .send(form(
            "introspect",
            basic("correct horse battery staple"),
            token_form.clone(),
        ))
        .await
        .json();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["scope"], "system/*.rs");
    assert_eq!(seen["client_id"], "hie");
    let anonymous = app
        .send(
            app.anonymous
                .post(format!("{}/auth/introspect", app.root))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(token_form.clone()),
        )
        .await;
    assert_eq!(anonymous.status, 401, "introspection needs a client");
    let foreign = app
        .send(form(
            "revoke",
            basic_as("other", "another long secret!"),
            token_form.clone(),
        ))
        .await;
    assert_eq!(
        foreign.status, 200,
        "RFC 7009 answers 200 whatever the token"
    );
    assert_eq!(
        app.get_as(&token, "Patient").await.status,
        200,
        "another client cannot revoke it"
    );
    let revoked = app
        .send(form(
            "revoke",
            basic("correct horse battery staple"),
            token_form.clone(),
        ))
        .await;
    assert_eq!(revoked.status, 200);
    let after = app.get_as(&token, "Patient").await;
    assert_eq!(after.status, 401);
    assert!(
        after
            .header("www-authenticate")
            .unwrap()
            .contains("revoked")
    );
    let seen = app
        .send(form(
            "introspect",
            basic("correct horse battery staple"),
            token_form,
        ))
        .await
        .json();
    assert_eq!(seen, json!({"active": false}));

    let bad = app.send(post(basic("wrong horse battery staple"))).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_client");
    let stored: String = {
        use diesel::prelude::*;
        use emrsync::store::schema::auth_clients;
        auth_clients::table
            .select(auth_clients::secret_hash.assume_not_null())
            .get_result(&mut app.db())
            .unwrap()
    };
    assert!(
        stored.starts_with("$argon2") && !stored.contains("horse"),
        "kept hashed"
    );
}

/// `emrsync client add|list|remove`, as an operator runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_command_registers_lists_and_removes() {
    let app = spawn(Backend::Sqlite).await;
    let ec = es384("k1");
    let file = app.dir.path().join("payer.jwks.json");
    std::fs::write(&file, jwks(&[&ec])).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"))
            .arg("client")
            .arg("--data-dir")
            .arg(app.dir.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let add = run(&[
        "add",
        "--id",
        "payer",
        "--kind",
        "asymmetric",
        "--scope",
        "system/*.rs",
        "--jwks-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let twice = run(&[
        "add",
        "--id",
        "payer",
        "--kind",
        "asymmetric",
        "--scope",
        "system/*.rs",
        "--jwks-file",
        file.to_str().unwrap(),
    ]);
    assert!(!twice.status.success());
    let no_keys = run(&[
        "add",
        "--id",
        "x",
        "--kind",
        "asymmetric",
        "--scope",
        "system/*.rs",
    ]);
    assert!(
        !no_keys.status.success(),
        "an asymmetric client without keys is refused"
    );
    let list = String::from_utf8(run(&["list"]).stdout).unwrap();
    assert!(list.starts_with("payer\tAsymmetric\tsystem/*.rs"), "{list}");

    let jwt = assertion(&app, "payer", &ec, |_| {});
    let (status, body) = with_assertion(&app, &jwt, "system/Patient.rs").await;
    assert_eq!(status, 200, "{body}");

    assert!(run(&["remove", "--id", "payer"]).status.success());
    let jwt = assertion(&app, "payer", &ec, |_| {});
    assert_eq!(with_assertion(&app, &jwt, "system/Patient.rs").await.0, 401);
}

/// A Backend Services client written with PyJWT (`tests/clients/backend_services.py`), with a
/// key from `emrsync client keygen`: discovery, a token, a search, and its replay refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyjwt_backend_services_client_gets_a_token_and_searches() {
    let app = spawn(Backend::Sqlite).await;
    let (p1, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let (p2, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let (pem, set) = clients::generate_es384("py-1").unwrap();
    let key = app.dir.path().join("payer.pem");
    std::fs::write(&key, pem).unwrap();
    register(
        &app,
        "py-payer",
        ClientKind::Asymmetric,
        "system/Patient.rs",
        None,
        Some(set),
    );
    let python = std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    );
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/backend_services.py"
            ))
            .args([&base, "py-payer", "py-1"])
            .arg(&key)
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
    assert_eq!(seen["token_status"], 200, "{seen}");
    assert_eq!(seen["scope"], "system/Patient.rs");
    assert_eq!(seen["replay_status"], 401, "the same assertion twice");
    assert_eq!(seen["search_status"], 200);
    let mut expected = vec![p1, p2];
    expected.sort();
    assert_eq!(seen["patients"], json!(expected));
    assert_eq!(seen["observation_status"], 403);
}

/// A client whose keys live at its own `jwks_uri` (a real HTTP server here): its assertions
/// are verified with the keys fetched from there, and a key it adds later (rotation) is
/// found by fetching again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publishing_its_keys_at_a_jwks_uri_is_verified_with_them() {
    use std::sync::{Arc, Mutex};
    let app = spawn(Backend::Sqlite).await;
    let first = es384("k1");
    let second = es384("k2");
    let published = Arc::new(Mutex::new(jwks(&[&first])));
    let served = published.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        let keys = served.clone();
        actix_web::App::new().route(
            "/jwks.json",
            actix_web::web::get().to(move || {
                let body = keys.lock().unwrap().clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: "hosted".into(),
            kind: ClientKind::Asymmetric,
            scope: "system/Patient.rs".into(),
            redirect_uris: Vec::new(),
            secret: None,
            jwks: None,
            jwks_uri: Some(format!("http://127.0.0.1:{port}/jwks.json")),
        },
    )
    .unwrap();

    let jwt = assertion(&app, "hosted", &first, |_| {});
    let (status, body) = with_assertion(&app, &jwt, "system/Patient.rs").await;
    assert_eq!(status, 200, "{body}");
    let jwt = assertion(&app, "hosted", &second, |_| {});
    let (status, _) = with_assertion(&app, &jwt, "system/Patient.rs").await;
    assert_eq!(status, 401, "k2 is not published yet");

    *published.lock().unwrap() = jwks(&[&first, &second]);
    // an unknown kid is fetched again at most every 10 s
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let jwt = assertion(&app, "hosted", &second, |_| {});
    let (status, body) = with_assertion(&app, &jwt, "system/Patient.rs").await;
    assert_eq!(status, 200, "the rotated-in key is fetched: {body}");
}
