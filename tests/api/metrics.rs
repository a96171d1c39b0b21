//! `/metrics`, `/ready` (issue 24): the server as its own process (the metrics recorder is one
//! per process), sent known traffic over HTTP and MLLP; its page read by the Prometheus
//! project's own text parser (PyPI `prometheus-client`, `tests/clients/parse_metrics.py`), and
//! the counters checked against what was sent.

use crate::helpers::mint;
use crate::mllp_client::Mllp;
use crate::process::{free_port, start, wait_healthy};
use emrsync::config::StoreArgs;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// The page's samples as the Python parser reads them: (name, labels, value).
fn parsed(page: &str) -> Vec<(String, Value, f64)> {
    let python = std::env::var("EMRSYNC_TEST_PYTHON").expect(
        "EMRSYNC_TEST_PYTHON is not set: run the suite with scripts/test, which makes the venv",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/parse_metrics.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    samples
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn value(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| v)
        .sum()
}

fn adt(control: &str, mrn: &str) -> String {
    format!(
        "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^A04^ADT_A01|{control}|P|2.5.1\r\
         EVN|A04|20261206120000\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||Metric^Mia||19900101|F\r\
         PV1|1|E|ED^1^^GOOD HEALTH||||||||||||||||V{mrn}^^^GH&1.2.840.114350.1&ISO^VN\r"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreArgs::new(dir.path().to_path_buf(), None);
    let (port, mllp_port) = (free_port(), free_port());
    let server = start(port, &store, &["--mllp", &format!("127.0.0.1:{mllp_port}")]);
    let http = reqwest::Client::new();
    wait_healthy(&http, &server.root).await;

    let ready = http
        .get(format!("{}/ready", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "pass", "{ready}");
    assert_eq!(ready["migrations"], "ok");
    assert!(ready["tasks"].as_u64().unwrap() >= 5, "{ready}");

    // HTTP: 3 creates, 6 reads, a read of nothing, a search, an unauthenticated read
    let base = format!("{}/fhir", server.root);
    let token = mint(&store.database().unwrap(), &base, "system/*.cruds", None);
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = http
            .post(format!("{base}/Patient"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Patient", "name": [{"family": format!("M{n}")}]})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in ids.iter().chain(&ids) {
        let r = http
            .get(format!("{base}/Patient/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .get(format!("{base}/Patient/nobody"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/Patient?family=M1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/Patient/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // HL7v2: two registrations taken, one message of a type nobody counts by name
    let mut mllp = Mllp::connect(mllp_port).await;
    assert_eq!(mllp.send(&adt("MT1", "M1")).await.code(), "AA");
    assert_eq!(mllp.send(&adt("MT2", "M2")).await.code(), "AA");
    let odd = adt("MT3", "M3").replace("ADT^A04^ADT_A01", "ZQQ^Q99");
    assert_ne!(mllp.send(&odd).await.code(), "AA");

    let page = http
        .get(format!("{}/metrics", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let page = page.text().await.unwrap();
    let s = parsed(&page);
    let requests = |interaction: &str, status: &str| {
        value(
            &s,
            "emrsync_http_requests_total",
            &[
                ("interaction", interaction),
                ("type", "Patient"),
                ("status", status),
            ],
        )
    };
    assert_eq!(requests("create", "201"), 3.0, "{page}");
    assert_eq!(requests("read", "200"), 6.0, "{page}");
    assert_eq!(requests("read", "404"), 1.0);
    assert_eq!(requests("read", "401"), 1.0);
    assert_eq!(requests("search-type", "200"), 1.0);
    let timed = value(
        &s,
        "emrsync_http_request_duration_seconds_count",
        &[("interaction", "read"), ("type", "Patient")],
    );
    assert_eq!(timed, 8.0, "every read timed, refusals too");
    let messages = |kind: &str, ack: &str| {
        value(
            &s,
            "emrsync_hl7v2_messages_total",
            &[("type", kind), ("ack", ack)],
        )
    };
    assert_eq!(messages("ADT", "AA"), 2.0, "{page}");
    assert_eq!(
        value(
            &s,
            "emrsync_hl7v2_messages_total",
            &[("type", "ADT"), ("trigger", "A04")]
        ),
        2.0
    );
    assert_eq!(
        value(&s, "emrsync_hl7v2_messages_total", &[("type", "other")]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "emrsync_hl7v2_message_duration_seconds_count",
            &[("type", "ADT")]
        ),
        2.0
    );
    assert!(value(&s, "emrsync_process_resident_memory_bytes", &[]) > 1e6);
    assert!(
        value(&s, "emrsync_cache_requests_total", &[("result", "hit")]) >= 1.0,
        "{page}"
    );
    assert!(value(&s, "emrsync_group_commit_writers_count", &[]) >= 5.0);
    assert!(
        s.iter()
            .any(|(n, l, _)| n == "emrsync_outbox_depth" && l["stage"] == "dispatch")
    );
    assert!(value(&s, "emrsync_db_pool_connections", &[]) >= 1.0);
}

/// The database lost under a running server (its PostgreSQL database dropped): `/ready` says
/// so with 503 within seconds, naming the database, and so does `/health`; a load balancer
/// stops sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_when_the_database_is_gone() {
    use diesel::{Connection, RunQueryDsl};
    let app = crate::helpers::spawn(crate::helpers::Backend::Postgres).await;
    let ready = || async {
        let r = app
            .anonymous
            .get(format!("{}/ready", app.root))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    let emrsync::store::Database::Postgres(url) = &app.database else {
        panic!("a PostgreSQL test app")
    };
    let name = url.expose().rsplit('/').next().unwrap().to_string();
    let admin = std::env::var("EMRSYNC_TEST_POSTGRES").unwrap();
    let mut conn = diesel::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .unwrap();
    // told within a probe's usual timeout, not after the pool's wait for a connection
    let asked = std::time::Instant::now();
    let (status, body) = ready().await;
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "fail");
    assert_ne!(body["database"], "ok", "{body}");
    let health = app
        .anonymous
        .get(format!("{}/health", app.root))
        .send()
        .await
        .unwrap();
    assert_ne!(health.status(), 200);
}
