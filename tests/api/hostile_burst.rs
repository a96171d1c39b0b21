//! A burst of every hostile request at once, against the real binary: compression bombs, patch
//! bombs, deep documents, Bundles of a hundred thousand entries, searches that fan out, MLLP
//! peers holding unfinished frames. The process survives, its peak memory (VmHWM) stays
//! bounded, and an ordinary client is served all along.

use crate::helpers::mint;
use crate::process::{free_port, start, wait_healthy};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![b' '; 100 << 20]).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_hostile_requests_leaves_memory_bounded_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = emrsync::config::StoreArgs::new(dir.path().to_path_buf(), None);
    let (port, mllp_port) = (free_port(), free_port());
    let mllp = format!("127.0.0.1:{mllp_port}");
    let server = start(port, &store, &["--mllp", &mllp]);
    let http = reqwest::Client::new();
    wait_healthy(&http, &server.root).await;
    let base = format!("{}/fhir", server.root);
    let database = store.database().unwrap();
    let writer = mint(&database, &base, "system/*.cruds", None);
    let reader = mint(&database, &base, "patient/*.rs", Some("p1"));

    // an ordinary client's work, before the burst and all through it
    let ordinary = |n: usize| {
        let (http, base, writer) = (http.clone(), base.clone(), writer.clone());
        async move {
            let mut failures = Vec::new();
            for i in 0..n {
                let r = http
                    .post(format!("{base}/Patient"))
                    .bearer_auth(&writer)
                    .header("content-type", "application/fhir+json")
                    .body(json!({"resourceType": "Patient", "name": [{"family": format!("Calm{i}")}]}).to_string())
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {}
                    Ok(r) => failures.push(format!("{}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }
    };
    assert!(ordinary(20).await.is_empty());
    let (id, _) = {
        let r = http
            .post(format!("{base}/Patient"))
            .bearer_auth(&writer)
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "text": {"status": "generated",
                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(200_000))}}).to_string())
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        (v["id"].as_str().unwrap().to_string(), v)
    };
    let before = server.peak_kib();

    let bomb = gzip_bomb();
    let deep = format!(
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/>{}{}</Bundle>"#,
        "<entry>".repeat(2000),
        "</entry>".repeat(2000)
    );
    let gets: Vec<Value> = (0..100_000)
        .map(|_| json!({"request": {"method": "GET", "url": format!("Patient/{id}")}}))
        .collect();
    let huge_batch = json!({"resourceType": "Bundle", "type": "batch", "entry": gets}).to_string();
    let mut copies = vec![
        json!({"op": "add", "path": "/contained", "value": [{"resourceType": "Basic", "id": "b", "code": {"text": "y".repeat(100_000)}}]}),
    ];
    copies.extend(
        (0..20).map(|_| json!({"op": "copy", "from": "/contained", "path": "/contained/-"})),
    );
    let patch_bomb = Value::Array(copies).to_string();

    let mut hostile = Vec::new();
    let send = |req: reqwest::RequestBuilder| async move {
        req.timeout(Duration::from_secs(120))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    for _ in 0..10 {
        hostile.push(send(
            http.post(format!("{}/auth/token", server.root))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-encoding", "gzip")
                .body(bomb.clone()),
        ));
        hostile.push(send(
            http.post(format!("{base}/Patient"))
                .bearer_auth(&writer)
                .header("content-type", "application/fhir+json")
                .header("content-encoding", "gzip")
                .body(bomb.clone()),
        ));
        hostile.push(send(
            http.post(base.clone())
                .bearer_auth(&reader)
                .header("content-type", "application/fhir+xml")
                .body(deep.clone()),
        ));
        hostile.push(send(
            http.patch(format!("{base}/Patient/{id}"))
                .bearer_auth(&writer)
                .header("content-type", "application/json-patch+json")
                .body(patch_bomb.clone()),
        ));
        hostile.push(send(http.get(format!(
            "{base}/Provenance?target._has:Provenance:target:target._has:Provenance:target:_id=x"
        )).bearer_auth(&writer)));
    }
    for _ in 0..10 {
        hostile.push(send(
            http.post(base.clone())
                .bearer_auth(&reader)
                .header("content-type", "application/fhir+json")
                .body(huge_batch.clone()),
        ));
    }
    // MLLP peers that start frames of 1 MB and never end them
    let mut held = Vec::new();
    for _ in 0..24 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", mllp_port)).await {
            let mut start = vec![0x0B];
            start.extend(vec![b'x'; 1 << 20]);
            let _ = s.write_all(&start).await;
            held.push(s);
        }
    }
    let (statuses, failures) = tokio::join!(join_all(hostile), ordinary(40));
    let peak = server.peak_kib();

    // every hostile request got an answer that refuses it (none a 500, none taken in)
    for s in &statuses {
        match s {
            Ok(code) => assert!(
                matches!(code, 400 | 404 | 413 | 415 | 422 | 429 | 503),
                "a hostile request answered {code}"
            ),
            Err(e) => panic!("a hostile request got no answer: {e}"),
        }
    }
    assert!(
        failures.is_empty(),
        "the ordinary client was refused: {failures:?}"
    );
    let grown_mib = peak.saturating_sub(before) / 1024;
    println!(
        "peak memory: {} MiB before the burst, {} MiB after (+{grown_mib} MiB)",
        before / 1024,
        peak / 1024
    );
    // measured at about 185 MiB (debug build): ten Bundles of 100,000 entries, twenty
    // compression bombs, ten patch bombs, ten deep documents, sixteen MLLP peers holding 1 MB
    assert!(grown_mib < 300, "the burst took {grown_mib} MiB");
    drop(held);
    // and the server is still there
    let r = http
        .get(format!("{}/health", server.root))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}
