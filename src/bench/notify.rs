//! Subscription delivery figures: how long from a write to its notification at a REST-hook
//! endpoint on loopback (`notify`: a fixed rate of updates, each matching one of many
//! subscriptions), and how long one change takes to reach many subscribers (`fanout`).
//! The endpoint runs inside the bench process; latency runs from just before the write is
//! sent to the moment the notification is read, so it includes the write itself (its own
//! p50 is printed beside it).

use super::{JsonFhir, Target};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "http://emrsync.org/SubscriptionTopic/patient-demographics";
const EXT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// What the endpoint saw: per `Patient/id` and version, when it first and last arrived and
/// how many times (once per subscription it matched); and how many handshakes.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) arrivals: HashMap<(String, String), Arrival>,
    pub(super) handshakes: usize,
}

pub(super) struct Arrival {
    pub(super) first: Instant,
    last: Instant,
    count: usize,
}

/// What names a notified resource version: its id and `meta.versionId`.
fn by_version(r: &Value) -> Option<(String, String)> {
    Some((
        r["id"].as_str()?.to_string(),
        r["meta"]["versionId"].as_str()?.to_string(),
    ))
}

/// Start the endpoint; its URL and what it sees.
fn endpoint() -> anyhow::Result<(String, Arc<Mutex<Seen>>)> {
    endpoint_keyed(by_version)
}

/// Start an endpoint that keeps each notified resource's arrival under `key` of it.
pub(super) fn endpoint_keyed(
    key: fn(&Value) -> Option<(String, String)>,
) -> anyhow::Result<(String, Arc<Mutex<Seen>>)> {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = actix_web::HttpServer::new(move || {
        let s = s.clone();
        actix_web::App::new().default_service(actix_web::web::to(
            move |body: actix_web::web::Bytes| {
                let at = Instant::now();
                let s = s.clone();
                async move {
                    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut seen = s.lock().expect("not poisoned");
                    let kind = b["entry"][0]["resource"]["parameter"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["name"] == "type"))
                        .and_then(|p| p["valueCode"].as_str())
                        .unwrap_or("");
                    if kind == "handshake" {
                        seen.handshakes += 1;
                    }
                    for e in b["entry"].as_array().into_iter().flatten().skip(1) {
                        if let Some(k) = key(&e["resource"]) {
                            let a = seen.arrivals.entry(k).or_insert(Arrival {
                                first: at,
                                last: at,
                                count: 0,
                            });
                            a.last = at;
                            a.count += 1;
                        }
                    }
                    actix_web::HttpResponse::Ok().finish()
                }
            },
        ))
    })
    .workers(2)
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok((format!("http://127.0.0.1:{port}/hook"), seen))
}

fn subscription(endpoint: &str, patient: &str) -> Value {
    json!({
        "resourceType": "Subscription", "status": "requested", "reason": "emrsync bench",
        "criteria": TOPIC,
        "_criteria": {"extension": [{"url": format!("{EXT}backport-filter-criteria"),
            "valueString": format!("Patient?_id={patient}")}]},
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{EXT}backport-payload-content"), "valueCode": "full-resource"}]}}
    })
}

pub(super) async fn create(t: &Target, body: &Value) -> anyhow::Result<Value> {
    let path = body["resourceType"].as_str().unwrap_or("");
    let req = t.request(reqwest::Method::POST, path).json_fhir(body);
    let (ok, resp) = t.send(req, StatusCode::CREATED).await;
    anyhow::ensure!(ok, "could not create a {path}: {resp}");
    Ok(resp)
}

/// Subscriptions to each of `patients` (`per` each), with every handshake seen.
async fn subscribe(
    t: &Target,
    url: &str,
    seen: &Mutex<Seen>,
    patients: &[String],
    per: usize,
) -> anyhow::Result<Vec<String>> {
    let before = seen.lock().expect("not poisoned").handshakes;
    let mut ids = Vec::new();
    for p in patients {
        for _ in 0..per {
            ids.push(
                create(t, &subscription(url, p)).await?["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("not poisoned").handshakes < before + ids.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every subscription shook hands in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ids)
}

pub(super) async fn unsubscribe(t: &Target, ids: &[String]) {
    for id in ids {
        let _ = t
            .request(reqwest::Method::DELETE, &format!("Subscription/{id}"))
            .send()
            .await;
    }
}

/// One line of figures: `what` -> notification, and the step it starts with on its own.
pub(super) fn print_latencies(what: &str, latencies: &[Duration], alone: &str, step: &[Duration]) {
    println!(
        "{what} -> notification p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({alone} alone: p50 {:.1} ms, p95 {:.1} ms)",
        percentile(latencies, 50.0),
        percentile(latencies, 95.0),
        percentile(latencies, 99.0),
        percentile(latencies, 100.0),
        percentile(step, 50.0),
        percentile(step, 95.0),
    );
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// One write: the Patient's id and new version, when it was sent, how long it took, whether
/// it succeeded.
type Sent = (String, String, Instant, Duration, bool);

/// `notify`: `subscriptions` Patients each with one subscription, updated round-robin at
/// `rate` writes per second for `seconds`.
pub async fn notify(
    t: Arc<Target>,
    subscriptions: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let (url, seen) = endpoint()?;
    let mut patients = Vec::new();
    for i in 0..subscriptions {
        let p = create(
            &t,
            &json!({"resourceType":"Patient","name":[{"family":format!("Bench{i}")}]}),
        )
        .await?;
        patients.push(p);
    }
    let ids: Vec<String> = patients
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    let subs = subscribe(&t, &url, &seen, &ids, 1).await?;

    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0usize;
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let mut body = patients[n % patients.len()].clone();
        n += 1;
        body.as_object_mut().map(|o| o.remove("meta"));
        body["birthDate"] = json!(format!("19{:02}-01-01", n % 100));
        let (t, sent) = (t.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let id = body["id"].as_str().unwrap_or("").to_string();
            let at = Instant::now();
            let req = t
                .request(reqwest::Method::PUT, &format!("Patient/{id}"))
                .json_fhir(&body);
            let (ok, resp) = t.send(req, StatusCode::OK).await;
            let version = resp["meta"]["versionId"].as_str().unwrap_or("").to_string();
            sent.lock()
                .expect("not poisoned")
                .push((id, version, at, at.elapsed(), ok));
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    // stragglers: wait until every acknowledged write has its notification, at most 30 s
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = {
            let s = seen.lock().expect("not poisoned");
            sent.iter()
                .filter(|(id, v, _, _, ok)| {
                    *ok && !s.arrivals.contains_key(&(id.clone(), v.clone()))
                })
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    let mut writes = Vec::new();
    let mut missing = 0;
    {
        let s = seen.lock().expect("not poisoned");
        for (id, v, at, took, ok) in &sent {
            if !ok {
                continue;
            }
            writes.push(*took);
            match s.arrivals.get(&(id.clone(), v.clone())) {
                Some(arrived) => latencies.push(arrived.first.saturating_duration_since(*at)),
                None => missing += 1,
            }
        }
    }
    latencies.sort_unstable();
    writes.sort_unstable();
    println!(
        "notify       {} subscriptions, {} writes/s offered for {seconds} s: {} writes ({} failed), {} notified, {missing} missing",
        subscriptions,
        rate,
        sent.len(),
        sent.iter().filter(|s| !s.4).count(),
        latencies.len()
    );
    print_latencies("notify       write", &latencies, "the write", &writes);
    unsubscribe(&t, &subs).await;
    Ok(())
}

/// `fanout`: one change, `subscriptions` subscribers to it; the time until the last has it.
pub async fn fanout(t: Arc<Target>, subscriptions: usize) -> anyhow::Result<()> {
    let (url, seen) = endpoint()?;
    let patient = create(
        &t,
        &json!({"resourceType":"Patient","name":[{"family":"Fanout"}]}),
    )
    .await?;
    let pid = patient["id"].as_str().unwrap_or("").to_string();
    let subs = subscribe(&t, &url, &seen, std::slice::from_ref(&pid), subscriptions).await?;
    let mut body = patient.clone();
    body.as_object_mut().map(|o| o.remove("meta"));
    body["gender"] = json!("other");
    let at = Instant::now();
    let req = t
        .request(reqwest::Method::PUT, &format!("Patient/{pid}"))
        .json_fhir(&body);
    let (ok, resp) = t.send(req, StatusCode::OK).await;
    anyhow::ensure!(ok, "the fan-out update failed: {resp}");
    let key = (
        pid.clone(),
        resp["meta"]["versionId"].as_str().unwrap_or("").to_string(),
    );
    let deadline = at + Duration::from_secs(60);
    let (delivered, last) = loop {
        let (n, last) = {
            let s = seen.lock().expect("not poisoned");
            s.arrivals
                .get(&key)
                .map(|a| (a.count, Some(a.last)))
                .unwrap_or((0, None))
        };
        if n >= subs.len() || Instant::now() > deadline {
            break (n, last);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "fanout       1 change to {} subscriptions: {delivered} delivered, the last {:.0} ms after the write was sent",
        subs.len(),
        last.map(|l| l.saturating_duration_since(at).as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    );
    unsubscribe(&t, &subs).await;
    Ok(())
}

/// `--watchers N`: N subscriptions that listen to every Patient change and match none (each
/// filters on an id no Patient has), so that the other scenarios measure what listening
/// subscriptions cost a write. Returns their ids, to delete at the end.
pub async fn watch(t: &Target, n: usize) -> anyhow::Result<Vec<String>> {
    let (url, seen) = endpoint()?;
    let nobody: Vec<String> = (0..n).map(|i| format!("bench-nobody-{i}")).collect();
    subscribe(t, &url, &seen, &nobody, 1).await
}

/// Delete the `--watchers` subscriptions.
pub async fn unwatch(t: &Target, ids: &[String]) {
    unsubscribe(t, ids).await
}
