//! Black-box test harness: each test starts the real server on a free port with a fresh
//! database (a temporary SQLite file, or a new database on the PostgreSQL server named by
//! EMRSYNC_TEST_POSTGRES, which `scripts/test` starts) and talks to it over real HTTP.

use diesel::prelude::*;
use emrsync::config::{Settings, StoreArgs};
use emrsync::startup::Application;
use emrsync::store::seal::Seal;
use emrsync::store::{Database, DbConnection};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    /// FHIR base URL, e.g. http://127.0.0.1:41234/fhir
    pub base: String,
    pub root: String,
    /// Sends every request with `token` (a `system/*.cruds` access token of this server).
    pub client: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub token: String,
    pub database: Database,
    pub dir: tempfile::TempDir,
    /// The MLLP port, when the test turned HL7v2 on (`settings.mllp`).
    pub mllp: Option<u16>,
    /// The master key the server's secrets are sealed under, when the test gave one.
    pub seal: Option<std::sync::Arc<Seal>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    /// The OperationOutcome's first issue as (code, expression), for error assertions.
    pub fn first_issue(&self) -> (String, String) {
        let oo = self.json();
        assert_eq!(oo["resourceType"], "OperationOutcome", "{}", self.text);
        let i = &oo["issue"][0];
        let expr = i["expression"][0].as_str().unwrap_or("").to_string();
        (i["code"].as_str().unwrap().to_string(), expr)
    }
}

/// The ids of a searchset's matches (not what `_include` added), sorted.
pub fn matched_ids(bundle: &Value) -> Vec<String> {
    sorted(
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] == "match")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// The URL of `bundle`'s link of `relation` (`next`, `previous`, ...), if it has one.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_string())
}

pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with_hooks(backend, tweak, Default::default()).await
}

/// `spawn_with`, with `hooks` on the server's ingest path.
pub async fn spawn_with_hooks(
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
    hooks: emrsync::ingest::Hooks,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database()),
    };
    let store = StoreArgs::new(dir.path().to_path_buf(), database_url);
    let mut settings = Settings::new("127.0.0.1:0", store);
    settings.workers = Some(2);
    // the tests' notification receivers listen on loopback, which a server refuses as an
    // endpoint unless told otherwise (tests of that refusal set this back)
    settings.subscription_endpoint_networks =
        vec![emrsync::config::network("127.0.0.0/8").unwrap()];
    // a second a server in a debug build; the tests of the shipped maps set it back
    settings.no_shipped_terminology = true;
    tweak(&mut settings);
    let database = settings.store.database().unwrap();
    let seal = settings.store.seal().unwrap().map(std::sync::Arc::new);
    let app = Application::build_with(settings, hooks)
        .await
        .expect("server starts");
    let root = format!("http://127.0.0.1:{}", app.port());
    let base = app.base_url().to_string();
    let mllp = app.mllp_port();
    tokio::spawn(app.run_until_stopped());
    // every test speaks to the server as a real client would: with a signed access token
    let token = mint_sealed(&database, &base, "system/*.cruds", None, seal.as_deref());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    // idle connections are dropped well before the server's keep-alive ends them
    let client = |headers| {
        reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(20))
            .default_headers(headers)
            .build()
            .unwrap()
    };
    TestApp {
        base,
        root,
        client: client(headers),
        anonymous: client(Default::default()),
        token,
        database,
        dir,
        mllp,
        seal,
    }
}

/// An access token for the server of `database` at `base`, as `emrsync token` makes one.
pub fn mint(database: &Database, base: &str, scope: &str, patient: Option<&str>) -> String {
    mint_sealed(database, base, scope, patient, None)
}

/// `mint`, for a server whose signing keys are sealed under `seal`.
pub fn mint_sealed(
    database: &Database,
    base: &str,
    scope: &str,
    patient: Option<&str>,
    seal: Option<&Seal>,
) -> String {
    let m = emrsync::auth::Mint {
        subject: "test".into(),
        scope: scope.into(),
        client_id: Some("tests".into()),
        patient: patient.map(str::to_string),
        lifetime: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    emrsync::auth::mint_offline(database, base, &m, seal).expect("mint a token")
}

pub fn fresh_postgres_database() -> String {
    let admin = std::env::var("EMRSYNC_TEST_POSTGRES").expect(
        "EMRSYNC_TEST_POSTGRES is not set: run the suite with scripts/test, which starts a throwaway PostgreSQL",
    );
    let name = format!("emrsync_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::establish(&admin).expect("connect to the test PostgreSQL server");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .unwrap();
    let (prefix, _) = admin
        .rsplit_once('/')
        .expect("EMRSYNC_TEST_POSTGRES ends in /dbname");
    format!("{prefix}/{name}")
}

static CAPTURED: AtomicUsize = AtomicUsize::new(0);

/// When EMRSYNC_TEST_CAPTURE_DIR is set, keep every FHIR JSON body the server sent, so that
/// `scripts/validate_captured.py` can check them with an independent R4 validator.
fn capture(resp: &Resp) {
    let Ok(dir) = std::env::var("EMRSYNC_TEST_CAPTURE_DIR") else {
        return;
    };
    let is_fhir_json = resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/fhir+json"));
    if !is_fhir_json || resp.text.is_empty() {
        return;
    }
    let n = CAPTURED.fetch_add(1, Ordering::Relaxed);
    let path = PathBuf::from(dir).join(format!("{}-{n}.json", std::process::id()));
    std::fs::write(path, &resp.text).unwrap();
}

impl TestApp {
    /// A second store on the server's database, as a command beside it opens one (to run
    /// the retention sweep by hand).
    pub fn store(&self) -> emrsync::store::Store {
        emrsync::store::Store::open(&emrsync::store::StoreSettings {
            seal: None,
            database: self.database.clone(),
            pool_size: 2,
            cache_bytes: 0,
            page_cache_kib: 4096,
            cache_ttl: std::time::Duration::from_secs(1),
        })
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request reaches the server");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let resp = Resp {
            status,
            headers,
            text,
        };
        capture(&resp);
        resp
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    /// Once the MPI's linker has linked every Patient written so far (a link follows its
    /// Patient's write by a batch, `src/identity/linker.rs`).
    pub async fn mpi_settled(&self) {
        for _ in 0..400 {
            let status = self.get_url(&format!("{}/admin/mpi", self.root)).await;
            assert_eq!(status.status, 200, "{}", status.text);
            let status = status.json();
            let settled = [
                "pending",
                "goldenPending",
                "providersPending",
                "providerGoldenPending",
            ]
            .iter()
            .all(|k| status[*k] == 0);
            if settled {
                // the server's version cache takes a written golden record right after its
                // commit, which cleared the mark just read: a read in that instant (a loaded
                // machine's few milliseconds, tens under the whole suite's load) is served the
                // version before
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the MPI's linker left Patients, providers or golden records pending for 10 s");
    }

    pub async fn get_url(&self, url: &str) -> Resp {
        self.send(self.client.get(url)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    /// POST a JSON resource with one extra request header.
    pub async fn post_with(&self, path: &str, body: &Value, header: (&str, &str)) -> Resp {
        let req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .header(header.0, header.1)
            .body(body.to_string());
        self.send(req).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .put(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Create and return (id, body); panics unless 201.
    pub async fn create(&self, body: &Value) -> (String, Value) {
        let rtype = body["resourceType"].as_str().unwrap();
        let r = self.post(rtype, body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let v = r.json();
        (v["id"].as_str().unwrap().to_string(), v)
    }

    /// An access token of this server with `scope` (and a launch patient).
    pub fn token_for(&self, scope: &str, patient: Option<&str>) -> String {
        mint_sealed(
            &self.database,
            &self.base,
            scope,
            patient,
            self.seal.as_deref(),
        )
    }

    /// GET with `token` instead of the default one.
    pub async fn get_as(&self, token: &str, path: &str) -> Resp {
        self.send(self.anonymous.get(self.url(path)).bearer_auth(token))
            .await
    }

    /// A request with `token` instead of the default one, with a FHIR JSON body.
    pub async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self
            .anonymous
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        self.send(req).await
    }

    /// A direct connection to this server's database, to check what was really written.
    pub fn db(&self) -> DbConnection {
        self.database
            .connect()
            .expect("connect to the test database")
    }
}

/// Run one async test body against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::spawn($crate::helpers::Backend::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::spawn($crate::helpers::Backend::Postgres).await).await
                }
            }
        )*
    };
}

/// The FHIR R4 examples package: `EMRSYNC_FHIR_EXAMPLES`, else where `scripts/test` keeps the
/// copy it fetches from the npm registry (`target/fhir-packages/`).
pub fn examples_package() -> PathBuf {
    let path = std::env::var_os("EMRSYNC_FHIR_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz")
        });
    assert!(
        path.exists(),
        "FHIR examples package not found at {}: run the suite with scripts/test, or set EMRSYNC_FHIR_EXAMPLES",
        path.display()
    );
    path
}

/// Run one async test body against SQLite and against PostgreSQL, on a server that `$spawn`
/// (a function of this module's parent taking a `Backend`) starts.
#[macro_export]
macro_rules! on_both_backends_with {
    ($spawn:ident, $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::$spawn($crate::helpers::Backend::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::$spawn($crate::helpers::Backend::Postgres).await).await
                }
            }
        )*
    };
}

/// A store opened directly on an embedded database under `dir`, no server and no background
/// task running (tests that need changes or jobs left pending), and the context of the writes
/// made to it.
pub fn store_in(dir: &std::path::Path) -> (emrsync::store::Store, emrsync::store::WriteContext) {
    use emrsync::auth::Grant;
    let settings = Settings::new("127.0.0.1:0", StoreArgs::new(dir.to_path_buf(), None));
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let ctx = emrsync::subscriptions::write_rules::context(
        "t".into(),
        emrsync::store::Actor::named("test"),
        std::sync::Arc::new(Grant::unrestricted()),
        Default::default(),
    );
    (store, ctx)
}

/// Write `body` as `rtype/id` (PUT) in a store opened by `store_in`.
pub fn put_in(
    store: &emrsync::store::Store,
    ctx: &emrsync::store::WriteContext,
    rtype: &str,
    id: &str,
    body: Value,
) {
    use emrsync::fhir::resource::FhirId;
    use emrsync::store::{Method, write};
    let id = FhirId::parse(id).unwrap();
    store
        .write(|tx| write::put(tx, rtype, &id, body, Method::Put, None, ctx))
        .unwrap();
}

/// An admin `ops` made and signed in to the dashboard: a client that does not follow
/// redirects, and the session's cookie (`name=value`).
pub async fn admin_session(app: &TestApp) -> (reqwest::Client, String) {
    emrsync::auth::users::add(&mut app.db(), "ops", "s3cret-pass", "Practitioner/ops").unwrap();
    emrsync::auth::users::grant(&mut app.db(), "ops", "admin").unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/admin/login", app.root))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=ops&password=s3cret-pass&next=%2Fadmin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    (http, cookie)
}
