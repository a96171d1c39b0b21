//! `mllp`: K concurrent MLLP senders (`--clients`), each sending ADT messages one after
//! another and waiting for each ACK, as interface engines do. The mix is what an ADT feed
//! carries: for each new patient an admission (A01), then demographic updates (A08), a
//! transfer (A02) and a discharge (A03). Prints messages/s and ACK latency percentiles; a
//! message answered with anything but AA counts as an error.
//!
//! `mllp-notify`: the same messages offered at `--rate` per second over K connections, with a
//! REST-hook subscriber to patient demographics inside the bench: the time from sending each
//! message to its Patient's notification arriving (each message changes its Patient's name, so
//! each has its own notification, found by MRN and name).

use super::Target;
use super::notify::{create, endpoint_keyed, print_latencies, unsubscribe};
use super::stats::Sample;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `n`th message of sender `client`: a 5-message story per patient.
pub(super) fn message(client: usize, n: u64) -> String {
    let patient = n / 5;
    let (trigger, ward, discharge) = match n % 5 {
        0 => ("A01", "4W", ""),
        1 | 2 => ("A08", "4W", ""),
        3 => ("A02", "5E", ""),
        _ => ("A03", "5E", "20261125180000"),
    };
    let mrn = format!("B{client}-{patient}");
    // a population like a hospital's, each patient's demographics the same in all its messages
    let (family, given, birth, house, postal) =
        super::data::v2_person(client as u64 * 1_000_000_000 + patient);
    format!(
        "MSH|^~\\&|BENCH|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^{trigger}^ADT_A01|{client}-{n}|P|2.5.1\r\
         EVN|{trigger}|20261125120000\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||{family}^{given}^Q||{birth}|F|||{house} Main St^^Springfield^IL^{postal}^USA^H\r\
         PV1|1|I|{ward}^{room}^A^GOOD HEALTH||||1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO||||||||||||V{mrn}^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261125113000|{discharge}\r",
        room = 400 + patient % 50,
    )
}

/// The lab's own test codes and units (system `L` and `99UNIT`): `scripts/bench-normalise`
/// maps them to LOINC and UCUM.
pub const LAB_TESTS: [(&str, &str, &str); 5] = [
    ("GLU", "Glucose", "MGDL"),
    ("NA", "Sodium", "MMOLL"),
    ("K", "Potassium", "MMOLL"),
    ("CREAT", "Creatinine", "MGDL"),
    ("HGB", "Hemoglobin", "GDL"),
];

/// The `n`th lab result of sender `client`: an ORU^R01 with five results in local codes.
fn lab_message(client: usize, n: u64) -> String {
    let patient = n / 5;
    let mrn = format!("B{client}-{patient}");
    let (family, given, birth, house, postal) =
        super::data::v2_person(client as u64 * 1_000_000_000 + patient);
    let mut text = format!(
        "MSH|^~\\&|BENCH|GOOD HEALTH|EMRSYNC|HUB|20261125130000||ORU^R01^ORU_R01|{client}-{n}|P|2.5.1\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||{family}^{given}^Q||{birth}|F|||{house} Main St^^Springfield^IL^{postal}^USA^H\r\
         OBR|1|PL-{client}-{n}^EPIC|FL-{client}-{n}^LAB|BMP^Basic metabolic panel^L|||20261125123000|||||||||||||||20261125125900|||F\r"
    );
    for (i, (code, name, unit)) in LAB_TESTS.iter().enumerate() {
        let value = 50 + (n as usize * 7 + i * 13) % 100;
        text.push_str(&format!(
            "OBX|{}|NM|{code}^{name}^L||{value}|{unit}^{unit}^99UNIT|10-200|N|||F|||20261125123000\r",
            i + 1
        ));
    }
    text
}

/// Send and wait for the ACK; true when it is AA.
pub(super) async fn send(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    text: &str,
) -> std::io::Result<bool> {
    let mut framed = Vec::with_capacity(text.len() + 3);
    framed.push(0x0B);
    framed.extend_from_slice(text.as_bytes());
    framed.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&framed).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.contains(&0x1C) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(buf).contains("MSA|AA|"))
}

pub async fn run(addr: &str, clients: usize, seconds: u64, lab: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    // each run's control ids and patients are its own
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    for client in 0..clients {
        let addr = addr.to_string();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return outcomes;
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let text = match lab {
                    true => lab_message(client, n),
                    false => message(client, n),
                };
                let text = text.replace("BENCH|", &format!("BENCH-{run}|"));
                let at = Instant::now();
                let ok = send(&mut stream, &mut buf, &text).await.unwrap_or(false);
                outcomes.push((at.elapsed(), ok, 1));
                n += 1;
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    anyhow::ensure!(!all.is_empty(), "no MLLP listener answered at {addr}");
    let sample = Sample::from_outcomes(all, started.elapsed());
    println!("{}", sample.row(if lab { "mllplab" } else { "mllp" }));
    Ok(())
}

/// A notified Patient by its MRN and family name (what tells the bench's messages apart).
fn by_patient(r: &Value) -> Option<(String, String)> {
    Some((
        r["identifier"][0]["value"].as_str()?.to_string(),
        r["name"][0]["family"].as_str()?.to_string(),
    ))
}

/// One message sent: its patient's MRN and family name, when, how long its ACK took, AA or not.
type Sent = (String, String, Instant, Duration, bool);

/// What `mllp-notify` offers: messages per second over so many connections for so long, to a
/// subscriber that takes up to `max_count` events per notification.
pub struct Load {
    pub clients: usize,
    pub rate: u64,
    pub seconds: u64,
    pub max_count: u32,
}

pub async fn notify(t: Arc<Target>, addr: &str, load: Load) -> anyhow::Result<()> {
    let Load {
        clients,
        rate,
        seconds,
        max_count,
    } = load;
    let (url, seen) = endpoint_keyed(by_patient)?;
    let sub = create(
        &t,
        &json!({
            "resourceType": "Subscription", "status": "requested", "reason": "emrsync bench",
            "criteria": "http://emrsync.org/SubscriptionTopic/patient-demographics",
            "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json",
                "extension": [{"url": crate::subscriptions::subscription::MAX_COUNT,
                               "valuePositiveInt": max_count}],
                "_payload": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                                            "valueCode": "full-resource"}]}}
        }),
    )
    .await?;
    let sub_id = sub["id"].as_str().unwrap_or("").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("not poisoned").handshakes == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no handshake in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    // each connection offers its share of the rate; a connection whose ACKs come slower than
    // that falls behind (and the achieved rate printed says so)
    let every = Duration::from_secs_f64(clients as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (addr, run, sent) = (addr.to_string(), run.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut buf = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                // each message names its patient anew, so that each one is a change to hear of
                let (usual, ..) = super::data::v2_person(client as u64 * 1_000_000_000 + n / 5);
                let family = format!("Bench{n}");
                let text = message(client, n)
                    .replace("BENCH|", &format!("BENCH-{run}|"))
                    .replace(&format!("B{client}-"), &format!("{run}B{client}-"))
                    .replace(&format!("||{usual}^"), &format!("||{family}^"));
                let mrn = format!("{run}B{client}-{}", n / 5);
                let at = Instant::now();
                let ok = send(&mut stream, &mut buf, &text).await.unwrap_or(false);
                sent.lock()
                    .expect("not poisoned")
                    .push((mrn, family, at, at.elapsed(), ok));
                n += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let took = started.elapsed();
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = |s: &super::notify::Seen| {
        sent.iter()
            .filter(|(m, f, _, _, ok)| *ok && !s.arrivals.contains_key(&(m.clone(), f.clone())))
            .count()
    };
    while missing(&seen.lock().expect("not poisoned")) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut latencies, still_missing) = {
        let s = seen.lock().expect("not poisoned");
        let latencies: Vec<Duration> = sent
            .iter()
            .filter(|x| x.4)
            .filter_map(|(m, f, at, _, _)| {
                s.arrivals
                    .get(&(m.clone(), f.clone()))
                    .map(|a| a.first.saturating_duration_since(*at))
            })
            .collect();
        (latencies, missing(&s))
    };
    let mut acks: Vec<Duration> = sent.iter().filter(|x| x.4).map(|x| x.3).collect();
    latencies.sort_unstable();
    acks.sort_unstable();
    println!(
        "mllp-notify  {rate} messages/s offered over {clients} connections for {seconds} s (maxCount {max_count}): {} sent ({} not AA), {:.0} messages/s achieved, {} notified, {} missing",
        sent.len(),
        sent.iter().filter(|x| !x.4).count(),
        sent.len() as f64 / took.as_secs_f64(),
        latencies.len(),
        still_missing
    );
    print_latencies("mllp-notify  MLLP send", &latencies, "the ACK", &acks);
    unsubscribe(&t, &[sub_id]).await;
    Ok(())
}
