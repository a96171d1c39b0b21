//! The questions an auditor asks of the trail (issue 24), as a FHIR client asks them: by the
//! user (a clinician's `Practitioner` reference) or the client an access came through, by the
//! action (C R U D E) and the network address, newest first as `_sort=-date` says; and the
//! CapabilityStatement names what the trail answers, no more.

use crate::audit::{correlation, of, spawn, trail, with_id};
use crate::helpers::{Backend, TestApp, mint};
use serde_json::{Value, json};

/// A new Patient `family`, read once by `user` through `client` (a clinician's SMART app) under
/// the correlation id `request`; its id.
async fn read_by_a_clinician(
    app: &TestApp,
    family: &str,
    (user, client): (&str, &str),
    request: &str,
) -> String {
    let (pid, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
        .await;
    let m = emrsync::auth::Mint {
        subject: user.into(),
        scope: "user/Patient.rs".into(),
        client_id: Some(client.into()),
        fhir_user: Some(user.into()),
        lifetime: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    let clinician =
        emrsync::auth::mint_offline(&app.database, &app.base, &m, app.seal.as_deref()).unwrap();
    let read = app
        .anonymous
        .get(app.url(&format!("Patient/{pid}")))
        .bearer_auth(&clinician)
        .header("x-request-id", request);
    assert_eq!(app.send(read).await.status, 200);
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_asks_by_user_client_action_and_address() {
    let app = spawn(Backend::Sqlite).await;
    let auditor = mint(&app.database, &app.base, "system/AuditEvent.rs", None);
    // a clinician reads the record through the ward's app
    let clinician = ("Practitioner/dr-lee", "ward-app");
    let pid = read_by_a_clinician(&app, "Asked", clinician, "q-clinician-read").await;
    assert_eq!(
        with_id(
            &app,
            app.client.get(app.url(&format!("Patient/{pid}"))),
            "q-system-read"
        )
        .await,
        200
    );
    let ask = |q: String| {
        let (app, auditor) = (&app, auditor.clone());
        async move { trail(app, &auditor, &q, |e| !of(e, "q-clinician-read").is_empty()).await }
    };
    let ids = |events: &[Value]| -> Vec<String> {
        let mut c: Vec<String> = events.iter().map(|e| correlation(e).to_string()).collect();
        c.sort();
        c.dedup();
        c
    };
    // by the user, by the client, by the whole name: the clinician's read only
    for agent in [
        "Practitioner/dr-lee",
        "client%20ward-app",
        "Practitioner/dr-lee%20via%20client%20ward-app",
    ] {
        let found = ask(format!("patient={pid}&agent={agent}")).await;
        assert_eq!(ids(&found), ["q-clinician-read"], "agent={agent}");
        assert_eq!(
            found[0]["agent"][0]["who"]["reference"], "Practitioner/dr-lee",
            "{found:#?}"
        );
    }
    let nobody = trail(
        &app,
        &auditor,
        &format!("patient={pid}&agent=Practitioner/someone-else"),
        |_| true,
    )
    .await;
    assert!(nobody.is_empty(), "{nobody:#?}");
    // by action: the reads, not the create; the create alone
    let reads = ask(format!("patient={pid}&action=R&_sort=-date")).await;
    let got = ids(&reads);
    assert!(
        got.contains(&"q-clinician-read".to_string()) && got.contains(&"q-system-read".to_string()),
        "{got:?}"
    );
    assert!(reads.iter().all(|e| e["action"] == "R"), "{reads:#?}");
    let creates = trail(&app, &auditor, &format!("patient={pid}&action=C"), |e| {
        !e.is_empty()
    })
    .await;
    assert!(!creates.is_empty());
    assert!(creates.iter().all(|e| e["action"] == "C"), "{creates:#?}");
    // by the address the access came from
    let here = ask(format!("patient={pid}&address=127.0.0.1")).await;
    assert!(ids(&here).contains(&"q-clinician-read".to_string()));
    let elsewhere = trail(
        &app,
        &auditor,
        &format!("patient={pid}&address=10.9.9.9"),
        |_| true,
    )
    .await;
    assert!(elsewhere.is_empty(), "{elsewhere:#?}");
    // one order only: asked for another, the auditor is told
    for (q, says) in [
        ("_sort=date", "newest first"),
        ("action=X", "C, R, U, D or E"),
        ("source=emrsync", "not supported here"),
    ] {
        let r = app
            .send_as(
                &auditor,
                reqwest::Method::GET,
                &format!("AuditEvent?{q}"),
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.text.contains(says), "{q}: {}", r.text);
    }

    // the CapabilityStatement names what the trail answers: read and search, these parameters
    let cs = app.get("metadata").await.json();
    let audit = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .unwrap()
        .clone();
    let mut interactions: Vec<&str> = audit["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    interactions.sort();
    assert_eq!(interactions, ["read", "search-type"]);
    let mut params: Vec<&str> = audit["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    params.sort();
    let mut expected = emrsync::ops::audit::search::PARAMS.to_vec();
    expected.sort();
    assert_eq!(params, expected);
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    assert!(
        !patient["searchRevInclude"]
            .to_string()
            .contains("AuditEvent:"),
        "{}",
        patient["searchRevInclude"]
    );
}

/// Blocks posted before an agent's user and client were terms of their own get those postings
/// from their bodies (the backfill of migration 000042): found by the user afterwards, and
/// `verify`, which missed nothing before, finds nothing missing after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_posted_before_agent_parts_get_them_from_their_bodies() {
    use diesel::prelude::*;
    use emrsync::store::audit;
    use emrsync::store::schema::audit_postings as p;
    let app = spawn(Backend::Sqlite).await;
    let auditor = mint(&app.database, &app.base, "system/AuditEvent.rs", None);
    let clinician = ("Practitioner/dr-old", "old-app");
    let pid = read_by_a_clinician(&app, "Older", clinician, "q-old-read").await;
    let by_user = format!("patient={pid}&agent=Practitioner/dr-old");
    let found = trail(&app, &auditor, &by_user, |e| !e.is_empty()).await;
    assert_eq!(of(&found, "q-old-read").len(), 1);
    // wait for its run, then take the user's and the client's postings away, as blocks
    // posted by an older build lack them
    let mut conn = app.db();
    for _ in 0..100 {
        if crate::audit_blocks::unposted(&mut conn) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let parts = [
        audit::named_term("agent", "Practitioner/dr-old"),
        audit::named_term("agent", "client old-app"),
    ];
    let gone = diesel::delete(p::table.filter(p::term.eq_any(parts)))
        .execute(&mut conn)
        .unwrap();
    assert!(gone >= 2, "{gone}");
    let before = audit::verify(&mut conn).unwrap();
    assert!(
        before
            .problems
            .iter()
            .any(|p| p.contains("index terms are missing")),
        "{before:?}"
    );
    assert!(audit::post_again(&mut conn).unwrap() >= 1);
    let after = audit::verify(&mut conn).unwrap();
    assert!(after.problems.is_empty(), "{after:?}");
    let found = trail(&app, &auditor, &by_user, |e| !e.is_empty()).await;
    assert_eq!(of(&found, "q-old-read").len(), 1);
}
