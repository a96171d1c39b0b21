//! Event stream figures: how long from a committed write to its event being readable by a
//! consumer of the JetStream stream (`stream`: Observations written at a fixed rate, in
//! transactions of `--bundle-size`, read by an ordered consumer in the bench process). The
//! write's response is sent after its commit, so the time from the response to the event is
//! an upper bound of what the stream adds; the time from sending the write is printed too.

use super::notify::{create, percentile};
use super::{JsonFhir, Target};
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the stream is read.
pub struct Broker<'a> {
    pub url: &'a str,
    pub stream: &'a str,
}

/// One write: the Observations' ids, when it was sent, when its response came, whether it
/// succeeded.
type Sent = (Vec<String>, Instant, Instant, bool);

/// `rate` Observations a second for `seconds`, in transactions of `bundle` (1: single creates).
pub async fn run(
    t: Arc<Target>,
    broker: Broker<'_>,
    (rate, bundle, seconds): (u64, usize, u64),
) -> anyhow::Result<()> {
    let bundle = bundle.max(1);
    // the consumer first, from what comes next
    let client = async_nats::connect(broker.url).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(broker.stream).await.map_err(|e| {
        anyhow::anyhow!(
            "the stream {} (is the server publishing to {}?): {e}",
            broker.stream,
            broker.url
        )
    })?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let arrivals = arrivals.clone();
        let mut messages = consumer.messages().await?;
        tokio::spawn(async move {
            while let Some(Ok(m)) = messages.next().await {
                let at = Instant::now();
                if let Ok(e) = serde_json::from_slice::<Value>(&m.payload)
                    && e["resourceType"] == "Observation"
                    && let Some(id) = e["resourceId"].as_str()
                {
                    arrivals
                        .lock()
                        .expect("not poisoned")
                        .entry(id.to_string())
                        .or_insert(at);
                }
            }
        })
    };
    let patient = create(
        &t,
        &json!({"resourceType": "Patient", "name": [{"family": "StreamBench"}]}),
    )
    .await?;
    let subject = format!("Patient/{}", patient["id"].as_str().unwrap_or(""));

    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let writes_a_second = (rate / bundle as u64).max(1);
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / writes_a_second));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let observations: Vec<Value> = (0..bundle)
            .map(|_| {
                n += 1;
                json!({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": subject},
                    "valueQuantity": {"value": 70 + n % 60, "unit": "mg/dL",
                        "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
            })
            .collect();
        let (t, sent) = (t.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let (ok, ids) = match bundle {
                1 => {
                    let req = t
                        .request(reqwest::Method::POST, "Observation")
                        .json_fhir(&observations[0]);
                    let (ok, resp) = t.send(req, StatusCode::CREATED).await;
                    (ok, vec![resp["id"].as_str().unwrap_or("").to_string()])
                }
                _ => {
                    let entries: Vec<Value> = observations
                        .into_iter()
                        .map(|o| json!({"resource": o, "request": {"method": "POST", "url": "Observation"}}))
                        .collect();
                    let body = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
                    let req = t.request(reqwest::Method::POST, "").json_fhir(&body);
                    let (ok, resp) = t.send(req, StatusCode::OK).await;
                    let ids = resp["entry"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["response"]["location"].as_str())
                        .filter_map(|l| l.split('/').nth(1).map(str::to_string))
                        .collect();
                    (ok, ids)
                }
            };
            sent.lock()
                .expect("not poisoned")
                .push((ids, at, Instant::now(), ok));
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    // stragglers: wait until every acknowledged write is on the stream, at most 30 s
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = {
            let a = arrivals.lock().expect("not poisoned");
            sent.iter()
                .filter(|s| s.3)
                .flat_map(|s| &s.0)
                .filter(|id| !a.contains_key(*id))
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let (mut added, mut end_to_end, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    {
        let a = arrivals.lock().expect("not poisoned");
        for (ids, at, answered, ok) in &sent {
            if !ok {
                continue;
            }
            writes.push(answered.saturating_duration_since(*at));
            for id in ids {
                match a.get(id) {
                    Some(arrived) => {
                        added.push(arrived.saturating_duration_since(*answered));
                        end_to_end.push(arrived.saturating_duration_since(*at));
                    }
                    None => missing += 1,
                }
            }
        }
    }
    for v in [&mut added, &mut end_to_end, &mut writes] {
        v.sort_unstable();
    }
    println!(
        "stream       {rate} Observations/s offered for {seconds} s in writes of {bundle}: {} writes ({} failed), {} on the stream, {missing} missing",
        sent.len(),
        sent.iter().filter(|s| !s.3).count(),
        added.len()
    );
    let line = |what: &str, l: &[Duration]| {
        println!(
            "stream       {what}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(l, 50.0),
            percentile(l, 95.0),
            percentile(l, 99.0),
            percentile(l, 100.0)
        )
    };
    line("write's response -> event read (added)", &added);
    line("write sent -> event read", &end_to_end);
    line("the write alone", &writes);
    Ok(())
}
