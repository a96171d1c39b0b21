//! A vendor source read from its API (issue 25): a simulator of a practice-management system
//! on loopback (a real HTTP server) that issues OAuth2 tokens and refuses them once they are
//! stale, serves patients in pages with a change cursor, and answers 429 with `Retry-After`
//! and 500 now and then. The poller loads everything, then only what changed; a token that goes
//! stale mid-reading is replaced; nothing is lost or written twice; the bad record waits in
//! the exception queue.

use emrsync::adapters::hl7v2::identity::{secret, stable_id};
use emrsync::adapters::vendor::page;
use emrsync::adapters::vendor::poll::{Polled, Poller};
use emrsync::adapters::vendor::source::Source;
use emrsync::config::{Settings, StoreArgs};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the simulated vendor holds and has seen.
#[derive(Default)]
pub struct Vendor {
    pub patients: Vec<Value>,
    /// Tokens issued, each refused after `TOKEN_LIFE` (the vendor says it lasts an hour).
    tokens: HashMap<String, Instant>,
    pub tokens_issued: usize,
    pub refused_stale: usize,
    /// Statuses the next page requests get instead of a page.
    pub fail_next: Vec<u16>,
    pub page_requests: usize,
    /// `/v2/patients`: the `since_seq` each request asked from, and the 304s it answered.
    pub asked_since: Vec<i64>,
    pub not_modified: usize,
}

const TOKEN_LIFE: Duration = Duration::from_millis(1200);
const PAGE: usize = 2;

pub async fn vendor() -> (String, Arc<Mutex<Vendor>>) {
    let state: Arc<Mutex<Vendor>> = Arc::default();
    let s = state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        let (t, p, q) = (s.clone(), s.clone(), s.clone());
        actix_web::App::new()
            .route(
                "/oauth/token",
                actix_web::web::post().to(move |req: actix_web::HttpRequest| {
                    let s = t.clone();
                    async move {
                        // client id and secret as HTTP Basic (RFC 6749 2.3.1)
                        use base64::Engine;
                        let good = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode("emrsync:s3cret")
                        );
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        if auth.as_deref() != Some(good.as_str()) {
                            return actix_web::HttpResponse::Unauthorized()
                                .json(json!({"error": "invalid_client"}));
                        }
                        let mut v = s.lock().unwrap();
                        v.tokens_issued += 1;
                        let token = format!("token-{}", v.tokens_issued);
                        v.tokens.insert(token.clone(), Instant::now() + TOKEN_LIFE);
                        actix_web::HttpResponse::Ok().json(json!({"access_token": token,
                            "token_type": "bearer", "expires_in": 3600}))
                    }
                }),
            )
            .route(
                "/v1/patients",
                actix_web::web::get().to(move |req: actix_web::HttpRequest| {
                    let s = p.clone();
                    async move { patients(&s, &req) }
                }),
            )
            .route(
                "/v2/patients",
                actix_web::web::get().to(move |req: actix_web::HttpRequest| {
                    let s = q.clone();
                    async move { sequenced(&s, &req) }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), state)
}

fn patients(s: &Mutex<Vendor>, req: &actix_web::HttpRequest) -> actix_web::HttpResponse {
    let mut v = s.lock().unwrap();
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    match v.tokens.get(&token) {
        Some(until) if Instant::now() < *until => {}
        Some(_) => {
            v.refused_stale += 1;
            return actix_web::HttpResponse::Unauthorized().json(json!({"error": "expired"}));
        }
        None => return actix_web::HttpResponse::Unauthorized().finish(),
    }
    v.page_requests += 1;
    if !v.fail_next.is_empty() {
        let status = v.fail_next.remove(0);
        return match status {
            429 => actix_web::HttpResponse::TooManyRequests()
                .insert_header(("retry-after", "1"))
                .finish(),
            _ => actix_web::HttpResponse::InternalServerError().body("try later"),
        };
    }
    let q: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let since = q.get("updated_since").cloned().unwrap_or_default();
    let mut changed: Vec<&Value> = v
        .patients
        .iter()
        .filter(|p| p["updated_at"].as_str().unwrap() >= since.as_str())
        .collect();
    changed.sort_by_key(|p| p["updated_at"].as_str().unwrap().to_string());
    let from: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = changed
        .iter()
        .skip(from)
        .take(PAGE)
        .map(|p| (*p).clone())
        .collect();
    let next = (from + PAGE < changed.len()).then(|| (from + PAGE).to_string());
    actix_web::HttpResponse::Ok().json(json!({"data": page, "meta": {"next_cursor": next}}))
}

/// `/v2/patients`: the changes since a sequence number (`since_seq`, inclusive), by page
/// number, each page with an ETag over what it holds; asked `If-None-Match` with it: 304.
fn sequenced(s: &Mutex<Vendor>, req: &actix_web::HttpRequest) -> actix_web::HttpResponse {
    use std::hash::{Hash, Hasher};
    let mut v = s.lock().unwrap();
    let q: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let since: i64 = q.get("since_seq").and_then(|n| n.parse().ok()).unwrap_or(0);
    let number: usize = q.get("page").and_then(|n| n.parse().ok()).unwrap_or(1);
    v.asked_since.push(since);
    let mut changed: Vec<&Value> = v
        .patients
        .iter()
        .filter(|p| p["seq"].as_i64().unwrap() >= since)
        .collect();
    changed.sort_by_key(|p| p["seq"].as_i64().unwrap());
    let page: Vec<Value> = changed
        .iter()
        .skip((number - 1) * PAGE)
        .take(PAGE)
        .map(|p| (*p).clone())
        .collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (since, number, Value::Array(page.clone()).to_string()).hash(&mut h);
    let etag = format!("\"{:x}\"", h.finish());
    let asked = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if asked == Some(etag.as_str()) {
        v.not_modified += 1;
        return actix_web::HttpResponse::NotModified().finish();
    }
    actix_web::HttpResponse::Ok()
        .insert_header(("etag", etag))
        .json(json!({"items": page}))
}

pub fn definition(base: &str, dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    let def = json!({
        "name": "pm-sim",
        "baseUrl": base,
        "auth": {"type": "oauth2-client-credentials", "tokenUrl": format!("{base}/oauth/token"),
                 "clientId": "emrsync", "clientSecretFile": dir.join("secret")},
        "requestsPerSecond": 4,
        "records": {
            "patient": {
                "endpoint": "/v1/patients",
                "items": "$.data",
                "paging": {"type": "cursor", "param": "cursor", "next": "$.meta.next_cursor"},
                "changes": {"param": "updated_since", "field": "$.updated_at"},
                "map": {
                    "resourceType": "Patient", "key": "$.id",
                    "identifierSystem": "https://pm-sim.example.org/patient-id",
                    "elements": [
                        {"to": "/name/0/family", "from": "$.last_name", "required": true},
                        {"to": "/birthDate", "from": "$.dob", "date": "%m/%d/%Y"}
                    ]
                }
            }
        }
    });
    let path = dir.join("pm-sim.json");
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

/// `emrsync source ARGS DEFINITION --data-dir DATA`: whether it succeeded, and what it printed.
pub fn source_cli(def: &std::path::Path, data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"))
        .args(["source"])
        .args(args)
        .arg(def)
        .arg("--data-dir")
        .arg(data)
        .env("EMRSYNC_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

pub fn patient(id: u32, last: &str, dob: &str, at: u32) -> Value {
    json!({"id": id, "last_name": last, "dob": dob,
        "updated_at": format!("2026-12-07T08:00:{at:02}Z")})
}

/// A poller of `source` writing to a fresh SQLite store in `dir`, and that store.
fn poller_on_sqlite(source: Arc<Source>, dir: &std::path::Path) -> (emrsync::store::Store, Poller) {
    let mut settings = Settings::new("127.0.0.1:0", StoreArgs::new(dir.into(), None));
    settings.no_shipped_terminology = true;
    settings.store.database().unwrap().migrate().unwrap();
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let ingest = emrsync::startup::ingest(store.clone(), &settings).unwrap();
    (store, Poller::new(ingest, source))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_api_is_loaded_then_read_for_changes_only() {
    let (base, vendor) = vendor().await;
    {
        let mut v = vendor.lock().unwrap();
        v.patients = vec![
            patient(1, "Nguyen", "03/07/1961", 1),
            patient(2, "Roe", "11/30/1975", 2),
            patient(3, "Okafor", "01/01/1990", 3),
            patient(4, "Bad", "1961-13-45", 4),
            patient(5, "Smith", "07/04/1976", 5),
        ];
        // the first page request is told to come back in a second, the next one fails
        v.fail_next = vec![429, 500];
    }
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(Source::load(&definition(&base, dir.path())).unwrap());
    let (store, mut poller) = poller_on_sqlite(source, dir.path());

    let first = poller.poll().await.unwrap();
    assert_eq!(
        first,
        Polled {
            pages: 3,
            accepted: 4,
            refused: 1
        }
    );
    let key = secret(&store).unwrap();
    let id = |n: u32| {
        stable_id(
            key.as_bytes(),
            "Patient",
            &["https://pm-sim.example.org/patient-id", &n.to_string()],
        )
    };
    let version = |n: u32| store.current("Patient", &id(n)).map(|v| v.version_id).ok();
    assert_eq!(
        [1, 2, 3, 4, 5].map(version),
        [Some(1), Some(1), Some(1), None, Some(1)]
    );
    let waiting = store.read(|c| page::open(c, "pm-sim", 10)).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].vendor_key.as_deref(), waiting[0].path.as_str()),
        (Some("4"), "$.dob")
    );

    // changes at the vendor: one patient renamed, one new; the next poll asks from the
    // newest change it saw and writes only what changed
    {
        let mut v = vendor.lock().unwrap();
        v.patients[1] = patient(2, "Roe-Smith", "11/30/1975", 6);
        v.patients.push(patient(6, "Ito", "02/02/2002", 7));
    }
    let second = poller.poll().await.unwrap();
    // patient 5 again (asked from its time), then 2 and 6
    assert_eq!((second.accepted, second.refused), (3, 0));
    assert_eq!(
        [1, 2, 3, 5, 6].map(version),
        [Some(1), Some(2), Some(1), Some(1), Some(1)]
    );
    assert_eq!(
        store.current("Patient", &id(2)).unwrap().json()["name"][0]["family"],
        "Roe-Smith"
    );
    let v = vendor.lock().unwrap();
    // the stale token was refused and replaced, mid-reading
    assert!(
        v.refused_stale >= 1 && v.tokens_issued >= 2,
        "{} {}",
        v.refused_stale,
        v.tokens_issued
    );
    assert!(v.fail_next.is_empty());
}

/// The server polling a source (`serve --source`), killed (SIGKILL) in the middle of a reading
/// and started again: it resumes at the page after the last one applied, and every record is
/// in the store once, none written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_reading_resumes_without_loss_or_doubles() {
    use crate::process::{free_port, start, wait_healthy};
    let (base, vendor) = vendor().await;
    vendor.lock().unwrap().patients = (1..=40)
        .map(|n| patient(n, &format!("P{n}"), "01/02/1980", n))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let def = definition(&base, dir.path());
    let store_args = StoreArgs::new(dir.path().join("data"), None);
    let http = reqwest::Client::new();
    let flags = ["--source", def.to_str().unwrap()];
    let mut server = start(free_port(), &store_args, &flags);
    wait_healthy(&http, &server.root).await;
    // killed once a few pages are read (20 in all, four requests a second)
    for _ in 0..200 {
        if vendor.lock().unwrap().page_requests >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let read_before = vendor.lock().unwrap().page_requests;
    assert!(read_before < 20, "killed before the reading ended");

    let server = start(free_port(), &store_args, &flags);
    wait_healthy(&http, &server.root).await;
    let settings = Settings::new("127.0.0.1:0", store_args.clone());
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let key = secret(&store).unwrap();
    let versions = || -> Vec<Option<i64>> {
        (1..=40)
            .map(|n| {
                let id = stable_id(
                    key.as_bytes(),
                    "Patient",
                    &["https://pm-sim.example.org/patient-id", &n.to_string()],
                );
                store
                    .read(|c| emrsync::store::versions::current(c, "Patient", &id))
                    .ok()
                    .flatten()
                    .map(|v| v.version_id)
            })
            .collect()
    };
    let mut now = versions();
    for _ in 0..150 {
        if now.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = versions();
    }
    assert_eq!(now, vec![Some(1); 40], "every record once, none twice");
    // the restarted server went on from its cursor: it did not read everything again
    let read_after = vendor.lock().unwrap().page_requests - read_before;
    assert!(
        read_after < 20,
        "{read_after} page requests after the restart"
    );
    drop(server);
}

/// `emrsync source`: `test` shows what records become and writes nothing; `poll` writes, the
/// record with a date the map does not read to the exception queue; once the map is fixed
/// (a second date format), `exceptions --replay` puts it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_command_tries_polls_and_replays_after_a_map_fix() {
    let (base, vendor) = vendor().await;
    vendor.lock().unwrap().patients = vec![
        patient(1, "Nguyen", "03/07/1961", 1),
        patient(2, "Roe", "1975-11-30", 2),
        patient(3, "Okafor", "01/01/1990", 3),
    ];
    let dir = tempfile::tempdir().unwrap();
    let def = definition(&base, dir.path());
    let data = dir.path().join("data");
    let cli = |args: &[&str]| source_cli(&def, &data, args);

    let (ok, shown) = cli(&["test"]);
    assert!(!ok, "a refused record fails the test");
    let lines: Vec<Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one page of two: {shown}");
    assert_eq!(lines[0]["resource"]["birthDate"], "1961-03-07");
    assert_eq!(lines[1]["refused"]["path"], "$.dob");
    let (_, listed) = cli(&["list"]);
    assert!(listed.contains("patient: not read yet"), "{listed}");

    let (ok, said) = cli(&["poll"]);
    assert!(!ok);
    assert!(
        said.contains("2 record(s) in, 1 to the exception queue"),
        "{said}"
    );
    let (_, waiting) = cli(&["exceptions"]);
    let waiting: Vec<Value> = waiting
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["key"], "2");
    assert_eq!(waiting[0]["record"]["dob"], "1975-11-30");

    // replayed with the map as it was: still refused
    let (ok, said) = cli(&["exceptions", "--replay"]);
    assert!(
        !ok && said.contains("0 record(s) in, 1 still waiting"),
        "{said}"
    );
    // the map fixed: the vendor's ISO dates are read too
    let mut fixed: Value = serde_json::from_str(&std::fs::read_to_string(&def).unwrap()).unwrap();
    fixed["records"]["patient"]["map"]["elements"][1]["date"] = json!(["%m/%d/%Y", "%Y-%m-%d"]);
    std::fs::write(&def, fixed.to_string()).unwrap();
    let (ok, said) = cli(&["exceptions", "--replay"]);
    assert!(
        ok && said.contains("1 record(s) in, 0 still waiting"),
        "{said}"
    );
    let (ok, waiting) = cli(&["exceptions"]);
    assert!(ok && waiting.is_empty(), "{waiting}");

    let settings = Settings::new("127.0.0.1:0", StoreArgs::new(data.clone(), None));
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let key = secret(&store).unwrap();
    let id = stable_id(
        key.as_bytes(),
        "Patient",
        &["https://pm-sim.example.org/patient-id", "2"],
    );
    assert_eq!(
        store.current("Patient", &id).unwrap().json()["birthDate"],
        "1975-11-30"
    );
    let (_, listed) = cli(&["list"]);
    assert!(listed.contains("exception queue: 0 waiting"), "{listed}");
}

/// A source whose changes are numbered and whose pages carry ETags: the next reading asks
/// from the newest number as a number (10 after 9, not "9" after "10"), and a reading whose
/// first page has not changed ends at the vendor's 304, nothing fetched or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_changes_and_etags_read_only_what_changed() {
    let (base, vendor) = vendor().await;
    let record = |id: u32, last: &str, seq: i64| json!({"id": id, "last_name": last, "dob": "03/07/1961", "seq": seq});
    vendor.lock().unwrap().patients = vec![
        record(1, "Nguyen", 8),
        record(2, "Roe", 9),
        record(3, "Okafor", 10),
    ];
    let dir = tempfile::tempdir().unwrap();
    let def = json!({
        "name": "pm-seq",
        "baseUrl": base,
        "records": {
            "patient": {
                "endpoint": "/v2/patients",
                "items": "$.items",
                "paging": {"type": "page", "param": "page", "size": 2},
                "changes": {"param": "since_seq", "field": "$.seq"},
                "etag": true,
                "map": {
                    "resourceType": "Patient", "key": "$.id",
                    "identifierSystem": "https://pm-seq.example.org/patient-id",
                    "elements": [
                        {"to": "/name/0/family", "from": "$.last_name", "required": true},
                        {"to": "/birthDate", "from": "$.dob", "date": "%m/%d/%Y"}
                    ]
                }
            }
        }
    });
    let source = Arc::new(Source::of(serde_json::from_value(def).unwrap()).unwrap());
    let (store, mut poller) = poller_on_sqlite(source, dir.path());

    // everything: a full page of two, then the last of one
    let first = poller.poll().await.unwrap();
    assert_eq!((first.pages, first.accepted), (2, 3));
    // the next reading asks from 10, the newest number seen
    let second = poller.poll().await.unwrap();
    assert_eq!((second.pages, second.accepted), (1, 1));
    assert_eq!(vendor.lock().unwrap().asked_since.last(), Some(&10));
    // nothing changed since: the vendor answers 304 and nothing is read
    let third = poller.poll().await.unwrap();
    assert_eq!(third, Polled::default());
    assert_eq!(vendor.lock().unwrap().not_modified, 1);

    // a change at the vendor: the page's ETag no longer holds, the change is read and written
    vendor.lock().unwrap().patients[2] = record(3, "Okafor-Ito", 11);
    let fourth = poller.poll().await.unwrap();
    assert_eq!((fourth.pages, fourth.accepted), (1, 1));
    let key = secret(&store).unwrap();
    let id = stable_id(
        key.as_bytes(),
        "Patient",
        &["https://pm-seq.example.org/patient-id", "3"],
    );
    let current = store.current("Patient", &id).unwrap();
    assert_eq!(current.version_id, 2);
    assert_eq!(current.json()["name"][0]["family"], "Okafor-Ito");
    let v = vendor.lock().unwrap();
    assert_eq!((v.not_modified, v.asked_since.last()), (1, Some(&10)));
}
