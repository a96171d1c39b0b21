//! HL7v2 senders that are careless or hostile: what a message said but could not be carried
//! over is reported, never dropped in silence; two messages in one frame are refused whole;
//! a peer cannot hold more of the server than its share.

use crate::helpers::{Backend, TestApp, spawn_with};
use crate::hl7v2::{adt, patient, spawn_mllp};
use crate::mllp_client::{Mllp, frame};
use serde_json::Value;
use std::time::Duration;

crate::on_both_backends_with!(
    spawn_mllp,
    what_is_left_out_is_said_in_the_ack_and_the_archive,
    two_messages_in_one_frame_are_refused_whole,
);

async fn archived(app: &TestApp, control: &str) -> Value {
    let r = app
        .send(
            app.client
                .get(format!("{}/admin/hl7v2/messages?limit=500", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = r.json();
    let all = list["messages"].as_array().cloned().unwrap_or_default();
    all.into_iter()
        .find(|m| m["controlId"] == control)
        .unwrap_or_else(|| panic!("{control} is archived: {list}"))
}

async fn what_is_left_out_is_said_in_the_ack_and_the_archive(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    // the 45th of the 13th month, and an allergy noted on a day that is no date
    let message = adt("A01", "BADDATE1", "MRN900", "V900", "Baddate")
        .replace("||19800214|M|", "||19801345|M|")
        + "AL1|1|DA|^Penicillin|SV|Hives|not-a-date\r";
    let ack = mllp.send(&message).await;
    assert_eq!(
        ack.code(),
        "AA",
        "the rest of the message is applied: {}",
        ack.text
    );
    let errs: Vec<&str> = ack
        .text
        .split('\r')
        .filter(|l| l.starts_with("ERR"))
        .collect();
    assert_eq!(
        errs.len(),
        2,
        "one warning for each value left out: {}",
        ack.text
    );
    assert_eq!(ack.field("ERR", 4), "W", "{}", ack.text);
    assert_eq!(ack.error_location(), "PID-7");
    assert_eq!(ack.error_code(), "102");
    assert!(ack.field("ERR", 8).contains("19801345"), "{}", ack.text);
    assert!(errs[1].contains("AL1^1^6"), "{}", ack.text);

    let p = patient(&app, "MRN900").await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["name"][0]["family"], "Baddate");
    assert!(p[0].get("birthDate").is_none(), "{}", p[0]);

    // the integration team sees it in the archive, beside the message
    let m = archived(&app, "BADDATE1").await;
    assert_eq!(m["status"], "applied", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or("")
            .contains("PID-7 '19801345'"),
        "{m}"
    );
}

async fn two_messages_in_one_frame_are_refused_whole(app: TestApp) {
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let first = adt("A01", "PAIR1", "MRN901", "V901", "First");
    let second = adt("A01", "PAIR2", "MRN902", "V902", "Second");
    mllp.write_raw(&frame(format!("{first}{second}").as_bytes()))
        .await;
    let ack = mllp.ack().await;
    assert_eq!(ack.code(), "AR", "{}", ack.text);
    assert_eq!(ack.error_code(), "100");
    assert!(ack.text.contains("second message"), "{}", ack.text);
    assert!(patient(&app, "MRN901").await.is_empty());
    assert!(patient(&app, "MRN902").await.is_empty());
    // each in a frame of its own, both go in, on the same connection
    assert_eq!(mllp.send(&first).await.code(), "AA");
    assert_eq!(mllp.send(&second).await.code(), "AA");
    assert_eq!(patient(&app, "MRN902").await.len(), 1);
}

/// Whether the server closed `stream` (read gives 0 or an error) within two seconds.
async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an ACK (say, an AR) before the close
            Err(_) => return false,
        }
    }
}

async fn connect(port: u16) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_hold_more_than_its_share() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_max_bytes = 64 * 1024;
        s.mllp_max_connections_per_address = 3;
        // the server keeps room for 4 messages of 64 KiB and a read: 128 KiB an address
        s.mllp_max_buffered_bytes = 0;
        s.mllp_idle_secs = 2;
    })
    .await;
    let port = app.mllp.unwrap();
    // two connections each hold an unfinished frame of 60 KB: within the address's share
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(port).await;
        let mut bytes = vec![0x0B];
        bytes.extend(vec![b'x'; 60_000]);
        s.write_all(&bytes).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a third that would pass it is told so and closed
    let mut third = connect(port).await;
    let mut bytes = vec![0x0B];
    bytes.extend(vec![b'x'; 20_000]);
    third.write_all(&bytes).await.unwrap();
    assert!(closed(&mut third).await, "the third connection is closed");
    // a fourth connection from the address is one too many
    let mut fourth = connect(port).await;
    let mut extra = connect(port).await;
    assert!(
        closed(&mut extra).await,
        "past 3 connections an address is turned away"
    );
    drop(fourth.shutdown().await);

    // an unfinished frame is dropped when it has not ended within the idle timeout of its
    // start, however often a byte arrives
    let mut trickle = connect(port).await;
    trickle.write_all(&[0x0B, b'M']).await.unwrap();
    let mut ended = false;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if trickle.write_all(b"S").await.is_err() {
            ended = true;
            break;
        }
    }
    assert!(
        ended || closed(&mut trickle).await,
        "a trickled frame is not held for ever"
    );

    // the held frames end with their connections; ordinary messages go through all along
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut mllp = Mllp::connect(port).await;
    let ack = mllp
        .send(&adt("A01", "AFTER1", "MRN903", "V903", "After"))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_senders_are_heard() {
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_allow = vec![emrsync::config::network("10.0.0.0/8").unwrap()];
    })
    .await;
    let mut s = connect(app.mllp.unwrap()).await;
    use tokio::io::AsyncWriteExt;
    let _ = s
        .write_all(&frame(
            adt("A01", "DENIED1", "MRN904", "V904", "Denied").as_bytes(),
        ))
        .await;
    assert!(closed(&mut s).await, "127.0.0.1 is not in 10.0.0.0/8");
    assert!(patient(&app, "MRN904").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_sender_is_slowed_to_its_rate_not_refused() {
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_rate = 10;
    })
    .await;
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let started = std::time::Instant::now();
    // a burst of 20 goes at once; the next 20 at 10 a second
    for i in 0..40 {
        let ack = mllp
            .send(&adt("A08", &format!("RATE{i}"), "MRN905", "V905", "Rate"))
            .await;
        assert_eq!(ack.code(), "AA", "{}", ack.text);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1800), "{took:?}");
}

/// An HL7v2 Patient's id is derived from its MRN under a secret of this installation: the
/// same MRN gives the same id here every time, another id elsewhere, and not the plain hash
/// anyone could work out from an MRN. A database that took messages before the secret existed
/// keeps its plain ids (they must not change under it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_cannot_be_worked_out_from_an_mrn() {
    use emrsync::adapters::hl7v2::identity::stable_id;
    let here = spawn_mllp(Backend::Sqlite).await;
    let elsewhere = spawn_mllp(Backend::Sqlite).await;
    let message = adt("A01", "SALT1", "MRN906", "V906", "Salted");
    let mut ids = Vec::new();
    for app in [&here, &elsewhere, &here] {
        let ack = Mllp::connect(app.mllp.unwrap()).await.send(&message).await;
        assert_eq!(ack.code(), "AA", "{}", ack.text);
        ids.push(
            patient(app, "MRN906").await[0]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids[0], ids[2], "the same MRN, the same id, here");
    assert_ne!(ids[0], ids[1], "another installation, another id");
    let plain = stable_id(b"", "Patient", &["urn:oid:1.2.840.114350.1", "MRN906"]);
    assert!(!ids.contains(&plain), "not the plain hash of the MRN");

    // a database that took messages before the secret existed keeps plain ids
    use diesel::prelude::*;
    let legacy = spawn_mllp(Backend::Sqlite).await;
    diesel::delete(emrsync::store::schema::installation::table)
        .execute(&mut legacy.db())
        .unwrap();
    diesel::sql_query(
        "INSERT INTO hl7v2_messages (id, correlation_id, sending_application, sending_facility, \
         control_id, content_hash, message_type, trigger_event, version, received_at, \
         processed_at, status, ack_code, attempts, resources, raw) VALUES ('old', 'c', 'REG', \
         'GH', 'OLD1', 'h', 'ADT', 'A01', '2.5', 0, 0, 'applied', 'AA', 1, '[]', '')",
    )
    .execute(&mut legacy.db())
    .unwrap();
    let ack = Mllp::connect(legacy.mllp.unwrap())
        .await
        .send(&message)
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert_eq!(patient(&legacy, "MRN906").await[0]["id"], plain.as_str());
}
