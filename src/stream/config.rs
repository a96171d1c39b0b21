//! How the event stream is reached and shaped, from the command line (`serve --stream ...`,
//! `stream tail`): the broker's URL, its credentials and TLS, and the stream's name, subjects,
//! payload and limits. Secrets come from files (a `.creds` file, an nkey seed, a token), never
//! from the command line, where `ps` would show them.

use super::envelope::Payload;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// The publisher: which broker and stream, and the shape of what it publishes.
#[derive(Args, Clone)]
pub struct StreamArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Subjects are `<prefix>.<resource type>.<patient partition>`.
    #[arg(
        long = "stream-prefix",
        env = "EMRSYNC_STREAM_PREFIX",
        default_value = "emrsync"
    )]
    pub prefix: String,

    /// Patient partitions of each type's subjects.
    #[arg(
        long = "stream-partitions",
        env = "EMRSYNC_STREAM_PARTITIONS",
        default_value_t = 16
    )]
    pub partitions: u32,

    /// What an event carries: the resource's reference, or the resource itself (PHI).
    #[arg(
        long = "stream-payload",
        env = "EMRSYNC_STREAM_PAYLOAD",
        value_enum,
        default_value = "reference"
    )]
    pub payload: Payload,

    /// Hours the stream keeps events (a stream created by emrsync).
    #[arg(
        long = "stream-max-age-hours",
        env = "EMRSYNC_STREAM_MAX_AGE_HOURS",
        default_value_t = 168
    )]
    pub max_age_hours: u64,

    /// Copies of the stream a JetStream cluster keeps (a stream created by emrsync).
    #[arg(
        long = "stream-replicas",
        env = "EMRSYNC_STREAM_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: usize,
}

/// Which broker and stream, and how emrsync proves who it is (the publisher and `stream tail`).
#[derive(Args, Clone)]
pub struct BrokerArgs {
    /// The NATS JetStream broker (`nats://[user:password@]host:4222`, `tls://` for TLS; a
    /// cluster's brokers comma-separated): `serve` publishes every committed change there, and
    /// does not publish without it.
    #[arg(long = "stream", env = "EMRSYNC_STREAM")]
    pub url: Option<String>,

    /// The JetStream stream's name (created at start-up when absent).
    #[arg(
        long = "stream-name",
        env = "EMRSYNC_STREAM_NAME",
        default_value = "EMRSYNC"
    )]
    pub name: String,

    /// A NATS credentials file (`.creds`: the user's JWT and nkey seed, as `nsc` writes it).
    #[arg(
        long = "stream-credentials-file",
        env = "EMRSYNC_STREAM_CREDENTIALS_FILE"
    )]
    pub credentials_file: Option<PathBuf>,

    /// A file holding the nkey seed (`SU...`) this server signs the broker's challenge with.
    #[arg(long = "stream-nkey-file", env = "EMRSYNC_STREAM_NKEY_FILE")]
    pub nkey_file: Option<PathBuf>,

    /// A file holding the broker's authorization token.
    #[arg(long = "stream-token-file", env = "EMRSYNC_STREAM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// CA certificates (PEM) the broker's certificate must chain to; TLS is then required.
    #[arg(long = "stream-ca-file", env = "EMRSYNC_STREAM_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// A client certificate (PEM) for brokers that verify their clients (with its key).
    #[arg(
        long = "stream-client-cert",
        env = "EMRSYNC_STREAM_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long = "stream-client-key",
        env = "EMRSYNC_STREAM_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl Default for StreamArgs {
    fn default() -> Self {
        StreamArgs {
            broker: BrokerArgs::default(),
            prefix: "emrsync".into(),
            partitions: 16,
            payload: Payload::Reference,
            max_age_hours: 168,
            replicas: 1,
        }
    }
}

impl Default for BrokerArgs {
    fn default() -> Self {
        BrokerArgs {
            url: None,
            name: "EMRSYNC".into(),
            credentials_file: None,
            nkey_file: None,
            token_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// The URL without its password: no `{:?}` of the settings prints a secret.
impl std::fmt::Debug for BrokerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerArgs")
            .field("url", &self.url.as_deref().map(crate::store::db::redacted))
            .field("name", &self.name)
            .field("credentials_file", &self.credentials_file)
            .field("nkey_file", &self.nkey_file)
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StreamArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamArgs")
            .field("broker", &self.broker)
            .field("prefix", &self.prefix)
            .field("partitions", &self.partitions)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl StreamArgs {
    /// The publisher's settings, when a stream is configured.
    pub fn publisher(&self, source: &str, owner: &str, mpi: bool) -> Option<super::StreamSettings> {
        Some(super::StreamSettings {
            connection: self.broker.clone(),
            name: self.broker.name.clone(),
            prefix: self.prefix.clone(),
            partitions: self.partitions.max(1),
            payload: self.payload,
            max_age: Duration::from_secs(self.max_age_hours.saturating_mul(3600)),
            replicas: self.replicas.max(1),
            duplicate_window: Duration::from_secs(600),
            source: source.to_string(),
            owner: owner.to_string(),
            mpi,
            url: self.broker.url.clone()?,
        })
    }
}

impl BrokerArgs {
    /// Connect to the broker with the configured credentials and TLS.
    pub async fn connect(&self, url: &str) -> Result<async_nats::Client, String> {
        let mut options = async_nats::ConnectOptions::new()
            .name("emrsync")
            .connection_timeout(Duration::from_secs(5));
        if let Some(path) = &self.credentials_file {
            let creds = secret(path, "credentials")?;
            options = options
                .credentials(&creds)
                .map_err(|e| format!("the credentials file {}: {e}", path.display()))?;
        }
        if let Some(path) = &self.nkey_file {
            options = options.nkey(secret(path, "nkey seed")?.trim().to_string());
        }
        if let Some(path) = &self.token_file {
            options = options.token(secret(path, "token")?.trim().to_string());
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let tls = url.starts_with("tls://") || self.ca_file.is_some();
        // a cluster's seed brokers, comma-separated: any one of them up is enough to start
        let seeds: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        options
            .require_tls(tls)
            .connect(seeds)
            .await
            .map_err(|e| format!("connecting: {e}"))
    }
}

/// A secret read from its file, its contents never in the error.
fn secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("the stream's {what} file {}: {e}", path.display()))
}
