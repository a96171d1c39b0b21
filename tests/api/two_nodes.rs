//! Two emrsync processes on one PostgreSQL database, behind no balancer but the test's
//! alternation: a subscription hears of one resource's changes in the order they were
//! committed whichever node took them, and the event stream carries each change once.

use crate::event_stream::Nats;
use crate::helpers::{fresh_postgres_database, mint};
use crate::process::{Server, free_port, metric, wait_healthy};
use crate::receiver::{Receiver, event_numbers, kind};
use crate::subscriptions::subscription;
use diesel::prelude::*;
use emrsync::config::StoreArgs;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Two nodes on one fresh PostgreSQL database, with a token for each (a token names its
/// audience, each node's own base URL).
struct Nodes {
    nodes: [Server; 2],
    tokens: [String; 2],
    http: reqwest::Client,
    database: emrsync::store::db::Database,
    _dir: tempfile::TempDir,
}

impl Nodes {
    async fn start(extra: &[&str]) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreArgs::new(dir.path().to_path_buf(), Some(fresh_postgres_database()));
        let mut args = vec![
            "--subscription-retry-max-secs",
            "1",
            "--subscription-endpoint-networks",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let nodes = [
            crate::process::start(free_port(), &store, &args),
            crate::process::start(free_port(), &store, &args),
        ];
        let http = reqwest::Client::new();
        for n in &nodes {
            wait_healthy(&http, &n.root).await;
        }
        let database = store.database().unwrap();
        let tokens = nodes.each_ref().map(|n| {
            mint(
                &database,
                &format!("{}/fhir", n.root),
                "system/*.cruds",
                None,
            )
        });
        Nodes {
            nodes,
            tokens,
            http,
            database,
            _dir: dir,
        }
    }

    /// `method` `path` with `body` on node `n`: the status and the body read.
    async fn send(&self, n: usize, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/fhir/{path}", self.nodes[n].root))
            .bearer_auth(&self.tokens[n])
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        body
    }
}

/// Eight Patients, each updated twenty-five times, each update on the other node from the
/// one before (and committed before the next is sent), the eight at once: the subscriber's
/// events, by number, carry each Patient's versions in the order they were made. Both nodes
/// dispatch; the numbering must follow the outbox, not whichever node's batch reached the
/// subscription first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_hears_of_changes_in_commit_order_from_either_node() {
    const PATIENTS: usize = 8;
    const UPDATES: usize = 25;
    let nodes = Nodes::start(&[]).await;
    let hook = Receiver::start().await;
    nodes
        .send(
            0,
            reqwest::Method::POST,
            "Subscription",
            &subscription("patient-demographics", &[], &hook.url, "full-resource"),
        )
        .await;
    let chain = |p: usize| {
        let nodes = &nodes;
        async move {
            let made = nodes
                .send(
                    p % 2,
                    reqwest::Method::POST,
                    "Patient",
                    &json!({"resourceType": "Patient", "name": [{"family": format!("P{p}"), "given": ["V0"]}]}),
                )
                .await;
            let id = made["id"].as_str().unwrap().to_string();
            for v in 1..=UPDATES {
                let patient = json!({"resourceType": "Patient", "id": id,
                    "name": [{"family": format!("P{p}"), "given": [format!("V{v}")]}]});
                nodes
                    .send(
                        (p + v) % 2,
                        reqwest::Method::PUT,
                        &format!("Patient/{id}"),
                        &patient,
                    )
                    .await;
            }
        }
    };
    futures_util::future::join_all((0..PATIENTS).map(chain)).await;
    // each event's number with the Patient and version it carries
    let heard = |got: &[crate::receiver::Received]| -> BTreeMap<i64, (String, String)> {
        let mut by_number = BTreeMap::new();
        for r in got.iter().filter(|r| kind(&r.body) == "event-notification") {
            let versions = r.body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == "Patient")
                .map(|e| {
                    let name = &e["resource"]["name"][0];
                    (
                        name["family"].as_str().unwrap().to_string(),
                        name["given"][0].as_str().unwrap().to_string(),
                    )
                });
            by_number.extend(event_numbers(&r.body).into_iter().zip(versions));
        }
        by_number
    };
    let total = PATIENTS * (UPDATES + 1);
    hook.wait_until(60, "every version to the subscriber", |g| {
        heard(g).len() >= total
    })
    .await;
    let got = heard(&hook.received());
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (1..=total as i64).collect::<Vec<_>>()
    );
    let want: Vec<String> = (0..=UPDATES).map(|v| format!("V{v}")).collect();
    for p in 0..PATIENTS {
        let of_p: Vec<String> = got
            .values()
            .filter(|(family, _)| *family == format!("P{p}"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(of_p, want, "Patient P{p}'s versions in event order");
    }
}

impl Nodes {
    /// The outbox's positions once every change in it is marked published and no more come
    /// (the master patient index writes golden records after each Patient).
    async fn all_published(&self) -> Vec<i64> {
        use emrsync::store::schema::outbox as o;
        let mut last = Vec::new();
        for _ in 0..600 {
            let rows: Vec<(i64, Option<i64>)> = {
                let emrsync::store::DbConnection::Pg(c) = &mut self.database.connect().unwrap()
                else {
                    unreachable!("two nodes share PostgreSQL")
                };
                o::table
                    .select((o::seq, o::published_at))
                    .order(o::seq)
                    .load(c)
                    .unwrap()
            };
            let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
            if rows.iter().all(|r| r.1.is_some()) && seqs == last {
                return seqs;
            }
            last = seqs;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        panic!("the outbox is not all published: {last:?}");
    }
}

/// Both nodes run a publisher: one publishes (the other waits on its lease), so the stream
/// gets each change once and no node does the work twice; when the publishing node is killed
/// (SIGKILL), the other takes over once the lease runs out, and what was written meanwhile
/// arrives, still once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publish_each_change_once_and_one_takes_over_from_the_other() {
    const WRITES: usize = 30;
    let nats = Nats::start().await;
    let mut nodes = Nodes::start(&["--stream", &nats.url]).await;
    let patient =
        |n: usize| json!({"resourceType": "Patient", "name": [{"family": format!("S{n}")}]});
    for n in 0..WRITES {
        nodes
            .send(n % 2, reqwest::Method::POST, "Patient", &patient(n))
            .await;
    }
    let seqs = nodes.all_published().await;
    let events = nats.events("EMRSYNC", seqs.len() as u64).await;
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, seqs, "each change once, in outbox order");
    let published = [
        metric(
            &nodes.http,
            &nodes.nodes[0].root,
            "emrsync_stream_published_total",
        )
        .await,
        metric(
            &nodes.http,
            &nodes.nodes[1].root,
            "emrsync_stream_published_total",
        )
        .await,
    ];
    assert_eq!(
        published.iter().sum::<f64>(),
        seqs.len() as f64,
        "one node published, once: {published:?}"
    );
    // the backlog is on the page, and nothing is waiting
    let (http, a) = (&nodes.http, &nodes.nodes[0].root);
    let backlog = r#"emrsync_outbox_depth{stage="stream"}"#;
    let page = http.get(format!("{a}/metrics")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains(&format!("{backlog} 0")), "{page}");
    let publisher = usize::from(published[1] > 0.0);
    assert_eq!(published[1 - publisher], 0.0, "{published:?}");

    // the publisher killed: the survivor takes the writes and, once the lease is free, the stream
    let survivor = 1 - publisher;
    nodes.nodes[publisher].child.kill().unwrap();
    nodes.nodes[publisher].child.wait().unwrap();
    for n in WRITES..2 * WRITES {
        nodes
            .send(survivor, reqwest::Method::POST, "Patient", &patient(n))
            .await;
    }
    let before = seqs.len();
    let seqs = nodes.all_published().await;
    let events = nats.events("EMRSYNC", seqs.len() as u64).await;
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, seqs, "each change once, in outbox order");
    let by_survivor = metric(
        &nodes.http,
        &nodes.nodes[survivor].root,
        "emrsync_stream_published_total",
    )
    .await;
    assert_eq!(by_survivor, (seqs.len() - before) as f64);
}
