//! Bulk Data export (issue 27): a client kicks off `$export`, polls, and downloads ndjson files
//! that hold what its searches would find; only that client sees the job; parameters it cannot
//! honour are refused at kick-off; a cancel removes the job.

use crate::helpers::{Resp, TestApp};
use crate::on_both_backends;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

on_both_backends!(
    a_system_export_holds_what_searches_find_for_its_client_only,
    exports_filter_by_type_time_and_search,
    what_an_export_cannot_honour_is_refused_and_a_cancel_ends_it,
    patient_and_group_exports_hold_their_members_compartments,
    associated_provenance_comes_with_what_it_is_about,
);

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "gender": "female"})
}

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 5.1, "unit": "mmol/L"}})
}

/// `GET` (or `POST` with a body) `path` (`$export?...`, `Patient/$export`...) with
/// `Prefer: respond-async` (and `prefer`, if any) as `token`.
async fn kick_off_at(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Option<&Value>,
    prefer: &str,
) -> Resp {
    let url = app.url(path);
    let req = match body {
        None => app.anonymous.get(url),
        Some(b) => app
            .anonymous
            .post(url)
            .header("content-type", "application/fhir+json")
            .body(b.to_string()),
    };
    let prefer = match prefer {
        "" => "respond-async".to_string(),
        more => format!("respond-async, {more}"),
    };
    app.send(
        req.bearer_auth(token)
            .header("prefer", prefer)
            .header("accept", "application/fhir+json"),
    )
    .await
}

/// A system kick-off: `$export{query}`.
async fn kick_off(app: &TestApp, token: &str, query: &str, body: Option<&Value>) -> Resp {
    kick_off_at(app, token, &format!("$export{query}"), body, "").await
}

/// Poll the status URL until the manifest comes (202s carry `X-Progress` until then).
async fn manifest(app: &TestApp, token: &str, status_url: &str) -> Value {
    for _ in 0..200 {
        let r = app
            .send(app.anonymous.get(status_url).bearer_auth(token))
            .await;
        match r.status {
            202 => {
                assert!(r.header("x-progress").is_some(), "{:?}", r.headers);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            200 => return r.json(),
            other => panic!("status {other}: {}", r.text),
        }
    }
    panic!("the export did not finish")
}

/// A system export of `query` (and `body`) as `token`, run to its end: its manifest and
/// every resource in its files.
async fn exported(
    app: &TestApp,
    token: &str,
    query: &str,
    body: Option<&Value>,
) -> (Value, Vec<Value>) {
    let r = kick_off(app, token, query, body).await;
    assert_eq!(r.status, 202, "{query}: {}", r.text);
    let m = manifest(app, token, &r.header("content-location").unwrap()).await;
    let got = download(app, token, &m).await;
    (m, got)
}

/// The export's resources by type: every line of every output file, parsed.
async fn download(app: &TestApp, token: &str, manifest: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for out in manifest["output"].as_array().unwrap() {
        let r = app
            .send(
                app.anonymous
                    .get(out["url"].as_str().unwrap())
                    .bearer_auth(token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/fhir+ndjson")
        );
        let lines: Vec<Value> = r
            .text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, out["count"].as_u64().unwrap(), "{out}");
        assert!(lines.iter().all(|l| l["resourceType"] == out["type"]));
        all.extend(lines);
    }
    all
}

fn ids_of(resources: &[Value], rtype: &str) -> BTreeSet<String> {
    resources
        .iter()
        .filter(|r| r["resourceType"] == rtype)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn token_of(app: &TestApp, client: &str, scope: &str) -> String {
    let m = emrsync::auth::Mint {
        subject: client.into(),
        scope: scope.into(),
        client_id: Some(client.into()),
        lifetime: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    emrsync::auth::mint_offline(&app.database, &app.base, &m, app.seal.as_deref()).unwrap()
}

async fn a_system_export_holds_what_searches_find_for_its_client_only(app: TestApp) {
    let mut patients = BTreeSet::new();
    let mut observations = BTreeSet::new();
    for n in 0..5 {
        let (p, _) = app.create(&patient(&format!("Export{n}"))).await;
        for code in ["2823-3", "2345-7"] {
            observations.insert(app.create(&observation(&p, code)).await.0);
        }
        patients.insert(p);
    }
    // a deleted one is not exported
    let (gone, _) = app.create(&patient("Deleted")).await;
    assert_eq!(app.delete(&format!("Patient/{gone}")).await.status, 200);

    let payer = token_of(&app, "payer", "system/*.rs");
    let r = kick_off(&app, &payer, "", None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let status_url = r.header("content-location").expect("Content-Location");
    assert!(status_url.starts_with(&app.base), "{status_url}");
    let m = manifest(&app, &payer, &status_url).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert!(
        m["request"].as_str().unwrap().ends_with("/fhir/$export"),
        "{m}"
    );
    assert!(m["transactionTime"].as_str().is_some(), "{m}");
    let exported = download(&app, &payer, &m).await;
    assert_eq!(ids_of(&exported, "Patient"), patients);
    assert_eq!(ids_of(&exported, "Observation"), observations);
    // every resource once
    let keys: BTreeSet<(String, String)> = exported
        .iter()
        .map(|r| (r["resourceType"].to_string(), r["id"].to_string()))
        .collect();
    assert_eq!(keys.len(), exported.len());

    // another client neither sees the job nor its files
    let other = token_of(&app, "someone-else", "system/*.rs");
    let r = app
        .send(app.anonymous.get(&status_url).bearer_auth(&other))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let file_url = m["output"][0]["url"].as_str().unwrap();
    let r = app
        .send(app.anonymous.get(file_url).bearer_auth(&other))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // nor does anyone without a token
    assert_eq!(app.send(app.anonymous.get(file_url)).await.status, 401);

    // the CapabilityStatement says so, as the IG asks
    let cs = app.get("metadata").await.json();
    assert_eq!(
        cs["instantiates"][0],
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
    );
    let ops = cs["rest"][0]["operation"].as_array().unwrap();
    assert!(ops.iter().any(|o| o["name"] == "export"), "{ops:?}");
}

async fn exports_filter_by_type_time_and_search(app: TestApp) {
    let (early, _) = app.create(&patient("Early")).await;
    app.create(&observation(&early, "2823-3")).await;
    let (doomed, _) = app.create(&patient("Doomed")).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(app.delete(&format!("Patient/{doomed}")).await.status, 200);
    let (late, _) = app.create(&patient("Late")).await;
    let (potassium, _) = app.create(&observation(&late, "2823-3")).await;
    app.create(&observation(&late, "2345-7")).await;
    let token = token_of(&app, "payer", "system/*.rs");

    // _type: only those types, whatever else the store holds
    let (_, got) = exported(&app, &token, "?_type=Patient", None).await;
    assert!(got.iter().all(|r| r["resourceType"] == "Patient"));
    assert_eq!(got.len(), 2);

    // _elements: what was named (and the mandatory elements), marked as subsetted
    let (_, got) = exported(
        &app,
        &token,
        "?_type=Patient&_elements=Patient.gender",
        None,
    )
    .await;
    assert_eq!(got.len(), 2);
    for p in &got {
        assert_eq!(p["gender"], "female", "{p}");
        assert!(p.get("name").is_none(), "{p}");
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED", "{p}");
    }

    // _since: changed after that instant only
    let query = format!("?_type=Patient,Observation&_since={}", urlencode(&since));
    let (m, got) = exported(&app, &token, &query, None).await;
    assert_eq!(ids_of(&got, "Patient"), BTreeSet::from([late.clone()]));
    assert_eq!(ids_of(&got, "Observation").len(), 2);
    // and what was deleted since, as Bundles of DELETE entries
    let deleted = &m["deleted"];
    assert_eq!(deleted.as_array().map(Vec::len), Some(1), "{m}");
    let r = app
        .send(
            app.anonymous
                .get(deleted[0]["url"].as_str().unwrap())
                .bearer_auth(&token),
        )
        .await;
    let bundle: Value = serde_json::from_str(r.text.lines().next().unwrap()).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(
        bundle["entry"],
        json!([{"request": {"method": "DELETE", "url": format!("Patient/{doomed}")}}])
    );

    // _until: changed at or before that instant only (Doomed is deleted since); with _since,
    // a window that holds neither side
    let query = format!("?_type=Patient&_until={}", urlencode(&since));
    let (m, got) = exported(&app, &token, &query, None).await;
    assert_eq!(ids_of(&got, "Patient"), BTreeSet::from([early.clone()]));
    assert!(m["deleted"].as_array().is_none_or(Vec::is_empty), "{m}");
    let query = format!(
        "?_type=Patient&_since=2020-01-01T00:00:00Z&_until={}",
        urlencode(&since)
    );
    let r = kick_off(&app, &token, &query, None).await;
    let m = manifest(&app, &token, &r.header("content-location").unwrap()).await;
    assert_eq!(
        ids_of(&download(&app, &token, &m).await, "Patient"),
        BTreeSet::from([early.clone()])
    );
    // the deletion came after _until: not in this window's `deleted`
    assert!(m["deleted"].as_array().is_none_or(Vec::is_empty), "{m}");

    // _typeFilter, by POST with a Parameters body as Medplum's client sends it
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "_typeFilter", "valueString": "Observation?code=http://loinc.org|2823-3&subject=Patient/".to_string() + &late},
    ]});
    let (_, got) = exported(&app, &token, "", Some(&body)).await;
    assert_eq!(ids_of(&got, "Observation"), BTreeSet::from([potassium]));
    assert_eq!(got.len(), 1);

    // a token limited to laboratory Observations exports those only, and no Patients
    let labs = token_of(&app, "lab-reader", "system/Observation.rs?code=2345-7");
    let (_, got) = exported(&app, &labs, "", None).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"]["coding"][0]["code"], "2345-7");
}

fn provenance(recorded: &str, targets: &[&str]) -> Value {
    let targets: Vec<Value> = targets.iter().map(|t| json!({"reference": t})).collect();
    json!({"resourceType": "Provenance", "recorded": recorded, "target": targets,
        "agent": [{"who": {"display": "Lab system"}}]})
}

/// `includeAssociatedData`: the Provenance of the resources exported, the latest of each or
/// all of them, each written once, and none about resources left out.
async fn associated_provenance_comes_with_what_it_is_about(app: TestApp) {
    let (pat, _) = app.create(&patient("Traced")).await;
    let (a, _) = app.create(&observation(&pat, "2823-3")).await;
    let (b, _) = app.create(&observation(&pat, "2345-7")).await;
    let (a, b) = (format!("Observation/{a}"), format!("Observation/{b}"));
    let (stale, _) = app.create(&provenance("2025-12-01T00:00:00Z", &[&a])).await;
    let (first, _) = app
        .create(&provenance("2026-01-01T00:00:00Z", &[&a, &b]))
        .await;
    let (amended, _) = app
        .create(&provenance(
            "2026-02-01T00:00:00Z",
            &[&format!("{a}/_history/1")],
        ))
        .await;
    // about the Patient, which these exports leave out
    let (of_patient, _) = app
        .create(&provenance(
            "2026-03-01T00:00:00Z",
            &[&format!("Patient/{pat}")],
        ))
        .await;
    let token = token_of(&app, "payer", "system/*.rs");
    let provenance_of = |query: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let r = kick_off(app, token, query, None).await;
            assert_eq!(r.status, 202, "{}", r.text);
            let m = manifest(app, token, &r.header("content-location").unwrap()).await;
            let got = download(app, token, &m).await;
            assert_eq!(ids_of(&got, "Observation").len(), 2, "{query}");
            let provenance: Vec<String> = got
                .iter()
                .filter(|r| r["resourceType"] == "Provenance")
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            let distinct: BTreeSet<String> = provenance.iter().cloned().collect();
            assert_eq!(
                distinct.len(),
                provenance.len(),
                "written twice: {provenance:?}"
            );
            distinct
        }
    };
    // the latest of each Observation: `amended` for a, `first` still for b
    assert_eq!(
        provenance_of("?_type=Observation&includeAssociatedData=LatestProvenanceResources").await,
        BTreeSet::from([first.clone(), amended.clone()])
    );
    let all = "?_type=Observation&includeAssociatedData=RelevantProvenanceResources";
    assert_eq!(
        provenance_of(all).await,
        BTreeSet::from([stale.clone(), first.clone(), amended.clone()])
    );
    // asked as a type too: every Provenance, still each once
    assert_eq!(
        provenance_of(
            "?_type=Observation,Provenance&includeAssociatedData=LatestProvenanceResources"
        )
        .await,
        BTreeSet::from([stale, first, amended, of_patient])
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn what_an_export_cannot_honour_is_refused_and_a_cancel_ends_it(app: TestApp) {
    let token = token_of(&app, "payer", "system/*.rs");
    for query in [
        "?_type=Nonsense",
        "?_outputFormat=text/csv",
        "?_since=yesterday",
        "?_typeFilter=Observation%3Fnonsense%3D1",
        "?_elements=Patient.name.given",
        "?_until=yesterday",
        "?_since=2026-12-02&_until=2026-12-01",
        "?includeAssociatedData=_ourOwn",
        "?_count=10",
    ] {
        let r = kick_off(&app, &token, query, None).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
    // without Prefer: respond-async
    let r = app
        .send(app.anonymous.get(app.url("$export")).bearer_auth(&token))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // a type the token may not read
    let patients_only = token_of(&app, "narrow", "system/Patient.rs");
    let r = kick_off(&app, &patients_only, "?_type=Observation", None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // lenient handling: the parameter is ignored, and the manifest's error file says so
    let r = kick_off_at(
        &app,
        &token,
        "$export?_type=Patient&_count=10",
        None,
        "handling=lenient",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = manifest(&app, &token, &r.header("content-location").unwrap()).await;
    let error_url = m["error"][0]["url"].as_str().expect("an error file");
    let r = app
        .send(app.anonymous.get(error_url).bearer_auth(&token))
        .await;
    assert!(r.text.contains("_count"), "{}", r.text);
    // Provenance asked of a token that may not read it
    let r = kick_off(
        &app,
        &patients_only,
        "?_type=Patient&includeAssociatedData=LatestProvenanceResources",
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // cancel: the job and its files are gone
    let r = kick_off(&app, &token, "", None).await;
    let status_url = r.header("content-location").unwrap();
    let m = manifest(&app, &token, &status_url).await;
    let r = app
        .send(app.anonymous.delete(&status_url).bearer_auth(&token))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = app
        .send(app.anonymous.get(&status_url).bearer_auth(&token))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    if let Some(url) = m["output"][0]["url"].as_str() {
        let r = app.send(app.anonymous.get(url).bearer_auth(&token)).await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
}

async fn patient_and_group_exports_hold_their_members_compartments(app: TestApp) {
    let mut obs = Vec::new();
    let mut pats = Vec::new();
    for n in 0..3 {
        let (p, _) = app.create(&patient(&format!("Member{n}"))).await;
        obs.push(app.create(&observation(&p, "2823-3")).await.0);
        pats.push(p);
    }
    // an Observation about a device is no patient's, nor is a Practitioner
    let (device, _) = app
        .create(&json!({"resourceType": "Device", "status": "active"}))
        .await;
    let mut about_device = observation(&pats[0], "2823-3");
    about_device["subject"] = json!({"reference": format!("Device/{device}")});
    app.create(&about_device).await;
    app.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Welby"}]}))
        .await;
    let token = token_of(&app, "payer", "system/*.rs");
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();

    // every patient's compartment
    let r = kick_off_at(&app, &token, "Patient/$export", None, "").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = manifest(&app, &token, &r.header("content-location").unwrap()).await;
    let got = download(&app, &token, &m).await;
    assert_eq!(ids_of(&got, "Patient"), set(&pats));
    assert_eq!(ids_of(&got, "Observation"), set(&obs));
    assert!(ids_of(&got, "Practitioner").is_empty() && ids_of(&got, "Device").is_empty());

    // named patients, by POST
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", pats[1])}}]});
    let r = kick_off_at(&app, &token, "Patient/$export", Some(&body), "").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = manifest(&app, &token, &r.header("content-location").unwrap()).await;
    let got = download(&app, &token, &m).await;
    assert_eq!(ids_of(&got, "Patient"), set(&pats[1..2]));
    assert_eq!(ids_of(&got, "Observation"), set(&obs[1..2]));

    // a Group's members: the first two
    let (group, _) = app
        .create(&json!({"resourceType": "Group", "type": "person", "actual": true,
            "member": [{"entity": {"reference": format!("Patient/{}", pats[0])}},
                       {"entity": {"reference": format!("Patient/{}", pats[1])}},
                       {"entity": {"reference": format!("Patient/{}", pats[2])}, "inactive": true}]}))
        .await;
    let path = format!("Group/{group}/$export?_type=Patient,Observation");
    let r = kick_off_at(&app, &token, &path, None, "").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = manifest(&app, &token, &r.header("content-location").unwrap()).await;
    let got = download(&app, &token, &m).await;
    assert_eq!(ids_of(&got, "Patient"), set(&pats[..2]));
    assert_eq!(ids_of(&got, "Observation"), set(&obs[..2]));
    assert_eq!(got.len(), 4);

    // an unknown Group, and a type outside the compartment, are refused at kick-off
    for (url, status) in [
        ("Group/nope/$export", 404),
        ("Patient/$export?_type=Practitioner", 400),
    ] {
        let r = kick_off_at(&app, &token, url, None, "").await;
        assert_eq!(r.status, status, "{url}: {}", r.text);
    }
}

/// Register a Backend Services client with a fresh ES384 key; the key's PEM file.
fn backend_client(app: &TestApp, id: &str, kid: &str) -> std::path::PathBuf {
    use emrsync::auth::clients::{self, ClientKind, NewClient};
    let (pem, jwks) = clients::generate_es384(kid).unwrap();
    let key = app.dir.path().join(format!("{id}.pem"));
    std::fs::write(&key, pem).unwrap();
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: id.into(),
            kind: ClientKind::Asymmetric,
            scope: "system/*.rs".into(),
            redirect_uris: Vec::new(),
            secret: None,
            jwks: Some(jwks),
            jwks_uri: None,
        },
    )
    .unwrap();
    key
}

/// What a search of `query` finds, every page, as sorted ids.
async fn searched(app: &TestApp, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(app.url(query));
    while let Some(url) = next {
        let b = app.get_url(&url).await.json();
        ids.extend(crate::helpers::matched_ids(&b));
        next = crate::helpers::link(&b, "next");
    }
    ids.sort();
    ids
}

/// Two outside clients, with Backend Services auth: a Python one written from the IG (system,
/// Patient and Group exports, every line validated as R4 by fhir.resources) and Medplum's
/// TypeScript client (`bulkExport`, which kicks off by POST). What they download is what
/// searches find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_clients_export_what_searches_find() {
    let app = crate::helpers::spawn(crate::helpers::Backend::Sqlite).await;
    let mut members = Vec::new();
    for n in 0..4 {
        let (p, _) = app.create(&patient(&format!("Outside{n}"))).await;
        app.create(&observation(&p, "2823-3")).await;
        if n < 2 {
            members.push(json!({"entity": {"reference": format!("Patient/{p}")}}));
        }
    }
    app.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Welby"}]}))
        .await;
    let (group, _) = app
        .create(
            &json!({"resourceType": "Group", "type": "person", "actual": true,
            "member": members}),
        )
        .await;
    let python = std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    );
    let key = backend_client(&app, "py-payer", "py-1");
    let (base, g) = (app.base.clone(), group.clone());
    let seen = tokio::task::spawn_blocking(move || {
        crate::clients_more::run(
            std::process::Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/clients/bulk_export.py"
                ))
                .args([&base, "py-payer", "py-1"])
                .arg(&key)
                .arg(&g),
        )
    })
    .await
    .unwrap();
    assert_eq!(seen["invalid"], json!([]), "{seen:#}");
    for rtype in ["Patient", "Observation", "Practitioner", "Group"] {
        assert_eq!(
            seen["system"][rtype],
            json!(searched(&app, &format!("{rtype}?_count=100")).await),
            "{rtype}: {seen:#}"
        );
    }
    assert_eq!(seen["patient"]["Patient"], seen["system"]["Patient"]);
    assert_eq!(
        seen["patient"]["Observation"],
        seen["system"]["Observation"]
    );
    assert!(seen["patient"]["Practitioner"].is_null(), "{seen:#}");
    assert_eq!(
        seen["group"]["Patient"].as_array().unwrap().len(),
        2,
        "{seen:#}"
    );
    assert_eq!(seen["group"]["Observation"].as_array().unwrap().len(), 2);

    let browser = std::env::var("EMRSYNC_TEST_BROWSER").expect(
        "EMRSYNC_TEST_BROWSER is not set: run the suite with scripts/test, which installs \
         tests/browser's npm packages",
    );
    let key = backend_client(&app, "medplum-payer", "mp-1");
    let root = app.root.clone();
    let seen = tokio::task::spawn_blocking(move || {
        // Medplum's client needs a global WebSocket, which Node 20 has behind a flag
        let mut node = std::process::Command::new("node");
        let has_websocket = std::process::Command::new("node")
            .args([
                "-e",
                "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !has_websocket {
            node.arg("--experimental-websocket");
        }
        crate::clients_more::run(
            node.arg(format!("{browser}/medplum_export.mjs"))
                .args([&root, "medplum-payer", "mp-1"])
                .arg(&key),
        )
    })
    .await
    .unwrap();
    for rtype in ["Patient", "Observation", "Practitioner", "Group"] {
        assert_eq!(
            seen["got"][rtype],
            json!(searched(&app, &format!("{rtype}?_count=100")).await),
            "{rtype}: {seen:#}"
        );
    }
    assert!(seen["transactionTime"].as_str().is_some(), "{seen:#}");
}

/// The server killed (SIGKILL) while an export runs, then started again on the same database:
/// the export is carried out again from the start, and its files hold every resource once,
/// none of what the killed run had written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_short_by_a_kill_runs_again_after_the_restart() {
    use crate::process::{free_port, start, wait_healthy};
    let dir = tempfile::tempdir().unwrap();
    let store = emrsync::config::StoreArgs::new(dir.path().to_path_buf(), None);
    let port = free_port();
    let http = reqwest::Client::new();
    let flags = ["--export-file-resources", "500"];
    let mut server = start(port, &store, &flags);
    wait_healthy(&http, &server.root).await;
    let base = format!("{}/fhir", server.root);
    let token = crate::helpers::mint(&store.database().unwrap(), &base, "system/*.cruds", None);
    const PATIENTS: usize = 5_000;
    for batch in 0..PATIENTS / 250 {
        let entries: Vec<Value> = (0..250)
            .map(|n| {
                json!({"resource": patient(&format!("Kill{batch}x{n}")),
                "request": {"method": "POST", "url": "Patient"}})
            })
            .collect();
        let r = http
            .post(&base)
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .get(format!("{base}/$export?_type=Patient"))
        .bearer_auth(&token)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    // kill it as soon as it runs (or whenever it stands, if it is quicker than the polls)
    let mut seen = String::new();
    for _ in 0..200 {
        let r = http
            .get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        seen = r
            .headers()
            .get("x-progress")
            .map(|p| p.to_str().unwrap().to_string())
            .unwrap_or_else(|| r.status().to_string());
        if seen.contains("exported") || r.status() != 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("killed while the export stood at: {seen}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    server = start(port, &store, &flags);
    wait_healthy(&http, &server.root).await;

    let mut manifest = Value::Null;
    for _ in 0..600 {
        let r = http
            .get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            manifest = r.json().await.unwrap();
            break;
        }
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outputs = manifest["output"].as_array().expect("the export finished");
    assert_eq!(outputs.len(), PATIENTS / 500, "{manifest}");
    let mut ids = BTreeSet::new();
    for out in outputs {
        let text = http
            .get(out["url"].as_str().unwrap())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines() {
            let p: Value = serde_json::from_str(line).unwrap();
            assert!(
                ids.insert(p["id"].as_str().unwrap().to_string()),
                "twice: {line}"
            );
        }
    }
    assert_eq!(ids.len(), PATIENTS);
    drop(server);
}

/// Files are kept `--export-keep-hours`; with 0 the next upkeep (every 10 s) removes the job
/// and its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_exports_leave_nothing_behind() {
    let app =
        crate::helpers::spawn_with(crate::helpers::Backend::Sqlite, |s| s.export_keep_hours = 0)
            .await;
    app.create(&patient("Expiring")).await;
    let token = token_of(&app, "payer", "system/*.rs");
    let r = kick_off(&app, &token, "?_type=Patient", None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let status_url = r.header("content-location").unwrap();
    let job = status_url.rsplit('/').next().unwrap().to_string();
    let mut last = 0;
    for _ in 0..300 {
        last = app
            .send(app.anonymous.get(&status_url).bearer_auth(&token))
            .await
            .status;
        if last == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 404, "the export did not expire");
    assert!(!app.dir.path().join("exports").join(&job).exists());
}
