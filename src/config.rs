//! One typed configuration for `serve` (and the commands that open the store): each flag has an
//! environment twin, shown by `emrsync serve --help`.

use crate::store::file_cipher::FileKey;
use crate::store::secret::Secret;
use crate::store::{Database, StoreSettings};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives: shared by `serve`, `migrate` and the other commands that open it.
/// The flags are global: `client --data-dir D add` and `client add --data-dir D` alike.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite database (used when no database URL is given).
    #[arg(
        long,
        global = true,
        env = "EMRSYNC_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (postgres://user:pass@host:port/db) to run on PostgreSQL instead of SQLite;
    /// sqlite://PATH picks an SQLite file explicitly.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_parser = crate::store::secret::parse
    )]
    pub database_url: Option<Secret<String>>,

    /// A file holding the master key (base64 of 32 random bytes: `openssl rand -base64 32`)
    /// that encrypts the embedded SQLite database (a database kept in clear is encrypted at the
    /// first start with one) and seals the secrets kept in either database, the token signing
    /// keys among them; or the key itself in EMRSYNC_MASTER_KEY (never a flag: the process list
    /// is readable by all). Without one they are kept in clear, and the server says so at start.
    #[arg(long, global = true, env = "EMRSYNC_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// Never the database URL as given: its password would reach whatever prints the settings.
impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self
                    .database_url
                    .as_ref()
                    .map(|u| crate::store::db::redacted(u.expose())),
            )
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

impl StoreArgs {
    /// Where the data is, with no master key.
    pub fn new(data_dir: PathBuf, database_url: Option<String>) -> StoreArgs {
        StoreArgs {
            data_dir,
            database_url: database_url.map(Secret::new),
            master_key_file: None,
        }
    }

    /// The database; with a master key an SQLite file is encrypted under a key derived from it.
    pub fn database(&self) -> anyhow::Result<Database> {
        let key = self.seal()?.map(|s| FileKey::from_seal(&s));
        Ok(Database::from_settings(
            self.database_url.as_ref().map(|u| u.expose().as_str()),
            &self.data_dir,
        )?
        .with_file_key(key))
    }

    /// The operator's master key, when one is given.
    pub fn seal(&self) -> anyhow::Result<Option<crate::store::seal::Seal>> {
        crate::store::seal::Seal::from_operator(self.master_key_file.as_deref())
    }
}

/// Everything `emrsync serve` needs.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Address and port the HTTP server listens on (port 0 picks a free one).
    #[arg(long, env = "EMRSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Public FHIR base URL used in Location headers, links and fullUrls
    /// [default: http://<listen>/fhir].
    #[arg(long, env = "EMRSYNC_BASE_URL")]
    pub base_url: Option<String>,

    /// Serve HTTP over TLS with this certificate chain (PEM); needs --tls-key. Answers then
    /// carry Strict-Transport-Security.
    #[arg(long, env = "EMRSYNC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "EMRSYNC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve FHIR without authentication. For local development only: logged loudly at start.
    #[arg(long, env = "EMRSYNC_INSECURE_DEV")]
    pub insecure_dev: bool,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "EMRSYNC_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies the server holds at once, over all requests (at least
    /// --max-body-bytes); a body that would pass it waits for room, or gets 503 with
    /// Retry-After when it grows past what it declared.
    #[arg(long, env = "EMRSYNC_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes_in_flight: usize,

    /// Most entries a batch or transaction Bundle may have; a larger one gets 413 before any
    /// entry runs (each entry is a request's worth of work).
    #[arg(long, env = "EMRSYNC_MAX_BUNDLE_ENTRIES", default_value_t = 5_000)]
    pub max_bundle_entries: usize,

    /// Write requests (creates, updates, patches, deletes, Bundles) carried out at once; more
    /// are answered 503 with `Retry-After` at once, rather than queued without bound behind
    /// the database's writer.
    #[arg(long, env = "EMRSYNC_MAX_WRITES_IN_FLIGHT", default_value_t = 512)]
    pub max_writes_in_flight: usize,

    /// Seconds a shutdown (SIGTERM, SIGINT) gives requests and HL7v2 messages in hand to
    /// finish; new connections are refused from its start.
    #[arg(long, env = "EMRSYNC_SHUTDOWN_SECS", default_value_t = 20)]
    pub shutdown_secs: u64,

    /// Requests a second one address may send to `/auth/*` (sign-in, token, introspection),
    /// with bursts of twice that; more get 429 with Retry-After. 0: no limit.
    #[arg(long, env = "EMRSYNC_AUTH_RATE", default_value_t = 20)]
    pub auth_rate: u32,

    /// Webhook deliveries a second one address may send to `/adapters/<source>/webhook`,
    /// with bursts of twice that; more get 429 with Retry-After. 0: no limit.
    #[arg(long, env = "EMRSYNC_WEBHOOK_RATE", default_value_t = 200)]
    pub webhook_rate: u32,

    /// Failed sign-ins or client-secret checks in a row after which that user or client is
    /// locked: 30 s, doubling with each further failure up to 15 min; every attempt meanwhile
    /// gets 429 before any password is checked.
    #[arg(long, env = "EMRSYNC_LOCKOUT_AFTER", default_value_t = 5)]
    pub lockout_after: u32,

    /// Failed credential checks from one address after which the address is locked, as above
    /// (it may be trying many accounts).
    #[arg(long, env = "EMRSYNC_LOCKOUT_ADDRESS_AFTER", default_value_t = 20)]
    pub lockout_address_after: u32,

    /// Requests a second one client (a token's client, or its subject) may send to the FHIR
    /// API, with bursts of twice that; a batch or transaction counts one per entry. More get
    /// 429 with Retry-After. 0: no limit.
    #[arg(long, env = "EMRSYNC_API_RATE", default_value_t = 0)]
    pub api_rate: u32,

    /// Database connections in the pool [default: 16 on PostgreSQL, 8 on SQLite].
    #[arg(long, env = "EMRSYNC_POOL_SIZE")]
    pub pool_size: Option<u32>,

    /// MiB of resources kept in the read cache (0 turns it off).
    #[arg(long, env = "EMRSYNC_CACHE_MIB", default_value_t = 64)]
    pub cache_mib: u64,

    /// MiB of page cache for each SQLite connection of the pool (the writer keeps 16).
    #[arg(long, env = "EMRSYNC_PAGE_CACHE_MIB", default_value_t = 8)]
    pub page_cache_mib: u32,

    /// Seconds a cached resource may be served; with several processes on one PostgreSQL this
    /// bounds how stale a read of another process's write can be [default: 300 SQLite, 2 PostgreSQL].
    #[arg(long, env = "EMRSYNC_CACHE_TTL_SECS")]
    pub cache_ttl_secs: Option<u64>,

    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "EMRSYNC_WORKERS")]
    pub workers: Option<usize>,

    /// An external identity provider whose access tokens are accepted (its `iss`).
    #[arg(long, env = "EMRSYNC_IDP_ISSUER", requires = "idp_jwks_uri")]
    pub idp_issuer: Option<String>,

    /// Where that provider publishes its signing keys (a JWK Set).
    #[arg(long, env = "EMRSYNC_IDP_JWKS_URI", requires = "idp_issuer")]
    pub idp_jwks_uri: Option<String>,

    /// The `aud` the provider's tokens carry for this server [default: the FHIR base URL].
    #[arg(long, env = "EMRSYNC_IDP_AUDIENCE")]
    pub idp_audience: Option<String>,

    /// Only send Subscription notifications to endpoints under one of these URLs: the same
    /// scheme, host and port, and a path at or below (repeat the flag, or separate with
    /// commas) [default: any http or https endpoint outside the internal networks].
    #[arg(
        long,
        env = "EMRSYNC_SUBSCRIPTION_ENDPOINT_ALLOW",
        value_delimiter = ','
    )]
    pub subscription_endpoint_allow: Vec<url::Url>,

    /// Internal networks (loopback, private, link-local) notifications may nevertheless go
    /// to, e.g. `10.20.0.0/16` for an interface engine inside the hospital [default: none:
    /// such endpoints are refused, at write time and at every connection].
    #[arg(
        long,
        env = "EMRSYNC_SUBSCRIPTION_ENDPOINT_NETWORKS",
        value_delimiter = ',',
        value_parser = network
    )]
    pub subscription_endpoint_networks: Vec<ipnet::IpNet>,

    /// The longest wait, in seconds, between two attempts to deliver a notification.
    #[arg(
        long,
        env = "EMRSYNC_SUBSCRIPTION_RETRY_MAX_SECS",
        default_value_t = 60
    )]
    pub subscription_retry_max_secs: u64,

    /// Failed deliveries in a row after which a subscription shows `error` (it keeps its
    /// events and recovers when its endpoint answers again).
    #[arg(long, env = "EMRSYNC_SUBSCRIPTION_ERROR_AFTER", default_value_t = 5)]
    pub subscription_error_after: i32,

    /// Listen for HL7v2 over MLLP on this address (e.g. 0.0.0.0:2575) [default: off].
    #[arg(long, env = "EMRSYNC_MLLP")]
    pub mllp: Option<String>,

    /// Largest HL7v2 message accepted over MLLP, in bytes (a larger one gets an AR).
    #[arg(long, env = "EMRSYNC_MLLP_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub mllp_max_bytes: usize,

    /// Seconds an MLLP connection may stay silent before it is closed.
    #[arg(long, env = "EMRSYNC_MLLP_IDLE_SECS", default_value_t = 300)]
    pub mllp_idle_secs: u64,

    /// Only these addresses or networks may connect to the MLLP port (repeat the flag, or
    /// separate with commas: `10.1.0.0/16,192.0.2.7`) [default: any].
    #[arg(long, env = "EMRSYNC_MLLP_ALLOW", value_delimiter = ',', value_parser = network)]
    pub mllp_allow: Vec<ipnet::IpNet>,

    /// MLLP connections open at once, in all; more are closed on arrival.
    #[arg(long, env = "EMRSYNC_MLLP_MAX_CONNECTIONS", default_value_t = 256)]
    pub mllp_max_connections: usize,

    /// MLLP connections open at once from one address.
    #[arg(
        long,
        env = "EMRSYNC_MLLP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 16
    )]
    pub mllp_max_connections_per_address: usize,

    /// Bytes of unfinished MLLP frames held over all connections (one address may hold a
    /// quarter); a connection that would pass it gets an AR and is closed.
    #[arg(long, env = "EMRSYNC_MLLP_MAX_BUFFERED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub mllp_max_buffered_bytes: usize,

    /// HL7v2 messages a second one address may send over MLLP, with bursts of twice that;
    /// a faster sender is slowed down (its next message is read later), not refused. 0: no
    /// limit.
    #[arg(long, env = "EMRSYNC_MLLP_RATE", default_value_t = 0)]
    pub mllp_rate: u32,

    /// Serve MLLP over TLS with this certificate chain (PEM); needs --mllp-tls-key.
    #[arg(long, env = "EMRSYNC_MLLP_TLS_CERT", requires = "mllp_tls_key")]
    pub mllp_tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --mllp-tls-cert.
    #[arg(long, env = "EMRSYNC_MLLP_TLS_KEY", requires = "mllp_tls_cert")]
    pub mllp_tls_key: Option<std::path::PathBuf>,

    /// With MLLP over TLS: senders must present a client certificate signed by this CA (PEM),
    /// or the handshake fails: only senders the hospital issued a certificate to get in.
    #[arg(long, env = "EMRSYNC_MLLP_TLS_CLIENT_CA", requires = "mllp_tls_cert")]
    pub mllp_tls_client_ca: Option<PathBuf>,

    /// Answer every HL7v2 message with one original-mode ACK, ignoring what MSH-15 and MSH-16
    /// ask for (enhanced-mode accept and application ACKs are sent as they ask by default).
    #[arg(long, env = "EMRSYNC_MLLP_ORIGINAL_ACKS")]
    pub mllp_original_acks: bool,

    /// Days an HL7v2 message stays in the archive once applied, refused or replayed (those
    /// waiting in the exception queue stay until replayed); 0 keeps them for ever.
    #[arg(long, env = "EMRSYNC_HL7V2_ARCHIVE_DAYS", default_value_t = 90)]
    pub hl7v2_archive_days: u32,

    /// The time zone of HL7v2 times that carry no offset, when MSH-7 gives none and the
    /// sending facility has no zone of its own: an IANA name (`America/Chicago`, which follows
    /// summer time) or an offset (`-05:00`).
    #[arg(long, env = "EMRSYNC_HL7V2_TIME_ZONE", default_value = "UTC", value_parser = crate::adapters::hl7v2::zone::Zone::parse)]
    pub hl7v2_time_zone: crate::adapters::hl7v2::zone::Zone,

    /// A sending facility's time zone, as `FACILITY=ZONE` with FACILITY as MSH-4 names it
    /// (repeat the flag, or separate with commas).
    #[arg(
        long,
        env = "EMRSYNC_HL7V2_FACILITY_TIME_ZONES",
        value_delimiter = ',',
        value_parser = crate::adapters::hl7v2::zone::facility_zone
    )]
    pub hl7v2_facility_time_zone: Vec<(String, crate::adapters::hl7v2::zone::Zone)>,

    /// The master patient index's match model (weights, grades, guards), in place of the
    /// shipped `capability/mpi/model.json`; one that does not parse refuses the start, saying
    /// where (see docs/identity.md for estimating one from your own Patients).
    #[arg(long, env = "EMRSYNC_MPI_MODEL")]
    pub mpi_model: Option<std::path::PathBuf>,

    /// The survivorship rules golden records are built by (a JSON file), in place of the
    /// shipped `capability/mpi/golden.json`; one that does not parse refuses the start, saying
    /// where (see docs/identity.md).
    #[arg(long, env = "EMRSYNC_MPI_GOLDEN")]
    pub mpi_golden: Option<std::path::PathBuf>,

    /// Run without the master patient index and the provider registry: Patients and providers
    /// are neither filed nor linked, no golden record is written, and `Patient/$match` is
    /// refused (501). For a deployment that keeps identity elsewhere, and to measure what
    /// matching costs writes (docs/performance.md).
    #[arg(long, env = "EMRSYNC_NO_MPI")]
    pub no_mpi: bool,

    /// FHIR packages (`.tgz` as published on the npm registry, or folders of JSON files) whose
    /// CodeSystems, ValueSets and ConceptMaps are loaded at start-up; one already loaded with
    /// the same bytes is skipped (repeat the flag, or separate paths with commas).
    #[arg(
        long = "terminology-package",
        env = "EMRSYNC_TERMINOLOGY_PACKAGES",
        value_delimiter = ','
    )]
    pub terminology_packages: Vec<std::path::PathBuf>,

    /// Start without loading the terminology every server carries (the v2-to-FHIR IG's code
    /// maps as ConceptMaps, `capability/terminology/`); what an earlier start loaded stays.
    /// For test servers, which start by the hundred and most never translate a v2 code.
    #[arg(long, env = "EMRSYNC_NO_SHIPPED_TERMINOLOGY")]
    pub no_shipped_terminology: bool,

    /// Routes to target systems (sync out, docs/routing.md): a JSON file read at start-up and
    /// recorded as the routes in force when it differs from them (`capability/routes/` holds
    /// an example). Without it, the routes last recorded (by `PUT /admin/routes`) stay.
    #[arg(long, env = "EMRSYNC_ROUTES")]
    pub routes: Option<std::path::PathBuf>,

    /// The longest wait, in seconds, between two tries of an outbound message whose target
    /// did not answer (the queue of that target waits meanwhile).
    #[arg(long, env = "EMRSYNC_ROUTE_RETRY_MAX_SECS", default_value_t = 30)]
    pub route_retry_max_secs: u64,

    /// Store codes as the sources send them: no normalisation map applies on ingest and no
    /// unmapped code is counted (docs/terminology.md). For a deployment whose downstream
    /// systems translate codes themselves, and to measure what normalising costs ingest.
    #[arg(long, env = "EMRSYNC_NO_NORMALISE")]
    pub no_normalise: bool,

    /// Seconds the terminology service keeps what it built from the code systems, value sets
    /// and maps; this process's own changes are seen at once, another process's within this.
    #[arg(long, env = "EMRSYNC_TERMINOLOGY_TTL_SECS", default_value_t = 60)]
    pub terminology_ttl_secs: u64,

    /// The survivorship rules the provider registry's golden records (Practitioner,
    /// Organization, PractitionerRole) are built by, in place of the shipped
    /// `capability/mpi/providers.json`; one that does not parse refuses the start, saying where.
    #[arg(long, env = "EMRSYNC_PROVIDER_GOLDEN")]
    pub provider_golden: Option<std::path::PathBuf>,

    /// Days a subscription event is kept once delivered (for `$events`), and a change's outbox
    /// row once dispatched; undelivered events stay however old. 0 keeps them for ever.
    #[arg(long, env = "EMRSYNC_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,

    /// How often accesses other than writes (reads, searches, refusals, messages, deliveries)
    /// are written to the audit trail, in milliseconds: what a crash may lose of them at most.
    /// Writes are audited in their own transaction, always.
    #[arg(long, env = "EMRSYNC_AUDIT_FLUSH_MS", default_value_t = 200)]
    pub audit_flush_ms: u64,

    /// Days audit rows are kept. 0 keeps them for ever.
    #[arg(long, env = "EMRSYNC_AUDIT_RETENTION_DAYS", default_value_t = 0)]
    pub audit_retention_days: u32,

    /// How often the alert rules are evaluated, in seconds (`PUT /admin/alerts/rules`). 0: no
    /// alerts.
    #[arg(long, env = "EMRSYNC_ALERT_INTERVAL_SECS", default_value_t = 30)]
    pub alert_interval_secs: u64,

    /// Bulk Data exports (`$export`) running at once; more wait their turn.
    #[arg(long, env = "EMRSYNC_EXPORTS_RUNNING", default_value_t = 2)]
    pub exports_running: usize,

    /// Exports one client may have waiting or running at once; more are refused (429).
    #[arg(long, env = "EMRSYNC_EXPORTS_PER_CLIENT", default_value_t = 2)]
    pub exports_per_client: i64,

    /// Hours a finished export's files are kept before they are deleted.
    #[arg(long, env = "EMRSYNC_EXPORT_KEEP_HOURS", default_value_t = 24)]
    pub export_keep_hours: u64,

    /// Resources per export file.
    #[arg(long, env = "EMRSYNC_EXPORT_FILE_RESOURCES", default_value_t = 100_000)]
    pub export_file_resources: u64,

    /// The event stream (NATS JetStream): `--stream URL` and its `--stream-*` settings.
    #[command(flatten)]
    pub stream: crate::stream::config::StreamArgs,

    /// A vendor source definition to poll (a JSON file, see docs/vendor-sources.md); repeat
    /// for several, or comma-separate in the environment variable.
    #[arg(long = "source", env = "EMRSYNC_SOURCES", value_delimiter = ',')]
    pub sources: Vec<PathBuf>,

    /// Write logs as JSON lines instead of text.
    #[arg(long, env = "EMRSYNC_LOG_JSON")]
    pub log_json: bool,
}

impl Settings {
    /// Settings for a server on `listen` with defaults elsewhere (tests and benchmarks).
    pub fn new(listen: &str, store: StoreArgs) -> Self {
        Settings {
            listen: listen.to_string(),
            store,
            sources: Vec::new(),
            base_url: None,
            tls_cert: None,
            tls_key: None,
            insecure_dev: false,
            max_body_bytes: 16 * 1024 * 1024,
            max_bundle_entries: 5_000,
            max_writes_in_flight: 512,
            shutdown_secs: 20,
            max_body_bytes_in_flight: 32 * 1024 * 1024,
            auth_rate: 20,
            webhook_rate: 200,
            lockout_after: 5,
            lockout_address_after: 20,
            api_rate: 0,
            pool_size: None,
            cache_mib: 64,
            page_cache_mib: 8,
            cache_ttl_secs: None,
            workers: None,
            idp_issuer: None,
            idp_jwks_uri: None,
            idp_audience: None,
            subscription_endpoint_allow: Vec::new(),
            subscription_endpoint_networks: Vec::new(),
            subscription_retry_max_secs: 60,
            subscription_error_after: 5,
            mllp: None,
            mllp_max_bytes: 10 * 1024 * 1024,
            mllp_idle_secs: 300,
            mllp_allow: Vec::new(),
            mllp_max_connections: 256,
            mllp_max_connections_per_address: 16,
            mllp_max_buffered_bytes: 64 * 1024 * 1024,
            mllp_rate: 0,
            mllp_original_acks: false,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            mllp_tls_client_ca: None,
            hl7v2_archive_days: 90,
            hl7v2_time_zone: Default::default(),
            hl7v2_facility_time_zone: Vec::new(),
            mpi_model: None,
            mpi_golden: None,
            provider_golden: None,
            no_mpi: false,
            terminology_packages: Vec::new(),
            no_shipped_terminology: false,
            routes: None,
            route_retry_max_secs: 30,
            no_normalise: false,
            terminology_ttl_secs: 60,
            event_retention_days: 30,
            audit_flush_ms: 200,
            audit_retention_days: 0,
            // off unless a test turns them on: a rule firing mid-test would write resources the
            // test did not (the command line's default is 30)
            alert_interval_secs: 0,
            exports_running: 2,
            exports_per_client: 2,
            stream: Default::default(),
            export_keep_hours: 24,
            export_file_resources: 100_000,
            log_json: false,
        }
    }

    pub fn store_settings(&self) -> anyhow::Result<StoreSettings> {
        let database = self.store.database()?;
        let sqlite = database.is_sqlite();
        Ok(StoreSettings {
            seal: self.store.seal()?.map(std::sync::Arc::new),
            pool_size: self.pool_size.unwrap_or(if sqlite { 8 } else { 16 }),
            cache_bytes: self.cache_mib * 1024 * 1024,
            page_cache_kib: self.page_cache_mib.saturating_mul(1024),
            cache_ttl: Duration::from_secs(self.cache_ttl_secs.unwrap_or(if sqlite {
                300
            } else {
                2
            })),
            database,
        })
    }
}

/// A network (`10.1.0.0/16`) or one address (`192.0.2.7`, `::1`).
pub fn network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or network (such as 10.1.0.0/16)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_printed_hide_the_database_password() {
        let url = "postgres://emrsync:s3cret-pw@db.hospital.example:5432/emrsync";
        let store = StoreArgs::new("d".into(), Some(url.into()));
        let shown = format!("{:?}", Settings::new("127.0.0.1:0", store));
        assert!(
            !shown.contains("s3cret-pw") && shown.contains("***@db.hospital"),
            "{shown}"
        );
    }
}
