//! The event stream across crashes: the server process killed (SIGKILL) while writes and
//! publishes are under way, and killed between the broker's acknowledgement and the outbox's
//! mark; started again on the same database, the stream holds every change once, in outbox
//! order, every acknowledged write among them.

use crate::event_stream::Nats;
use crate::helpers::mint;
use crate::process::{Server, free_port, metric, wait_healthy};
use diesel::prelude::*;
use emrsync::config::StoreArgs;
use emrsync::store::schema::outbox as o;
use serde_json::json;
use std::time::Duration;

fn start(store: &StoreArgs, nats: &Nats) -> Server {
    crate::process::start(free_port(), store, &["--stream", &nats.url])
}

/// The outbox's positions and whether each is marked published.
fn outbox(store: &StoreArgs) -> Vec<(i64, bool)> {
    let emrsync::store::DbConnection::Sqlite(c) = &mut store.database().unwrap().connect().unwrap()
    else {
        unreachable!("the embedded store")
    };
    o::table
        .select((o::seq, o::published_at.is_not_null()))
        .order(o::seq)
        .load(c)
        .unwrap()
}

/// The outbox's positions once all are published and no more come (the master patient
/// index writes golden records after each Patient).
pub async fn all_published(store: &StoreArgs) -> Vec<i64> {
    let mut last = Vec::new();
    for _ in 0..120 {
        let rows = outbox(store);
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        if rows.iter().all(|r| r.1) && seqs == last {
            return seqs;
        }
        last = seqs;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the outbox is not all published: {:?}", outbox(store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_neither_loses_nor_repeats_a_change_on_the_stream() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = StoreArgs::new(dir.path().to_path_buf(), None);
    let http = reqwest::Client::new();
    let mut server = start(&store, &nats);
    wait_healthy(&http, &server.root).await;
    let database = store.database().unwrap();

    // four writers at once; the server killed once a hundred writes are acknowledged
    let acknowledged = std::sync::Mutex::new(Vec::<String>::new());
    let writer = |w: usize| {
        let (http, root, acknowledged) = (&http, server.root.clone(), &acknowledged);
        let token = mint(&database, &format!("{root}/fhir"), "system/*.cruds", None);
        async move {
            for n in 0.. {
                let body =
                    json!({"resourceType": "Patient", "name": [{"family": format!("K{w}-{n}")}]});
                let sent = http
                    .post(format!("{root}/fhir/Patient"))
                    .bearer_auth(&token)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                let Ok(r) = sent else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(made) = r.json::<serde_json::Value>().await else {
                    return;
                };
                let id = made["id"].as_str().unwrap().to_string();
                acknowledged.lock().unwrap().push(format!("Patient/{id}"));
            }
        }
    };
    let killer = async {
        while acknowledged.lock().unwrap().len() < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    };
    tokio::join!(writer(0), writer(1), writer(2), writer(3), killer);
    let acknowledged = acknowledged.into_inner().unwrap();

    // started again: what was not marked is published, and the broker drops what it had
    let server = start(&store, &nats);
    wait_healthy(&http, &server.root).await;
    let seqs = all_published(&store).await;
    let events = nats.events("EMRSYNC", seqs.len() as u64).await;
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, seqs, "every change once, in outbox order");
    let on_stream: std::collections::HashSet<String> = events
        .iter()
        .map(|(_, _, e)| {
            format!(
                "{}/{}",
                e["resourceType"].as_str().unwrap(),
                e["resourceId"].as_str().unwrap()
            )
        })
        .collect();
    for patient in &acknowledged {
        assert!(on_stream.contains(patient), "{patient} was acknowledged");
    }

    // the crash this cannot time: acknowledged by the broker, killed before the mark. The
    // last twenty changes are as such a crash leaves them.
    drop(server);
    let last: Vec<i64> = seqs.iter().rev().take(20).copied().collect();
    {
        let emrsync::store::DbConnection::Sqlite(c) = &mut database.connect().unwrap() else {
            unreachable!()
        };
        diesel::update(o::table.filter(o::seq.eq_any(&last)))
            .set(o::published_at.eq(None::<i64>))
            .execute(c)
            .unwrap();
    }
    let server = start(&store, &nats);
    wait_healthy(&http, &server.root).await;
    let again = all_published(&store).await;
    assert_eq!(again, seqs);
    // the broker recognised each resend: nothing more on the stream
    let mut dropped = 0.0;
    for _ in 0..40 {
        dropped = metric(&http, &server.root, "emrsync_stream_resent_total").await;
        if dropped >= 20.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(dropped, 20.0);
    let events = nats.events("EMRSYNC", seqs.len() as u64).await;
    assert_eq!(events.len(), seqs.len(), "no change twice on the stream");
}
