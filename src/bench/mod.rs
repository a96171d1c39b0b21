//! `emrsync bench`: a load tool that drives a running server over real HTTP with N concurrent
//! clients and prints throughput and latency percentiles per scenario. It measures; it asserts
//! nothing. `scripts/bench` runs it against fresh SQLite and PostgreSQL servers.

mod data;
mod export;
mod matching;
mod mllp;
mod notify;
mod search;
mod stats;
mod stream;
mod sync_out;
mod terminology;
mod vendor;

use anyhow::Context;
use clap::{Args, ValueEnum};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use stats::Sample;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// FHIR base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,

    /// Concurrent clients, each sending one request at a time.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,

    /// How long each scenario runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,

    /// Scenarios to run, in order (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,read,update,transaction"
    )]
    pub scenario: Vec<Scenario>,

    /// Entries per transaction Bundle.
    #[arg(long, default_value_t = 100)]
    pub bundle_size: usize,

    /// Resources created before `read` and `update` run (they pick among these at random).
    #[arg(long, default_value_t = 2000)]
    pub population: usize,

    /// Patients in the search data set (`search-data` loads them, each with 10 Observations,
    /// 2 Encounters and a Condition; the search scenarios pick among them).
    #[arg(long, default_value_t = 100_000)]
    pub patients: usize,

    /// The first Patient a load writes: a load cut short is resumed where it stopped (the
    /// Patients before it are taken as loaded).
    #[arg(long, default_value_t = 0)]
    pub patients_from: usize,

    /// Concepts of the terminology benchmark's generated code system.
    #[arg(long, default_value_t = 100_000)]
    pub concepts: usize,

    /// Write the generated code system as RF2 Snapshot files into this folder, and exit.
    #[arg(long)]
    pub write_release: Option<std::path::PathBuf>,

    /// A PEM certificate to trust for an https --url (a test server's self-signed one).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Bearer token to send (for a server that is not in --insecure-dev mode).
    #[arg(long, env = "EMRSYNC_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The Backend Services client the `token` scenario authenticates as.
    #[arg(long, default_value = "bench")]
    pub client_id: String,

    /// Its ES384 private key (PKCS#8 PEM, from `emrsync client keygen`).
    #[arg(long)]
    pub client_key: Option<std::path::PathBuf>,

    /// The `kid` its registered JWK Set gives that key.
    #[arg(long, default_value = "key-1")]
    pub client_kid: String,

    /// Subscriptions the `notify` scenario creates (each on its own Patient).
    #[arg(long, default_value_t = 100)]
    pub subscriptions: usize,

    /// Writes per second the `notify` scenario offers.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,

    /// The `mllp-notify` subscriber's maxCount: events one notification may carry.
    #[arg(long, default_value_t = 1)]
    pub max_count: u32,

    /// Subscriptions the `fanout` scenario creates (all on one Patient).
    #[arg(long, default_value_t = 1000)]
    pub fanout: usize,

    /// Subscriptions listening (to every Patient change, matching none) while the other
    /// scenarios run: what listening subscriptions cost writes.
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,

    /// The server's MLLP listener, for the `mllp` scenario.
    #[arg(long = "mllp", default_value = "127.0.0.1:2575")]
    pub mllp_addr: String,

    /// The event stream's broker, for the `stream` scenario.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,

    /// The event stream's name, for the `stream` scenario.
    #[arg(long, default_value = "EMRSYNC")]
    pub stream_name: String,

    /// The `vendor` scenario's simulated API: the port the server's source definition names.
    #[arg(long, default_value_t = 0)]
    pub vendor_port: u16,

    /// The `vendor` scenario's source (its webhook is `/adapters/<name>/webhook`).
    #[arg(long, default_value = "bench-vendor")]
    pub vendor_source: String,

    /// The file holding the source's webhook secret.
    #[arg(long)]
    pub vendor_secret_file: Option<std::path::PathBuf>,

    /// Webhook deliveries the `vendor` scenario sends (and a fifth as many polled changes).
    #[arg(long, default_value_t = 500)]
    pub changes: usize,

    /// A label printed with the figures (e.g. "sqlite", "postgres").
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// POST one Patient.
    Create,
    /// POST one Patient to `Patient/$validate`: a create's checks, nothing stored.
    Validate,
    /// GET one existing Patient by id.
    Read,
    /// PUT a changed version of an existing Patient.
    Update,
    /// POST a transaction Bundle: one Patient and Observations that reference it by urn:uuid.
    Transaction,
    /// Load the search data set (`--patients`), timed as a whole.
    SearchData,
    /// `Patient?family=` (about 100 matches).
    SearchFamily,
    /// `Patient?identifier=system|value`.
    SearchIdentifier,
    /// `Observation?patient=X&code=Y&date=ge...`.
    SearchPatientCodeDate,
    /// `Observation?code=...&_sort=-date&_count=10` (about 1 in 7 Observations match).
    SearchCodeSorted,
    /// `Encounter?patient=X&_include=Encounter:subject`.
    SearchInclude,
    /// `Patient?_has:Observation:patient:code=...` (a lab code of about 0.1% of Observations).
    SearchHas,
    /// `Patient?_text="..."`: a problem the narratives name (about 1 in 20 match).
    SearchText,
    /// `Patient?_content=given family`: a person's words anywhere in their record (a few match).
    SearchContent,
    /// Load `--patients` Patients into the master patient index (transactions of 100) and
    /// wait until every one is linked.
    MatchData,
    /// `POST Patient/$match`: a loaded Patient with its family name mistyped, no identifier.
    Match,
    /// `POST /auth/token`: client_credentials with a fresh ES384 client assertion each time.
    Token,
    /// Updates at `--rate` per second, each matching one of `--subscriptions` subscriptions:
    /// write-to-notification latency at a loopback REST hook.
    Notify,
    /// One change matching `--fanout` subscriptions: the time until the last is notified.
    Fanout,
    /// Observations written at `--rate` per second in transactions of `--bundle-size` (1:
    /// single creates), read back from the event stream (`--nats`, `--stream-name`):
    /// commit-to-consumer latency.
    Stream,
    /// HL7v2 ADT messages over MLLP from `--clients` senders, each waiting for its ACK.
    Mllp,
    /// HL7v2 ORU^R01 lab results with the lab's own codes (five OBX each, local test codes and
    /// units) from `--clients` senders: what normalising codes costs ingest
    /// (`scripts/bench-normalise`).
    MllpLab,
    /// HL7v2 ADT messages offered at `--rate` per second over `--clients` connections, with a
    /// REST-hook subscriber: MLLP send-to-notification latency.
    MllpNotify,
    /// Sync out to a target EMR the bench runs (an MLLP receiver): a queue filled while it was
    /// down drained (outbound messages/s), then receipt-to-target-ACK latency at `--rate`.
    SyncOut,
    /// `CodeSystem/$lookup` of a random concept of the generated code system (`--concepts`,
    /// imported first: `scripts/bench-terminology`).
    TermLookup,
    /// `ValueSet/$validate-code` of a random concept against a value set of all of them.
    TermValidate,
    /// `ConceptMap/$translate` of a random local code (a map of 10,000).
    TermTranslate,
    /// `ValueSet/$expand` of the whole system with a two-word text filter, 10 results.
    TermExpand,
    /// A vendor's change to a subscriber's notification: signed webhooks, then changes the
    /// server finds by polling the simulated API (`scripts/bench-vendor`).
    Vendor,
    /// A system Bulk Data `$export` of what the server holds, kicked off, polled and
    /// downloaded, while `--clients` tasks read Patients by id (`bench::export`).
    Export,
}

/// What one request did: how long it took, and how many resources it wrote or read.
struct Outcome {
    latency: Duration,
    ok: bool,
    resources: u64,
}

/// A scenario's shared setup: the client, the URL, and the ids that reads and updates use.
struct Target {
    client: Client,
    base: String,
    token: Option<String>,
    ids: Vec<String>,
    bundle_size: usize,
    clients: usize,
    patients: usize,
    patients_from: usize,
    concepts: usize,
    /// client id, kid and signing key of the `token` scenario
    assertion: Option<(String, String, jsonwebtoken::EncodingKey)>,
}

impl Target {
    /// A request to `url` (outside the FHIR base: `/admin/...`) with the token.
    fn request_url(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .request(method, format!("{}/{path}", self.base))
            .header("accept", "application/fhir+json");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Send `req`: whether it succeeded (any 2xx), and the body.
    async fn send_any(&self, req: reqwest::RequestBuilder) -> (bool, Value) {
        match req.send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                (ok, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(e) => (false, Value::String(e.to_string())),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, expect: StatusCode) -> (bool, Value) {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.json::<Value>().await.unwrap_or(Value::Null);
                (status == expect, body)
            }
            Err(_) => (false, Value::Null),
        }
    }

    async fn one(&self, scenario: Scenario, client_no: usize, n: u64) -> Outcome {
        let started = Instant::now();
        let (ok, resources) = match scenario {
            Scenario::Create => {
                let body = data::patient(None, n);
                let req = self
                    .request(reqwest::Method::POST, "Patient")
                    .json_fhir(&body);
                (self.send(req, StatusCode::CREATED).await.0, 1)
            }
            Scenario::Validate => {
                let body = data::patient(None, n);
                let req = self
                    .request(reqwest::Method::POST, "Patient/$validate")
                    .json_fhir(&body);
                let (ok, outcome) = self.send(req, StatusCode::OK).await;
                // a 200 that reports an error is a failed check of a valid Patient
                let clean = outcome["issue"]
                    .as_array()
                    .is_some_and(|i| i.iter().all(|i| i["severity"] != "error"));
                (ok && clean, 1)
            }
            Scenario::Read => {
                let id = &self.ids[fastrand::usize(..self.ids.len())];
                let req = self.request(reqwest::Method::GET, &format!("Patient/{id}"));
                (self.send(req, StatusCode::OK).await.0, 1)
            }
            Scenario::Update => {
                // each client owns a slice of the ids, so updates never race each other
                let share = self.ids.len() / self.clients.max(1);
                let id = &self.ids[client_no * share + fastrand::usize(..share.max(1))];
                let body = data::patient(Some(id), n);
                let req = self
                    .request(reqwest::Method::PUT, &format!("Patient/{id}"))
                    .json_fhir(&body);
                (self.send(req, StatusCode::OK).await.0, 1)
            }
            Scenario::Transaction => {
                let body = data::transaction(self.bundle_size, n);
                let req = self.request(reqwest::Method::POST, "").json_fhir(&body);
                let (ok, resp) = self.send(req, StatusCode::OK).await;
                let written = resp["entry"].as_array().map(Vec::len).unwrap_or(0);
                (ok && written == self.bundle_size, written as u64)
            }
            Scenario::Token => (self.token_request().await, 1),
            Scenario::SearchData => unreachable!("the data set is loaded by search::load"),
            Scenario::MatchData => unreachable!("the index is loaded by matching::load"),
            Scenario::Match => {
                let asked = matching::asked(fastrand::usize(..self.patients.max(1)));
                let req = self
                    .request(reqwest::Method::POST, "Patient/$match")
                    .json_fhir(&asked);
                let (ok, resp) = self.send(req, StatusCode::OK).await;
                let found = resp["entry"].as_array().map(Vec::len).unwrap_or(0);
                (ok && found > 0, found as u64)
            }
            Scenario::TermLookup
            | Scenario::TermValidate
            | Scenario::TermTranslate
            | Scenario::TermExpand => {
                let query = terminology::query(scenario, self.concepts);
                let req = self.request(reqwest::Method::GET, &query);
                let (ok, resp) = self.send(req, StatusCode::OK).await;
                // a $validate-code or $translate that says no is a wrong answer here
                let answered = resp["parameter"][0]["valueBoolean"] != false;
                (ok && answered, 1)
            }
            Scenario::Notify | Scenario::Fanout => unreachable!("run by bench::notify"),
            Scenario::Stream => unreachable!("run by bench::stream"),
            Scenario::Export => unreachable!("run by bench::export"),
            Scenario::Vendor => unreachable!("run by bench::vendor"),
            Scenario::Mllp | Scenario::MllpLab | Scenario::MllpNotify | Scenario::SyncOut => {
                unreachable!("run by bench::mllp and bench::sync_out")
            }
            _ => {
                let query = search::query(scenario, self.patients);
                let req = self.request(reqwest::Method::GET, &query);
                let (ok, resp) = self.send(req, StatusCode::OK).await;
                let entries = resp["entry"].as_array().map(Vec::len).unwrap_or(0);
                (ok, entries as u64)
            }
        };
        Outcome {
            latency: started.elapsed(),
            ok,
            resources,
        }
    }
}

impl Target {
    /// One client_credentials request with a fresh assertion; true when a token came back.
    async fn token_request(&self) -> bool {
        let Some((client_id, kid, key)) = &self.assertion else {
            return false;
        };
        let origin = self.base.strip_suffix("/fhir").unwrap_or(&self.base);
        let url = format!("{origin}/auth/token");
        let now = crate::auth::now_secs();
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": url,
            "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string()
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(kid.clone());
        let Ok(jwt) = jsonwebtoken::encode(&header, &claims, key) else {
            return false;
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
            (
                "client_assertion_type",
                crate::auth::backend::ASSERTION_TYPE,
            ),
            ("client_assertion", &jwt),
        ];
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap_or_default())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v["access_token"].is_string()),
            _ => false,
        }
    }
}

trait JsonFhir {
    fn json_fhir(self, body: &Value) -> Self;
}

impl JsonFhir for reqwest::RequestBuilder {
    fn json_fhir(self, body: &Value) -> Self {
        self.header("content-type", "application/fhir+json")
            .body(body.to_string())
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.write_release {
        terminology::write_release(dir, args.concepts)?;
        println!(
            "{} concepts written as RF2 files in {}",
            args.concepts,
            dir.display()
        );
        return Ok(());
    }
    let mut builder = Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .timeout(Duration::from_secs(60));
    if let Some(ca) = &args.tls_ca {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca)?)?]);
    }
    let client = builder.build()?;
    let base = args.url.trim_end_matches('/').to_string();
    let mut target = Target {
        client,
        base,
        token: args.token.clone(),
        ids: Vec::new(),
        bundle_size: args.bundle_size,
        clients: args.clients,
        patients: args.patients,
        patients_from: args.patients_from,
        concepts: args.concepts,
        assertion: match &args.client_key {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem)
                    .with_context(|| format!("{} is not an EC private key", path.display()))?;
                Some((args.client_id.clone(), args.client_kid.clone(), key))
            }
            None => None,
        },
    };
    anyhow::ensure!(
        !args.scenario.contains(&Scenario::Token) || target.assertion.is_some(),
        "the token scenario needs --client-key (see emrsync client keygen)"
    );
    check_server(&target).await?;
    println!(
        "emrsync bench {} against {} — {} clients, {} s per scenario",
        args.label, target.base, args.clients, args.seconds
    );
    let watchers = match args.watchers {
        0 => Vec::new(),
        n => {
            let ids = notify::watch(&target, n).await?;
            println!("({n} subscriptions listening to every Patient change, matching none)");
            ids
        }
    };
    println!("{}", Sample::header());
    let mut terminology_ready = false;
    for scenario in &args.scenario {
        if matches!(
            scenario,
            Scenario::Read | Scenario::Update | Scenario::Export
        ) && target.ids.is_empty()
        {
            target.ids = populate(&target, args.population).await?;
        }
        let shared = Arc::new(target);
        if *scenario == Scenario::Notify {
            notify::notify(shared.clone(), args.subscriptions, args.rate, args.seconds).await?;
            target = Arc::into_inner(shared).expect("every writer task has finished");
            continue;
        }
        if *scenario == Scenario::Stream {
            let broker = stream::Broker {
                url: &args.nats,
                stream: &args.stream_name,
            };
            let load = (args.rate, args.bundle_size, args.seconds);
            stream::run(shared.clone(), broker, load).await?;
            target = Arc::into_inner(shared).expect("every writer task has finished");
            continue;
        }
        if *scenario == Scenario::Fanout {
            notify::fanout(shared.clone(), args.fanout).await?;
            target = Arc::into_inner(shared).expect("every writer task has finished");
            continue;
        }
        if matches!(scenario, Scenario::Mllp | Scenario::MllpLab) {
            let lab = *scenario == Scenario::MllpLab;
            mllp::run(&args.mllp_addr, args.clients, args.seconds, lab).await?;
            target = Arc::into_inner(shared).expect("nothing else holds the target");
            continue;
        }
        if *scenario == Scenario::SyncOut {
            let addr = args.mllp_addr.clone();
            sync_out::run(shared.clone(), &addr, args.clients, args.rate, args.seconds).await?;
            target = Arc::into_inner(shared).expect("every sender has finished");
            continue;
        }
        if *scenario == Scenario::MllpNotify {
            let addr = args.mllp_addr.clone();
            let load = mllp::Load {
                clients: args.clients,
                rate: args.rate,
                seconds: args.seconds,
                max_count: args.max_count,
            };
            mllp::notify(shared.clone(), &addr, load).await?;
            target = Arc::into_inner(shared).expect("every sender has finished");
            continue;
        }
        if *scenario == Scenario::Vendor {
            let file = args
                .vendor_secret_file
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("the vendor scenario needs --vendor-secret-file"))?;
            let vendor = vendor::Vendor {
                port: args.vendor_port,
                source: &args.vendor_source,
                secret: std::fs::read_to_string(file)?,
            };
            vendor::run(shared.clone(), vendor, args.changes).await?;
            target = Arc::into_inner(shared).expect("nothing else holds the target");
            continue;
        }
        if *scenario == Scenario::Export {
            export::run(shared.clone()).await?;
            target = Arc::into_inner(shared).expect("every reader has finished");
            continue;
        }
        if *scenario == Scenario::MatchData {
            matching::load(shared.clone(), args.patients).await?;
            target = Arc::into_inner(shared).expect("every loader task has finished");
            continue;
        }
        if matches!(
            scenario,
            Scenario::TermLookup
                | Scenario::TermValidate
                | Scenario::TermTranslate
                | Scenario::TermExpand
        ) && !terminology_ready
        {
            terminology::setup(&shared, args.concepts).await?;
            terminology_ready = true;
        }
        if *scenario == Scenario::SearchData {
            search::load(shared.clone(), args.patients).await?;
            target = Arc::into_inner(shared).expect("every loader task has finished");
            continue;
        }
        let sample = drive(shared.clone(), *scenario, args.seconds).await;
        target = Arc::into_inner(shared).expect("every client task has finished");
        println!("{}", sample.row(&format!("{scenario:?}").to_lowercase()));
    }
    notify::unwatch(&target, &watchers).await;
    Ok(())
}

async fn check_server(t: &Target) -> anyhow::Result<()> {
    let resp = t
        .request(reqwest::Method::GET, "metadata")
        .send()
        .await
        .with_context(|| format!("no server answers at {}", t.base))?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{}/metadata answered {}",
        t.base,
        resp.status()
    );
    Ok(())
}

/// Create `n` Patients (in transactions of 100) for reads and updates to use.
async fn populate(t: &Target, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let size = (n - ids.len()).min(100);
        let bundle = data::patients_transaction(size, ids.len() as u64);
        let req = t.request(reqwest::Method::POST, "").json_fhir(&bundle);
        let (ok, resp) = t.send(req, StatusCode::OK).await;
        anyhow::ensure!(ok, "could not create the bench population: {resp}");
        for e in resp["entry"].as_array().into_iter().flatten() {
            let loc = e["response"]["location"].as_str().unwrap_or("");
            if let Some(id) = loc.split('/').nth(1) {
                ids.push(id.to_string());
            }
        }
    }
    Ok(ids)
}

/// Run `scenario` from `clients` concurrent tasks for `seconds`, and gather their figures.
async fn drive(target: Arc<Target>, scenario: Scenario, seconds: u64) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(target.clients);
    for client_no in 0..target.clients {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = (client_no as u64) << 32;
            while Instant::now() < deadline {
                outcomes.push(t.one(scenario, client_no, n).await);
                n += 1;
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    Sample::from_outcomes(
        all.iter().map(|o| (o.latency, o.ok, o.resources)).collect(),
        elapsed,
    )
}
