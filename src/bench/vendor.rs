//! Vendor source figures: how long from a change at a vendor to a subscriber's notification
//! (`vendor`). The bench plays the vendor: a practice API on `--vendor-port` (the server's
//! source definition names it, `scripts/bench-vendor` writes both) that answers
//! `GET /patients?since=` with the patients changed since, and the sender of signed webhooks
//! to `/adapters/<source>/webhook`. One subscription (every Patient change, full resources)
//! to a REST hook in the bench process sees each change arrive.
//!
//! - webhook: a changed patient POSTed, signed; latency from just before the POST to the
//!   notification's arrival (the POST's own time printed beside it).
//! - polling: a patient changed at the simulated API at a random moment; latency from the
//!   change to the notification: the wait for the server's next poll (`pollSeconds`) and
//!   then the same path.

use super::Target;
use super::notify::{create, endpoint_keyed, percentile, unsubscribe};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "http://emrsync.org/SubscriptionTopic/patient-demographics";
const EXT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// The simulated vendor the server's source definition points at.
pub struct Vendor<'a> {
    pub port: u16,
    /// The source's name (its webhook's path).
    pub source: &'a str,
    /// The webhook's shared secret.
    pub secret: String,
}

/// What a notified Patient is known by: its vendor id and family name (a change's own).
fn by_change(r: &Value) -> Option<(String, String)> {
    Some((
        r["identifier"][0]["value"].as_str()?.to_string(),
        r["name"][0]["family"].as_str()?.to_string(),
    ))
}

/// A patient record as the simulated API writes it, changed at `at`.
fn record(id: &str, family: &str, at: &str) -> Value {
    json!({"id": id, "last_name": family, "first_name": "Bench", "date_of_birth": "1970-01-02",
           "gender": "Female", "updated_at": at})
}

/// A change time that sorts as text (the API's `since` compares them so).
fn stamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Serve `GET /patients?since=` from `records` on `port`.
fn api(port: u16, records: Arc<Mutex<Vec<Value>>>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let server = actix_web::HttpServer::new(move || {
        let records = records.clone();
        actix_web::App::new().default_service(actix_web::web::to(
            move |q: actix_web::web::Query<std::collections::HashMap<String, String>>| {
                let records = records.clone();
                async move {
                    let since = q.get("since").cloned().unwrap_or_default();
                    let list = records.lock().expect("not poisoned");
                    let changed: Vec<&Value> = list
                        .iter()
                        .filter(|r| r["updated_at"].as_str().unwrap_or("") >= since.as_str())
                        .collect();
                    actix_web::HttpResponse::Ok().json(json!({"results": changed, "next": null}))
                }
            },
        ))
    })
    .workers(1)
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(())
}

/// Wait until the change `key` has been notified: when it arrived.
async fn arrival(
    seen: &Mutex<super::notify::Seen>,
    key: &(String, String),
    within: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(a) = seen.lock().expect("not poisoned").arrivals.get(key) {
            return Some(a.first);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// `changes` webhook deliveries one after another, then `changes / 5` polled changes.
pub async fn run(t: Arc<Target>, v: Vendor<'_>, changes: usize) -> anyhow::Result<()> {
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    api(v.port, records.clone())?;
    let (url, seen) = endpoint_keyed(by_change)?;
    let sub = json!({
        "resourceType": "Subscription", "status": "requested", "reason": "emrsync bench vendor",
        "criteria": TOPIC,
        "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{EXT}backport-payload-content"), "valueCode": "full-resource"}]}}
    });
    let sub_id = create(&t, &sub).await?["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("not poisoned").handshakes == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the subscription did not shake hands"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // webhooks: one change at a time, each waited for
    let hook = format!(
        "{}/adapters/{}/webhook",
        t.base.trim_end_matches("/fhir"),
        v.source
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, v.secret.trim().as_bytes());
    let (mut latencies, mut posts, mut lost) = (Vec::new(), Vec::new(), 0);
    for i in 0..changes {
        let family = format!("Hook{i}");
        let id = format!("W{}", i % 50);
        let body =
            json!({"event": "patient.updated", "data": record(&id, &family, &stamp())}).to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let tag = aws_lc_rs::hmac::sign(&key, format!("{ts}.{body}").as_bytes());
        let sig = hex::encode(tag);
        let sent = Instant::now();
        let resp = t
            .client
            .post(&hook)
            .header("content-type", "application/json")
            .header("x-webhook-timestamp", ts)
            .header("x-webhook-signature", format!("sha256={sig}"))
            .body(body)
            .send()
            .await?;
        posts.push(sent.elapsed());
        anyhow::ensure!(
            resp.status().is_success(),
            "the webhook was refused: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        match arrival(&seen, &(id, family), Duration::from_secs(10)).await {
            Some(at) => latencies.push(at - sent),
            None => lost += 1,
        }
    }
    latencies.sort();
    posts.sort();
    println!(
        "vendor webhook -> notification ({} changes): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; the POST alone p50 {:.1} ms, p95 {:.1} ms; {lost} not notified within 10 s",
        changes,
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        percentile(&posts, 50.0),
        percentile(&posts, 95.0),
    );

    // polling: a change at a random moment of the poll interval, each waited for
    let polled = (changes / 5).max(10);
    let (mut latencies, mut lost) = (Vec::new(), 0);
    for i in 0..polled {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        let family = format!("Poll{i}");
        let id = format!("P{}", i % 10);
        let changed = Instant::now();
        {
            let mut list = records.lock().expect("not poisoned");
            list.retain(|r| r["id"] != id.as_str());
            list.push(record(&id, &family, &stamp()));
        }
        match arrival(&seen, &(id, family), Duration::from_secs(30)).await {
            Some(at) => latencies.push(at - changed),
            None => lost += 1,
        }
    }
    latencies.sort();
    println!(
        "vendor polled change -> notification ({polled} changes): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {lost} not notified within 30 s",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 100.0),
    );
    unsubscribe(&t, &[sub_id]).await;
    Ok(())
}
