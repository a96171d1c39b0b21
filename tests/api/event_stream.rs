//! The event stream (issue 26) against a real `nats-server` with JetStream: every committed
//! change is on the stream once, in outbox order, on its type's and patient's subject, with its
//! position as `Nats-Msg-Id`; a broker that is not there yet makes the outbox wait, and what
//! waited arrives, in order, once it is.

use crate::helpers::{TestApp, spawn_with};
use crate::process::free_port;
use diesel::prelude::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `nats-server` with JetStream on loopback, its store in a temporary directory, stopped
/// when dropped. Found as `EMRSYNC_TEST_NATS_SERVER`, else `nats-server` on the PATH or in
/// `/usr/sbin` (Debian's package).
pub struct Nats {
    child: Child,
    pub url: String,
    access: Access,
    pub dir: tempfile::TempDir,
}

/// What the tests' own client needs for a broker that asks more than an address.
#[derive(Default, Clone)]
pub struct Access {
    pub token: Option<String>,
    pub nkey_seed: Option<String>,
    pub ca: Option<std::path::PathBuf>,
}

impl Nats {
    pub async fn start() -> Nats {
        Nats::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Nats {
        Nats::start_with(port, "", Access::default()).await
    }

    /// A broker on `port` with `conf` added to its configuration (authorization, TLS), and
    /// `access` for the tests' own client. `conf` may name files in `dir` as `{dir}`.
    pub async fn start_with(port: u16, conf: &str, access: Access) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        Nats::start_in(dir, port, conf, access).await
    }

    pub async fn start_in(dir: tempfile::TempDir, port: u16, conf: &str, access: Access) -> Nats {
        let binary = std::env::var("EMRSYNC_TEST_NATS_SERVER").unwrap_or_else(|_| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("nats-server")
                .to_string()
        });
        let path = dir.path().to_str().unwrap().to_string();
        let file = dir.path().join("nats.conf");
        std::fs::write(
            &file,
            format!(
                "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{path}/js\" }}\n{}\n",
                conf.replace("{dir}", &path)
            ),
        )
        .unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} (Debian's nats-server) cannot start: {e}"));
        let scheme = if access.ca.is_some() { "tls" } else { "nats" };
        // held from here: stopped and waited for on every path, a panic's included
        let nats = Nats {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            access,
            dir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nats;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not listen on {port}");
    }

    /// The tests' own client of this broker.
    pub async fn client(&self) -> async_nats::Client {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(token) = &self.access.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &self.access.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.access.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        options.connect(&self.url).await.unwrap()
    }

    /// What the broker says of stream `name` now (its configuration, its cluster's leader).
    pub async fn stream_info(&self, name: &str) -> async_nats::jetstream::stream::Info {
        let js = async_nats::jetstream::new(self.client().await);
        js.get_stream(name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone()
    }

    /// The events of stream `name` from its first, once there are `n` (waiting up to 30 s):
    /// each message's subject, `Nats-Msg-Id` and envelope.
    pub async fn events(&self, name: &str, n: u64) -> Vec<(String, String, Value)> {
        let js = async_nats::jetstream::new(self.client().await);
        let mut held = 0;
        for _ in 0..300 {
            if let Ok(mut stream) = js.get_stream(name).await {
                held = stream.info().await.unwrap().state.messages;
                if held >= n {
                    let mut out = Vec::new();
                    for seq in 1..=held {
                        let m = stream.get_raw_message(seq).await.unwrap();
                        let id = m.headers.get("Nats-Msg-Id").unwrap().to_string();
                        let body: Value = serde_json::from_slice(&m.payload).unwrap();
                        out.push((m.subject.to_string(), id, body));
                    }
                    return out;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the stream holds {held} events, not {n}");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn with_stream(backend: crate::helpers::Backend, url: String) -> TestApp {
    spawn_with(backend, move |s| {
        s.stream.broker.url = Some(url);
        s.mllp = Some("127.0.0.1:0".into());
    })
    .await
}

mod every_change_is_published_once_in_order {
    use crate::helpers::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::every_change_is_published_once_in_order(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::every_change_is_published_once_in_order(Backend::Postgres).await
    }
}

/// The outbox's positions, oldest first.
pub fn outbox(app: &TestApp) -> Vec<(i64, Option<i64>)> {
    use emrsync::store::schema::outbox as o;
    let mut c = app.db();
    match &mut c {
        emrsync::store::DbConnection::Sqlite(c) => o::table
            .select((o::seq, o::published_at))
            .order(o::seq)
            .load(c)
            .unwrap(),
        emrsync::store::DbConnection::Pg(c) => o::table
            .select((o::seq, o::published_at))
            .order(o::seq)
            .load(c)
            .unwrap(),
    }
}

async fn every_change_is_published_once_in_order(backend: crate::helpers::Backend) {
    let nats = Nats::start().await;
    // a cluster's seed list, one of its brokers away
    let seeds = format!("nats://127.0.0.1:{},{}", free_port(), nats.url);
    let app = with_stream(backend, seeds).await;
    let (pat, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Streamed"}]}))
        .await;
    let obs = |code: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{pat}")}})
    };
    let (first, _) = app.create(&obs("2823-3")).await;
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": obs("2345-7")},
        {"request": {"method": "POST", "url": "Organization"},
         "resource": {"resourceType": "Organization", "name": "Lab"}}]});
    assert_eq!(app.post("", &tx).await.status, 200);
    assert_eq!(
        app.delete(&format!("Observation/{first}")).await.status,
        200
    );
    // and an HL7v2 admission: its Patient and Encounter, about the same person
    let mut mllp = crate::mllp_client::Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp
        .send(&crate::hl7v2::adt(
            "A01", "S1", "MRN-S1", "V-S1", "Streamed",
        ))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let changes = outbox(&app);
    let events = nats.events("EMRSYNC", changes.len() as u64).await;
    // once each, in outbox order, the position as the message id
    let ids: Vec<i64> = events
        .iter()
        .map(|(_, id, _)| id.parse().unwrap())
        .collect();
    let seqs: Vec<i64> = changes.iter().map(|(s, _)| *s).collect();
    assert_eq!(ids, seqs);
    for (subject, id, e) in &events {
        assert_eq!(&e["id"].as_str().unwrap(), id);
        assert_eq!(e["specversion"], "1.0");
        // reference only by default: no PHI in the stream
        assert!(e.get("data").is_none(), "{e}");
        let rtype = e["resourceType"].as_str().unwrap();
        assert!(
            subject.starts_with(&format!("emrsync.{rtype}.")),
            "{subject}"
        );
    }
    // the patient's changes share their partition; the Organization is about no one
    let about_patient: Vec<&String> = events
        .iter()
        .filter(|(_, _, e)| e["patient"] == format!("Patient/{pat}"))
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(about_patient.len(), 4, "{events:?}");
    let partition = |s: &str| s.rsplit('.').next().unwrap().to_string();
    assert!(
        about_patient
            .iter()
            .all(|s| partition(s) == partition(about_patient[0]))
    );
    let org = events
        .iter()
        .find(|(_, _, e)| e["resourceType"] == "Organization")
        .unwrap();
    assert_eq!(org.0, "emrsync.Organization.none");
    let delete = events
        .iter()
        .find(|(_, _, e)| e["action"] == "delete")
        .unwrap();
    assert_eq!(delete.2["resourceId"], first.as_str());
    assert_eq!(delete.2["type"], "org.emrsync.resource.delete");
    // the admission's resources: one write (one correlation id), from its sender, about its
    // patient, on the patient's partition
    let admission: Vec<&Value> = events
        .iter()
        .map(|(_, _, e)| e)
        .filter(|e| {
            e["sourceSystem"]
                .as_str()
                .is_some_and(|s| s.contains("REG"))
        })
        .collect();
    let types: Vec<&str> = admission
        .iter()
        .map(|e| e["resourceType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Patient") && types.contains(&"Encounter"),
        "{admission:?}"
    );
    assert!(
        admission
            .iter()
            .all(|e| e["correlationId"] == admission[0]["correlationId"])
    );
    let admitted = admission
        .iter()
        .find(|e| e["resourceType"] == "Patient")
        .unwrap();
    let encounter = events
        .iter()
        .find(|(_, _, e)| e["resourceType"] == "Encounter")
        .unwrap();
    assert_eq!(
        encounter.2["patient"],
        format!("Patient/{}", admitted["resourceId"].as_str().unwrap())
    );
    // and every change is marked published
    for _ in 0..50 {
        if outbox(&app).iter().all(|(_, p)| p.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("changes left unmarked: {:?}", outbox(&app));
}

/// The broker is not there when the server starts and writes go on: they wait in the outbox
/// (the server stays ready, an alert says the stream is behind), and arrive in order once it
/// is up (and the alert is resolved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_wait_for_a_broker_that_is_down_and_arrive_in_order() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let app = spawn_with(crate::helpers::Backend::Sqlite, move |s| {
        s.stream.broker.url = Some(url);
        s.alert_interval_secs = 1;
    })
    .await;
    let rules = json!({"rules": [{"name": "stream-behind", "kind": "queue-age",
        "queue": "outbox-stream", "seconds": 1, "severity": "warning"}]});
    let r = app
        .client
        .put(format!("{}/admin/alerts/rules", app.root))
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut made = Vec::new();
    for n in 0..5 {
        let (id, _) = app
            .create(
                &json!({"resourceType": "Patient", "name": [{"family": format!("Waiting{n}")}]}),
            )
            .await;
        made.push(format!("Patient/{id}"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(outbox(&app).iter().all(|(_, p)| p.is_none()));
    // the analytics broker away does not take the node out of service
    let ready = app.get_url(&format!("{}/ready", app.root)).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let firing = stream_alerts(&app, "firing", 1).await;
    assert!(
        firing[0]["detail"]
            .as_str()
            .unwrap()
            .contains(" waiting, the oldest for"),
        "{firing:?}"
    );
    let nats = Nats::start_on(port).await;
    let changes = outbox(&app);
    let events = nats.events("EMRSYNC", changes.len() as u64).await;
    stream_alerts(&app, "resolved", 1).await;
    assert!(stream_alerts(&app, "firing", 0).await.is_empty());
    let patients: Vec<String> = events
        .iter()
        .filter_map(|(_, _, e)| e["patient"].as_str().map(str::to_string))
        .filter(|p| made.contains(p))
        .collect();
    assert_eq!(patients, made);
}

/// The stream's alerts of `status`, once there are `n` (waiting up to 20 s).
async fn stream_alerts(app: &TestApp, status: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..80 {
        got = crate::alerts::alerts(app, status)
            .await
            .into_iter()
            .filter(|a| a["rule"] == "stream-behind")
            .collect();
        if got.len() == n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{} {status} stream alerts, not {n}: {got:?}", got.len());
}

/// `emrsync stream tail <args>` against `nats`, run off the runtime the server is on.
async fn tail(nats: &Nats, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "stream".to_string(),
        "tail".into(),
        "--stream".into(),
        nats.url.clone(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let (ok, out, err) = tokio::task::spawn_blocking(move || crate::cli::emrsync_owned(&all))
        .await
        .unwrap();
    assert!(ok, "{err}");
    out.lines().map(str::to_string).collect()
}

/// The stream sequences of `tail --json`'s lines.
fn seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// `emrsync stream tail`: the last ten, from a position, from a time, on one subject pattern,
/// and following as events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_command_prints_what_consumers_see() {
    let nats = Nats::start().await;
    let app = with_stream(crate::helpers::Backend::Sqlite, nats.url.clone()).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    for n in 0..12 {
        app.create(&json!({"resourceType": "Patient", "name": [{"family": format!("Tail{n}")}]}))
            .await;
    }
    app.create(&json!({"resourceType": "Organization", "name": "Lab"}))
        .await;
    let held = outbox(&app).len() as u64;
    let events = nats.events("EMRSYNC", held).await;
    let n = events.len() as u64;

    // the last ten, as text: position, time, action, version, patient
    let last = tail(&nats, &[]).await;
    assert_eq!(last.len(), 10, "{last:?}");
    assert!(last[9].trim_start().starts_with(&n.to_string()), "{last:?}");
    let final_subject = events.last().unwrap().2["subject"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last[9].contains(&final_subject), "{last:?}");

    // from a position, as JSON lines
    let from = tail(&nats, &["--from-seq", "3", "--json"]).await;
    assert_eq!(seqs(&from), (3..=n).collect::<Vec<_>>());
    let first: Value = serde_json::from_str(&from[0]).unwrap();
    assert_eq!(first["event"], events[2].2);
    assert_eq!(first["subject"], events[2].0.as_str());

    // one subject pattern
    let orgs = tail(
        &nats,
        &[
            "--from-seq",
            "1",
            "--json",
            "--subject",
            "emrsync.Organization.*",
        ],
    )
    .await;
    assert_eq!(orgs.len(), 1, "{orgs:?}");

    // from a time: everything written since; from a time to come: nothing
    let since = tail(&nats, &["--since", &before.to_rfc3339(), "--json"]).await;
    assert_eq!(seqs(&since), (1..=n).collect::<Vec<_>>());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(tail(&nats, &["--since", &future]).await.is_empty());

    // following: waits for the next event and prints it
    let next = (n + 1).to_string();
    let follow = {
        let nats_url = nats.url.clone();
        tokio::task::spawn_blocking(move || {
            crate::cli::emrsync_owned(&[
                "stream".into(),
                "tail".into(),
                "--stream".into(),
                nats_url,
                "--from-seq".into(),
                next,
                "--follow".into(),
                "--count".into(),
                "1".into(),
                "--json".into(),
            ])
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (later, _) = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Later"}]}))
        .await;
    let (ok, out, err) = tokio::time::timeout(Duration::from_secs(20), follow)
        .await
        .expect("the following tail printed the next event and stopped")
        .unwrap();
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(e["seq"], n + 1);
    assert_eq!(e["event"]["resourceId"], later.as_str());
}

/// With the master patient index on, an event about a record of a person with a golden record
/// names that enterprise Patient too, and the golden record's own events name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_enterprise_patient_once_the_mpi_links_records() {
    let nats = Nats::start().await;
    let app = with_stream(crate::helpers::Backend::Sqlite, nats.url.clone()).await;
    let patient = |mrn: &str| {
        json!({"resourceType": "Patient",
               "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
               "name": [{"family": "Enterprise", "given": ["Michaela"]}],
               "gender": "female", "birthDate": "1965-11-11",
               "address": [{"line": ["8 Stanley Street"], "city": "Springfield", "postalCode": "62701"}]})
    };
    let (a, _) = app.create(&patient("E-1")).await;
    app.create(&patient("E-2")).await;
    let mut golden = String::new();
    for _ in 0..100 {
        let found = app
            .get("/Patient?_tag=http://emrsync.org/fhir/CodeSystem/mpi|golden-record")
            .await
            .json();
        if let Some(id) = found["entry"][0]["resource"]["id"].as_str() {
            golden = id.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!golden.is_empty(), "the two records were linked");
    let (obs, _) = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": format!("Patient/{a}")}}))
        .await;
    let events = nats.events("EMRSYNC", outbox(&app).len() as u64).await;
    let of = |id: &str| {
        events
            .iter()
            .map(|(_, _, e)| e)
            .filter(|e| e["resourceId"] == id)
            .cloned()
            .collect::<Vec<Value>>()
    };
    let enterprise = Value::String(format!("Patient/{golden}"));
    let result = of(&obs);
    assert_eq!(result[0]["patient"], format!("Patient/{a}"));
    assert_eq!(result[0]["enterprisePatient"], enterprise, "{result:?}");
    let own = of(&golden);
    assert!(!own.is_empty());
    assert!(
        own.iter().all(|e| e["enterprisePatient"] == enterprise),
        "{own:?}"
    );
}
