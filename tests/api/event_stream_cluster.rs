//! The event stream on a JetStream cluster of three brokers (three `nats-server` processes on
//! loopback, routed to each other), the stream replicated on all three (`--stream-replicas
//! 3`): every change arrives once, in outbox order, and the stream's leader killed while writes
//! go on loses nothing: the publisher reconnects to another seed and resends what was not
//! acknowledged, the new leader dropping what it had.

use crate::event_stream::{Access, Nats, outbox};
use crate::helpers::{Backend, TestApp, spawn_with};
use crate::process::free_port;
use serde_json::json;
use std::time::Duration;

/// Three brokers routed into one cluster, each with JetStream; `seeds` lists all three.
pub struct Cluster {
    pub brokers: Vec<Option<Nats>>,
    pub seeds: String,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut brokers = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let conf = format!(
                "server_name: n{i}\ncluster {{ name: emrsync-test, host: 127.0.0.1, port: {}, routes: [{}] }}",
                routes[i],
                others.join(", ")
            );
            brokers.push(Some(
                Nats::start_with(*port, &conf, Access::default()).await,
            ));
        }
        let seeds = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        Cluster { brokers, seeds }
    }

    /// A broker still running.
    pub fn any(&self) -> &Nats {
        self.brokers.iter().flatten().next().expect("a broker runs")
    }

    /// Kill (SIGKILL) the broker named `name` (`n0`..`n2`).
    pub fn kill(&mut self, name: &str) {
        let i: usize = name.trim_start_matches('n').parse().unwrap();
        self.brokers[i].take().expect("running");
    }
}

async fn patients(app: &TestApp, from: usize, n: usize) -> Vec<String> {
    let mut made = Vec::new();
    for k in from..from + n {
        let (id, _) = app
            .create(
                &json!({"resourceType": "Patient", "name": [{"family": format!("Replicated{k}")}]}),
            )
            .await;
        made.push(id);
    }
    made
}

/// Every change marked published (waiting up to 60 s: a leader's election takes seconds).
async fn all_marked(app: &TestApp) -> Vec<i64> {
    for _ in 0..240 {
        let rows = outbox(app);
        if rows.iter().all(|(_, p)| p.is_some()) {
            return rows.iter().map(|(s, _)| *s).collect();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("changes left unmarked: {:?}", outbox(app));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_loses_nothing_when_its_leader_dies() {
    let mut cluster = Cluster::start().await;
    let seeds = cluster.seeds.clone();
    let app = spawn_with(Backend::Sqlite, move |s| {
        s.stream.broker.url = Some(seeds);
        s.stream.replicas = 3;
    })
    .await;
    let mut made = patients(&app, 0, 10).await;
    all_marked(&app).await;

    // the stream is on all three; its leader is killed and writes go on
    let info = cluster.any().stream_info("EMRSYNC").await;
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("a replicated stream has a leader");
    cluster.kill(&leader);
    made.extend(patients(&app, 10, 10).await);

    // every change once, in outbox order, on the brokers left
    let seqs = all_marked(&app).await;
    let events = cluster.any().events("EMRSYNC", seqs.len() as u64).await;
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, seqs, "once each, in outbox order");
    let written: Vec<String> = events
        .iter()
        .filter(|(_, _, e)| e["resourceType"] == "Patient")
        .filter_map(|(_, _, e)| e["resourceId"].as_str().map(str::to_string))
        .filter(|id| made.contains(id))
        .collect();
    assert_eq!(written, made);
}
