//! Graceful shutdown of the real process: on SIGTERM it refuses new connections, finishes the
//! HL7v2 message it is in the middle of (applied, and its AA sent), closes idle connections,
//! and exits with status 0; and writes beyond the server's bound are refused with 503 and
//! `Retry-After` rather than queued.

use crate::helpers::{Backend, spawn_with};
use crate::mllp_client::{Mllp, frame};
use crate::process;
use emrsync::config::StoreArgs;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn sigterm(server: &process::Server) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_message_in_hand_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mllp) = (process::free_port(), process::free_port());
    let store = StoreArgs::new(dir.path().to_path_buf(), None);
    let mllp_addr = format!("127.0.0.1:{mllp}");
    let mut server = process::start(port, &store, &["--insecure-dev", "--mllp", &mllp_addr]);
    let http = reqwest::Client::new();
    process::wait_healthy(&http, &server.root).await;

    // one sender between messages, one in the middle of a message when the signal comes
    let mut idle = Mllp::connect(mllp).await;
    assert_eq!(
        idle.send(&crate::hl7v2::adt("A01", "SD1", "MRN-SD1", "V1", "Before"))
            .await
            .code(),
        "AA"
    );
    let mut busy = Mllp::connect(mllp).await;
    let message = frame(crate::hl7v2::adt("A01", "SD2", "MRN-SD2", "V2", "During").as_bytes());
    let (first, rest) = message.split_at(message.len() / 2);
    busy.write_raw(first).await;
    // and an HTTP request in hand: a transaction that takes a while
    let entries: Vec<_> = (0..1000)
        .map(|i| json!({"resource": {"resourceType": "Patient", "name": [{"family": format!("Drained{i}")}]},
                        "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let in_hand = http
        .post(format!("{}/fhir", server.root))
        .json(&bundle)
        .send();
    let in_hand = tokio::spawn(in_hand);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = in_hand
        .await
        .unwrap()
        .expect("the request in hand is answered");
    assert_eq!(answered.status(), 200);

    // the listener is closed at once: a new sender is refused
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", mllp))
            .await
            .is_err(),
        "no new MLLP connection after SIGTERM"
    );
    // the message in hand is read to its end, applied and acknowledged
    busy.write_raw(rest).await;
    assert_eq!(busy.ack().await.code(), "AA");
    // the connection between messages was closed
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.stream().read(&mut buf))
        .await
        .expect("the idle connection is closed promptly");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    let exited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let status = exited.expect("the server exits within its shutdown deadline");
    assert!(status.success(), "{status:?}");

    // what was acknowledged is there at the next start
    let mut again = process::start(port, &store, &["--insecure-dev"]);
    process::wait_healthy(&http, &again.root).await;
    let search = |query: &str| {
        let req = http.get(format!("{}/fhir/Patient?{query}", again.root));
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let found = search("family=During").await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "{found}");
    let found = search("family=Drained999&_summary=count").await;
    assert_eq!(
        found["total"], 1,
        "the transaction in hand was committed whole: {found}"
    );
    let _ = again.child.kill();
}

/// With room for one write at a time, writes sent together beside a long transaction are
/// refused with 503 and `Retry-After` (none of them half-applied), and a write sent after is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_bound_are_refused_with_retry_after() {
    let app = spawn_with(Backend::Sqlite, |s| s.max_writes_in_flight = 1).await;
    let entries: Vec<_> = (0..400)
        .map(|i| json!({"resource": {"resourceType": "Patient", "name": [{"family": format!("Bulk{i}")}]},
                        "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let mut refused = None;
    for _ in 0..5 {
        let long = app.post("", &bundle);
        let short = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut answers = Vec::new();
            for _ in 0..10 {
                answers.push(
                    app.post(
                        "Patient",
                        &json!({"resourceType": "Patient", "name": [{"family": "Pressed"}]}),
                    )
                    .await,
                );
            }
            answers
        };
        let (long, short) = tokio::join!(long, short);
        assert_eq!(long.status, 200, "{}", long.text);
        if let Some(r) = short.into_iter().find(|r| r.status == 503) {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a write sent while the transaction held the one place is refused");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(r.text.contains("writes already"), "{}", r.text);
    let r = app
        .post("Patient", &json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}
