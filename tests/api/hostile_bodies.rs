//! Request bodies built to hurt the server: nested past any real resource, compressed a
//! thousandfold. Each gets a clear error, nothing of it is stored, and the server goes on
//! serving everybody else.

use crate::helpers::TestApp;
use crate::on_both_backends;
use serde_json::{Value, json};
use std::io::Write;

on_both_backends!(
    deep_documents_are_refused_and_the_server_goes_on,
    documents_at_the_limit_are_kept_whole,
    compressed_bodies_are_bounded_by_what_they_inflate_to,
);

const FHIR_XML: &str = "application/fhir+xml";

/// A Patient with `n` extensions, each inside the one before, as XML.
fn nested_extensions_xml(n: usize) -> String {
    format!(
        r#"<Patient xmlns="http://hl7.org/fhir">{}<valueString value="deep"/>{}</Patient>"#,
        r#"<extension url="http://example.org/nested">"#.repeat(n),
        "</extension>".repeat(n)
    )
}

/// The same Patient as JSON: depth 2n + 1.
fn nested_extensions_json(n: usize) -> Value {
    let mut v = json!({"url": "http://example.org/nested", "valueString": "deep"});
    for _ in 1..n {
        v = json!({"url": "http://example.org/nested", "extension": [v]});
    }
    json!({"resourceType": "Patient", "extension": [v]})
}

/// A JSON text nested `n` levels, built as text (serde_json would refuse to print it).
fn nested_json_text(n: usize) -> String {
    let inner = r#"{"url":"http://example.org/nested","extension":["#.repeat(n);
    format!(
        r#"{{"resourceType":"Patient","extension":[{inner}{{"url":"u","valueString":"x"}}{}]}}"#,
        "]}".repeat(n)
    )
}

async fn post_text(
    app: &TestApp,
    token: &str,
    path: &str,
    ctype: &str,
    body: String,
) -> (u16, String) {
    let r = app
        .send(
            app.anonymous
                .post(app.url(path))
                .bearer_auth(token)
                .header("content-type", ctype)
                .body(body),
        )
        .await;
    (r.status, r.text)
}

async fn patients(app: &TestApp) -> u64 {
    let r = app.get("Patient?_total=accurate").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["total"].as_u64().unwrap()
}

async fn still_serving(app: &TestApp) {
    let r = app.get("metadata").await;
    assert_eq!(r.status, 200, "the server answers after the attack");
    app.create(&json!({"resourceType": "Patient", "gender": "other"}))
        .await;
}

async fn deep_documents_are_refused_and_the_server_goes_on(app: TestApp) {
    // the reported crash: a read-only patient app, 2,000 nested elements in a batch
    let reader = app.token_for("patient/*.rs", Some("p1"));
    let bundle = format!(
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/>{}{}</Bundle>"#,
        "<entry>".repeat(2000),
        "</entry>".repeat(2000)
    );
    let (status, text) = post_text(&app, &reader, "", FHIR_XML, bundle).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("levels deep"), "{text}");

    // 700 nested extensions, in XML and in JSON, on create and on update
    for (method, path) in [("POST", "Patient"), ("PUT", "Patient/deep")] {
        let req = |ctype: &str, body: String| {
            app.client
                .request(method.parse().unwrap(), app.url(path))
                .header("content-type", ctype)
                .body(body)
        };
        let r = app.send(req(FHIR_XML, nested_extensions_xml(700))).await;
        assert_eq!(r.status, 400, "{method} XML: {}", r.text);
        assert_eq!(r.first_issue().0, "structure");
        let r = app
            .send(req("application/fhir+json", nested_json_text(700)))
            .await;
        assert_eq!(r.status, 400, "{method} JSON: {}", r.text);
    }

    // deeper than a resource may be, but within what the parsers take: refused at write time,
    // or it would be stored and then break every read of it (JSON 105 levels: within what a
    // body may be, past what a resource may)
    let (status, text) = post_text(
        &app,
        &app.token,
        "Patient",
        FHIR_XML,
        nested_extensions_xml(52),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 100"), "{text}");
    let r = app.post("Patient", &nested_extensions_json(52)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.first_issue(), ("structure".into(), "Patient".into()));
    // in a transaction, the entry is refused and the whole Bundle with it
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": nested_extensions_json(52), "request": {"method": "POST", "url": "Patient"}},
    ]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        patients(&app).await,
        0,
        "nothing of a refused body is stored"
    );

    still_serving(&app).await;
}

async fn documents_at_the_limit_are_kept_whole(app: TestApp) {
    // 49 nested extensions: 99 JSON levels, one under the limit
    let (status, text) = post_text(
        &app,
        &app.token,
        "Patient",
        FHIR_XML,
        nested_extensions_xml(49),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap();
    let mut expected = nested_extensions_json(49);
    expected["id"] = created["id"].clone();
    expected["meta"] = created["meta"].clone();
    assert_eq!(created, expected);

    // read back in both formats, alone, in a search Bundle and in its history
    let r = app.get(&format!("Patient/{id}")).await;
    assert_eq!(r.json(), expected);
    for path in [
        format!("Patient/{id}?_format=xml"),
        format!("Patient?_id={id}&_format=xml"),
        format!("Patient/{id}/_history?_format=xml"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.text.matches("<extension ").count(), 49, "{path}");
    }
    let r = app.get(&format!("Patient?_id={id}")).await;
    assert_eq!(r.json()["entry"][0]["resource"], expected);

    // and the same through JSON and a transaction
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": nested_extensions_json(49), "request": {"method": "POST", "url": "Patient"}},
    ]});
    let r = app.post("", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

async fn compressed_bodies_are_bounded_by_what_they_inflate_to(app: TestApp) {
    // an ordinary compressed body is read like any other
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Gzip"}]});
    let create = |encoding: &'static str, body: Vec<u8>| {
        app.send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("content-encoding", encoding)
                .body(body),
        )
    };
    let r = create("gzip", gzip(patient.to_string().as_bytes())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["name"][0]["family"], "Gzip");

    // about 100 KB that inflate to 100 MB: refused while inflating, on every route
    let bomb = gzip(&vec![b' '; 100 << 20]);
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let routes = [
        (
            format!("{}/auth/token", app.root),
            "application/x-www-form-urlencoded",
        ),
        (
            format!("{}/auth/authorize", app.root),
            "application/x-www-form-urlencoded",
        ),
        (app.url("Patient"), "application/fhir+json"),
        (app.url(""), "application/fhir+json"),
        (
            app.url("Patient/_search"),
            "application/x-www-form-urlencoded",
        ),
    ];
    for (url, ctype) in routes {
        let r = app
            .send(
                app.client
                    .post(&url)
                    .header("content-type", ctype)
                    .header("content-encoding", "gzip")
                    .body(bomb.clone()),
            )
            .await;
        assert!(
            r.status == 413 || r.status == 400,
            "{url}: {} {}",
            r.status,
            r.text
        );
        assert!(
            r.text.contains("limit") || r.text.contains("inflates"),
            "{url}: {}",
            r.text
        );
    }
    // an OAuth endpoint answers in OAuth's terms
    let r = app
        .send(
            app.anonymous
                .post(format!("{}/auth/token", app.root))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-encoding", "gzip")
                .body(bomb),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_request", "{}", r.text);

    // an encoding the server does not read, and a body that is not what it says
    let r = create("br", patient.to_string().into_bytes()).await;
    assert_eq!(r.status, 415, "{}", r.text);
    let r = create("gzip", patient.to_string().into_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_share_one_budget() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::spawn_with(crate::helpers::Backend::Sqlite, |s| {
        s.max_body_bytes = 1 << 20;
        s.max_body_bytes_in_flight = 1 << 20;
    })
    .await;
    // a client declares a body of 1 MiB and sends it slowly: it holds the whole budget
    let addr = app.root.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        app.token,
        1 << 20
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(b"{\"resourceType\":\"Patient\"")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // another whose body is not declared (chunked) finds no room: 503, try again
    let chunked = || async {
        use tokio::io::AsyncReadExt;
        let body = json!({"resourceType": "Patient"}).to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            app.token,
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = chunked().await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // once the slow client is gone, its share is free again
    drop(slow);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answer = chunked().await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
