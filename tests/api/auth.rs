//! SMART access tokens and their enforcement: what is refused (401 for a token that is missing,
//! forged, expired or not for this server; 403 for too little scope), and what a token confined
//! to one patient can reach by every interaction.

use crate::helpers::{Backend, TestApp, spawn};
use crate::on_both_backends;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use emrsync::auth::keys::KeyRing;
use emrsync::auth::{AccessClaims, now_secs, token};
use serde_json::{Value, json};

/// The claims a good token of `app` carries, to alter one at a time.
fn good_claims(app: &TestApp) -> AccessClaims {
    AccessClaims {
        iss: emrsync::auth::issuer_for(&app.base),
        aud: app.base.clone(),
        sub: "attacker".into(),
        exp: now_secs() + 600,
        iat: now_secs(),
        jti: uuid::Uuid::new_v4().to_string(),
        scope: "system/*.cruds".into(),
        client_id: None,
        patient: None,
        encounter: None,
        fhir_user: None,
    }
}

fn signed(app: &TestApp, claims: &AccessClaims) -> String {
    let ring = KeyRing::load(&mut app.db(), None).unwrap();
    token::sign(&ring, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn status_with(app: &TestApp, token: &str) -> (u16, String) {
    let r = app.get_as(token, "Patient").await;
    let challenge = r.header("www-authenticate").unwrap_or_default();
    (r.status, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_by_default() {
    let app = spawn(Backend::Sqlite).await;
    let r = app
        .send(
            app.anonymous
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType":"Patient"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"emrsync\"")
    );
    assert_eq!(r.first_issue().0, "login");
    let get = |path: &str| app.send(app.anonymous.get(app.url(path)));
    assert_eq!(get("Patient/x").await.status, 401);
    assert_eq!(get("metadata").await.status, 200);
    let health = app
        .send(app.anonymous.get(format!("{}/health", app.root)))
        .await;
    assert_eq!(health.status, 200);
    let jwks = app
        .send(app.anonymous.get(format!("{}/auth/jwks", app.root)))
        .await
        .json();
    let kid = token::key_id(&app.token).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "the private part is never served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let app = spawn(Backend::Sqlite).await;
    let good = signed(&app, &good_claims(&app));
    assert_eq!(status_with(&app, &good).await.0, 200, "the control case");

    let expired = signed(
        &app,
        &AccessClaims {
            exp: now_secs() - 120,
            ..good_claims(&app)
        },
    );
    let (status, challenge) = status_with(&app, &expired).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("expired"), "{challenge}");
    // the server's own tokens get no clock leeway: two seconds late is late
    let just_expired = signed(
        &app,
        &AccessClaims {
            exp: now_secs() - 2,
            ..good_claims(&app)
        },
    );
    assert_eq!(status_with(&app, &just_expired).await.0, 401);

    let other_server = signed(
        &app,
        &AccessClaims {
            aud: "http://elsewhere.example/fhir".into(),
            ..good_claims(&app)
        },
    );
    assert_eq!(status_with(&app, &other_server).await.0, 401, "wrong aud");
    let other_issuer = signed(
        &app,
        &AccessClaims {
            iss: "http://evil.example/auth".into(),
            ..good_claims(&app)
        },
    );
    assert_eq!(status_with(&app, &other_issuer).await.0, 401, "wrong iss");

    let (header, signature) = {
        let parts: Vec<&str> = good.split('.').collect();
        (parts[0].to_string(), parts[2].to_string())
    };
    let kid = token::key_id(&good).unwrap();
    let claims = serde_json::to_value(good_claims(&app)).unwrap();

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"JWT","kid":kid})),
        b64(&claims)
    );
    assert_eq!(status_with(&app, &none).await.0, 401, "alg none");

    // HS256 "signed" with the server's public key, which anyone can fetch
    let public = app
        .send(app.anonymous.get(format!("{}/auth/jwks", app.root)))
        .await
        .text;
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        status_with(&app, &hs256).await.0,
        401,
        "HS256 with the public key"
    );

    let mut more = good_claims(&app);
    more.sub = "someone-else".into();
    let tampered = format!(
        "{header}.{}.{signature}",
        b64(&serde_json::to_value(more).unwrap())
    );
    assert_eq!(
        status_with(&app, &tampered).await.0,
        401,
        "payload changed after signing"
    );

    let mut unknown_kid = jsonwebtoken::decode_header(&good).unwrap();
    unknown_kid.kid = Some("not-a-key-of-ours".into());
    let forged_kid = format!(
        "{}.{}",
        b64(&serde_json::to_value(&unknown_kid).unwrap()),
        good.split_once('.').unwrap().1
    );
    assert_eq!(status_with(&app, &forged_kid).await.0, 401, "unknown kid");
    assert_eq!(status_with(&app, "not.a.jwt").await.0, 401, "garbage");
    let r = app
        .send(
            app.anonymous
                .get(app.url("Patient"))
                .header("authorization", format!("Basic {good}")),
        )
        .await;
    assert_eq!(r.status, 401, "not a bearer token");
}

on_both_backends!(
    scopes_limit_types_and_interactions,
    a_patient_token_stays_in_its_compartment
);

async fn scopes_limit_types_and_interactions(app: TestApp) {
    let (pid, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Scope"}]}))
        .await;
    let read_only = app.token_for("system/*.rs", None);
    assert_eq!(
        app.get_as(&read_only, &format!("Patient/{pid}"))
            .await
            .status,
        200
    );
    let write = app
        .send_as(
            &read_only,
            reqwest::Method::POST,
            "Patient",
            Some(&json!({"resourceType":"Patient"})),
        )
        .await;
    assert_eq!(write.status, 403, "{}", write.text);
    assert_eq!(write.first_issue().0, "forbidden");
    let delete = app
        .send_as(
            &read_only,
            reqwest::Method::DELETE,
            &format!("Patient/{pid}"),
            None,
        )
        .await;
    assert_eq!(delete.status, 403);
    assert_eq!(
        app.get(&format!("Patient/{pid}")).await.status,
        200,
        "nothing was deleted"
    );

    let patients_only = app.token_for("system/Patient.rs", None);
    assert_eq!(app.get_as(&patients_only, "Patient").await.status, 200);
    assert_eq!(app.get_as(&patients_only, "Observation").await.status, 403);
    assert_eq!(
        app.get_as(&patients_only, "Observation/x").await.status,
        403
    );
    assert_eq!(
        app.get_as(&patients_only, "?_type=Patient,Observation")
            .await
            .status,
        403
    );
    assert_eq!(
        app.get_as(&patients_only, "?_id=x").await.status,
        403,
        "all types"
    );
    assert_eq!(
        app.get_as(&patients_only, "Observation/_history")
            .await
            .status,
        403
    );

    // v1 scopes mean what they meant
    let v1 = app.token_for("user/Patient.read", None);
    assert_eq!(app.get_as(&v1, &format!("Patient/{pid}")).await.status, 200);
    let tx = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]});
    let r = app.send_as(&v1, reqwest::Method::POST, "", Some(&tx)).await;
    assert_eq!(r.status, 403, "{}", r.text);

    // a scope that names nothing this server knows grants nothing
    let nothing = app.token_for("openid fhirUser launch/patient", None);
    assert_eq!(
        app.get_as(&nothing, &format!("Patient/{pid}")).await.status,
        403
    );
}

/// Patient A's token against patient B's data, by every way in.
async fn a_patient_token_stays_in_its_compartment(app: TestApp) {
    let (a, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Alpha"}]}))
        .await;
    let (b, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Bravo"}]}))
        .await;
    let obs = |patient: &str, code: &str| {
        json!({"resourceType":"Observation","status":"final",
               "code":{"coding":[{"system":"http://loinc.org","code":code}]},
               "subject":{"reference":format!("Patient/{patient}")}})
    };
    let (oa, _) = app.create(&obs(&a, "1111-1")).await;
    let (ob, _) = app.create(&obs(&b, "secret-b")).await;
    // A's Observation that points at B's: a chain through it must not read B's
    let mut focus = obs(&a, "2222-2");
    focus["focus"] = json!([{"reference": format!("Observation/{ob}")}]);
    focus["performer"] = json!([{"reference": format!("Patient/{b}")}]);
    let (oa2, _) = app.create(&focus).await;

    let t = app.token_for("patient/*.cruds", Some(&a));
    let ids = |r: &crate::helpers::Resp| -> Vec<String> {
        let mut v: Vec<String> = r.json()["entry"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
                    .map(|e| {
                        format!(
                            "{}/{}",
                            e["resource"]["resourceType"].as_str().unwrap(),
                            e["resource"]["id"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // read and vread
    assert_eq!(app.get_as(&t, &format!("Patient/{a}")).await.status, 200);
    assert_eq!(
        app.get_as(&t, &format!("Observation/{oa}")).await.status,
        200
    );
    // another patient's resources answer exactly as ids that do not exist: a patient app
    // cannot learn which exist (nor, through HL7v2's ids, which MRN is a patient here)
    let unknown = |r: crate::helpers::Resp| (r.status, r.first_issue().0);
    let missing = unknown(app.get_as(&t, "Patient/no-such-patient").await);
    assert_eq!(missing, (404, "not-found".to_string()));
    for path in [
        format!("Patient/{b}"),
        format!("Observation/{ob}"),
        format!("Observation/{ob}/_history/1"),
        format!("Observation/{ob}/_history"),
        format!("Patient/{b}/$everything"),
    ] {
        assert_eq!(unknown(app.get_as(&t, &path).await), missing, "{path}");
    }

    // search: only A's compartment, whatever the criteria say
    let r = app.get_as(&t, "Observation").await;
    assert_eq!(
        ids(&r),
        sorted(vec![
            format!("Observation/{oa}"),
            format!("Observation/{oa2}")
        ])
    );
    let r = app
        .get_as(&t, &format!("Observation?subject=Patient/{b}"))
        .await;
    assert_eq!(ids(&r), Vec::<String>::new());
    let r = app.get_as(&t, &format!("Patient?_id={a},{b}")).await;
    assert_eq!(ids(&r), vec![format!("Patient/{a}")]);
    let r = app.get_as(&t, &format!("Patient/{b}/Observation")).await;
    assert_eq!(
        ids(&r),
        vec![format!("Observation/{oa2}")],
        "B's compartment, searched with A's token: only what is in both (oa2 names B as performer)"
    );

    // _include and _revinclude add nothing of B's
    let r = app
        .get_as(
            &t,
            &format!(
                "Observation?_id={oa2}&_include=Observation:performer&_include=Observation:focus"
            ),
        )
        .await;
    assert_eq!(ids(&r), vec![format!("Observation/{oa2}")]);
    let r = app
        .get_as(
            &t,
            &format!("Patient?_id={a},{b}&_revinclude=Observation:subject"),
        )
        .await;
    assert_eq!(
        ids(&r),
        sorted(vec![
            format!("Observation/{oa}"),
            format!("Observation/{oa2}"),
            format!("Patient/{a}")
        ])
    );

    // chains and _has cannot test B's data
    let leak = "Observation?focus:Observation.code=secret-b";
    let all = app.get(leak).await;
    assert_eq!(
        ids(&all),
        vec![format!("Observation/{oa2}")],
        "the chain works for a system token"
    );
    assert_eq!(ids(&app.get_as(&t, leak).await), Vec::<String>::new());
    let has = app
        .get_as(&t, "Patient?_has:Observation:subject:code=secret-b")
        .await;
    assert_eq!(ids(&has), Vec::<String>::new());
    let has_own = app
        .get_as(&t, "Patient?_has:Observation:subject:code=1111-1")
        .await;
    assert_eq!(ids(&has_own), vec![format!("Patient/{a}")]);

    // history (another patient's instance: as if it did not exist, see above)
    assert_eq!(
        app.get_as(&t, &format!("Observation/{ob}/_history"))
            .await
            .status,
        404
    );
    let h = app.get_as(&t, "Observation/_history").await;
    assert_eq!(h.status, 200);
    let h = h.json();
    assert!(
        h.get("total").is_none(),
        "no count of other patients' changes"
    );
    let seen: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(
        seen.contains(&oa.as_str()) && !seen.contains(&ob.as_str()),
        "{seen:?}"
    );

    // writes: into A's compartment only, and never taking B's resources over
    let w = app
        .send_as(
            &t,
            reqwest::Method::POST,
            "Observation",
            Some(&obs(&b, "x")),
        )
        .await;
    assert_eq!(w.status, 403, "{}", w.text);
    let w = app
        .send_as(
            &t,
            reqwest::Method::POST,
            "Observation",
            Some(&obs(&a, "x")),
        )
        .await;
    assert_eq!(w.status, 201, "{}", w.text);
    let mut takeover = obs(&a, "secret-b");
    takeover["id"] = json!(ob);
    let w = app
        .send_as(
            &t,
            reqwest::Method::PUT,
            &format!("Observation/{ob}"),
            Some(&takeover),
        )
        .await;
    assert_eq!(w.status, 403, "{}", w.text);
    let w = app
        .send_as(
            &t,
            reqwest::Method::DELETE,
            &format!("Observation/{ob}"),
            None,
        )
        .await;
    assert_eq!(w.status, 403);
    assert_eq!(
        app.get(&format!("Observation/{ob}")).await.json()["subject"]["reference"],
        format!("Patient/{b}")
    );

    // a conditional write looks for its match inside the compartment only: B's Observation of
    // that code is neither found (which would tell it exists) nor touched
    let w = app
        .send_as(
            &t,
            reqwest::Method::PUT,
            "Observation?code=secret-b",
            Some(&obs(&a, "secret-b")),
        )
        .await;
    assert_eq!(
        w.status, 201,
        "no match in A's compartment: a create: {}",
        w.text
    );
    let w = app
        .send_as(
            &t,
            reqwest::Method::DELETE,
            "Observation?code=secret-b",
            None,
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.text);
    assert_eq!(
        app.get(&format!("Observation/{ob}")).await.status,
        200,
        "B's is still there"
    );

    // a transaction with one entry outside the compartment is refused whole
    let before = app.get("Observation?_summary=count").await.json()["total"].clone();
    let tx = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource": obs(&a, "t1"), "request":{"method":"POST","url":"Observation"}},
        {"resource": obs(&b, "t2"), "request":{"method":"POST","url":"Observation"}},
        {"request":{"method":"GET","url":format!("Observation/{oa}")}}]});
    let r = app.send_as(&t, reqwest::Method::POST, "", Some(&tx)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        app.get("Observation?_summary=count").await.json()["total"],
        before
    );
    let batch = json!({"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":format!("Observation/{oa}")}},
        {"request":{"method":"GET","url":format!("Observation/{ob}")}}]});
    let r = app
        .send_as(&t, reqwest::Method::POST, "", Some(&batch))
        .await
        .json();
    assert_eq!(r["entry"][0]["response"]["status"], "200 OK");
    assert!(
        r["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404"),
        "{r}"
    );

    // shared reference data (a drug, the terminology) is readable; of Subscriptions, only its
    // patient's (none here)
    let (med, _) = app
        .create(&json!({"resourceType":"Medication","code":{"text":"aspirin"}}))
        .await;
    assert_eq!(
        app.get_as(&t, &format!("Medication/{med}")).await.status,
        200
    );
    assert_eq!(app.get_as(&t, "CodeSystem").await.status, 200);
    let subscriptions = app.get_as(&t, "Subscription").await;
    assert_eq!(subscriptions.status, 200, "{}", subscriptions.text);
    assert_eq!(subscriptions.json()["total"], 0);
}

/// `emrsync token`, run as a newcomer would, signs with the server's own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_mints_a_token_the_server_accepts() {
    let app = spawn(Backend::Sqlite).await;
    let (pid, _) = app.create(&json!({"resourceType":"Patient"})).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"))
        .args(["token", "--scope", "system/Patient.rs", "--expires", "5m"])
        .arg("--data-dir")
        .arg(app.dir.path())
        .args(["--base-url", &app.base])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run emrsync token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
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
    assert_eq!(w.status, 403);
    let claims: AccessClaims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(claims.exp - now_secs() <= 300 && claims.exp - now_secs() > 250);
}
