//! `sync-out`: what sending changes out to a target EMR costs (docs/routing.md). The bench
//! runs the target itself: an MLLP receiver on loopback that ACKs every message at once and
//! notes when each arrived. Routes to it are put in force (and taken away at the end).
//!
//! 1. Throughput: with the target down, `--clients` connections send ADT messages for
//!    `--seconds`; the target's queue fills (and the MPI links what was written). The target
//!    comes up and the queue drains: printed as outbound messages per second, each sent after
//!    the ACK of the one before.
//! 2. Latency: messages offered at `--rate` per second for `--seconds`; for each, the time
//!    from sending it in to the target's ACK of the message sent out.
//!
//! Every message renames its patient, so that each is a change the target hears of. Serve
//! with a short `--route-retry-max-secs` (the script does) so the drain starts soon after the
//! target is up.

use super::Target;
use super::notify::percentile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Arrivals at the target: (MRN, family name) -> when its ACK was written.
#[derive(Default)]
struct Arrivals {
    at: HashMap<(String, String), Instant>,
    count: usize,
}

fn field<'a>(text: &'a str, seg: &str, n: usize) -> &'a str {
    let Some(line) = text.split('\r').find(|l| l.starts_with(seg)) else {
        return "";
    };
    let i = if seg == "MSH" { n - 1 } else { n };
    line.split('|').nth(i).unwrap_or("")
}

/// The target: ACK each message at once, note its arrival.
async fn receive(listener: TcpListener, arrivals: Arc<Mutex<Arrivals>>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let _ = socket.set_nodelay(true);
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let mut pending: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                pending.extend_from_slice(&buf[..n]);
                let mut acks = Vec::new();
                while let Some(end) = pending.iter().position(|&b| b == 0x1C) {
                    let start = pending.iter().position(|&b| b == 0x0B).unwrap_or(0);
                    let text = String::from_utf8_lossy(&pending[start + 1..end]).to_string();
                    pending.drain(..(end + 2).min(pending.len()));
                    let control = field(&text, "MSH", 10);
                    acks.extend_from_slice(&[0x0B]);
                    acks.extend_from_slice(
                        format!("MSH|^~\\&|TARGET|BENCH|EMRSYNC|HUB|20261206||ACK|A{control}|P|2.5.1\rMSA|AA|{control}")
                            .as_bytes(),
                    );
                    acks.extend_from_slice(&[0x1C, 0x0D]);
                    let mrn = field(&text, "PID", 3)
                        .split(['^', '~'])
                        .next()
                        .unwrap_or("");
                    let family = field(&text, "PID", 5).split('^').next().unwrap_or("");
                    let mut a = arrivals.lock().expect("not poisoned");
                    a.count += 1;
                    a.at.insert((mrn.to_string(), family.to_string()), Instant::now());
                }
                if !acks.is_empty() && socket.write_all(&acks).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One message sent in: its (MRN, family), when, whether it was AA.
type Sent = ((String, String), Instant, bool);

/// Send ADT messages over `clients` connections for `seconds`, at `rate` per second in all
/// (`None`: as fast as the ACKs come).
async fn offer(
    addr: &str,
    clients: usize,
    rate: Option<u64>,
    seconds: u64,
    run: &str,
) -> Vec<Sent> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (addr, run) = (addr.to_string(), run.to_string());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return sent;
            };
            let _ = stream.set_nodelay(true);
            let mut tick = rate.map(|r| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(
                    clients as f64 / r.max(1) as f64,
                ));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut buf = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let (usual, ..) = super::data::v2_person(client as u64 * 1_000_000_000 + n / 5);
                let family = format!("Out{n}");
                let text = super::mllp::message(client, n)
                    .replace("BENCH|", &format!("BENCH-{run}|"))
                    .replace(&format!("B{client}-"), &format!("{run}B{client}-"))
                    .replace(&format!("||{usual}^"), &format!("||{family}^"));
                let mrn = format!("{run}B{client}-{}", n / 5);
                let at = Instant::now();
                let ok = super::mllp::send(&mut stream, &mut buf, &text)
                    .await
                    .unwrap_or(false);
                sent.push(((mrn, family), at, ok));
                n += 1;
            }
            sent
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

/// Messages waiting in the bench target's queue.
async fn pending(t: &Target, root: &str) -> anyhow::Result<i64> {
    let (ok, body) = t
        .send_any(t.request_url(
            reqwest::Method::GET,
            &format!("{root}/admin/outbound/summary"),
        ))
        .await;
    anyhow::ensure!(ok, "GET /admin/outbound/summary: {body}");
    Ok(body["targets"]["bench-target"]["pending"]
        .as_i64()
        .unwrap_or(0))
}

/// Wait (up to two minutes) until the MPI has linked every record written (a server without
/// the MPI answers 404 or the like: nothing to wait for).
async fn settle(t: &Target, root: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let (ok, body) = t
            .send_any(t.request_url(reqwest::Method::GET, &format!("{root}/admin/mpi")))
            .await;
        let busy = [
            "pending",
            "goldenPending",
            "providersPending",
            "providerGoldenPending",
        ]
        .iter()
        .any(|k| body[*k].as_i64().unwrap_or(0) > 0);
        if !ok || !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the MPI did not settle within two minutes")
}

async fn put_routes(t: &Target, root: &str, routes: serde_json::Value) -> anyhow::Result<()> {
    let req = t
        .request_url(reqwest::Method::PUT, &format!("{root}/admin/routes"))
        .header("content-type", "application/json")
        .body(routes.to_string());
    let (ok, body) = t.send_any(req).await;
    anyhow::ensure!(ok, "PUT /admin/routes: {body}");
    Ok(())
}

pub async fn run(
    t: Arc<Target>,
    mllp: &str,
    clients: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let root = t.base.trim_end_matches("/fhir").to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    put_routes(
        &t,
        &root,
        serde_json::json!({"targets": [{
        "name": "bench-target",
        "channel": {"type": "mllp", "address": format!("127.0.0.1:{port}")},
        "format": {"type": "hl7v2", "receiving_application": "TARGET"},
        "events": [{"criteria": "Patient"}, {"criteria": "Encounter"}]}]}),
    )
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    // 1. the target down while the queue fills, then up: the drain
    let sent = offer(mllp, clients, None, seconds, &format!("{run}q")).await;
    let mut backlog = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = pending(&t, &root).await?;
        if now == backlog && now > 0 {
            break;
        }
        backlog = now;
    }
    // the MPI links the patients written meanwhile: the drain is measured once it is done,
    // so that the figure is the sender's own
    settle(&t, &root).await?;
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let up = Instant::now();
    let receiver = tokio::spawn(receive(listener, arrivals.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first: Option<Instant> = None;
    let mut last_count = 0;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let count = arrivals.lock().expect("not poisoned").count;
        if count > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if count != last_count {
            (last_count, last) = (count, Instant::now());
        }
        if count as i64 >= backlog {
            break;
        }
    }
    let drain = first
        .map(|f| last.saturating_duration_since(f))
        .unwrap_or_default();
    println!(
        "sync-out     {} messages in over {clients} connections in {seconds} s ({} not AA) while the target was down: {backlog} queued; drained {last_count} in {:.2} s after the first arrived ({:.2} s after the target came up): {:.0} outbound messages/s",
        sent.len(),
        sent.iter().filter(|s| !s.2).count(),
        drain.as_secs_f64(),
        last.saturating_duration_since(up).as_secs_f64(),
        last_count as f64 / drain.as_secs_f64().max(1e-9),
    );

    // 2. paced: receipt to the target's ACK
    let sent = offer(mllp, clients, Some(rate), seconds, &format!("{run}r")).await;
    let wait = Instant::now() + Duration::from_secs(30);
    let missing = |a: &Arrivals| {
        sent.iter()
            .filter(|s| s.2 && !a.at.contains_key(&s.0))
            .count()
    };
    while missing(&arrivals.lock().expect("not poisoned")) > 0 && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut latencies, still) = {
        let a = arrivals.lock().expect("not poisoned");
        let l: Vec<Duration> = sent
            .iter()
            .filter(|s| s.2)
            .filter_map(|(k, at, _)| a.at.get(k).map(|got| got.saturating_duration_since(*at)))
            .collect();
        (l, missing(&a))
    };
    latencies.sort_unstable();
    println!(
        "sync-out     {rate} messages/s offered over {clients} connections for {seconds} s: {} sent in ({} not AA), {} reached the target, {still} missing; receipt -> target's ACK p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sent.len(),
        sent.iter().filter(|s| !s.2).count(),
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    );
    put_routes(&t, &root, serde_json::json!({"targets": []})).await?;
    receiver.abort();
    Ok(())
}
