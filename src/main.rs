//! The `emrsync` command line: parses flags and calls the library.

use clap::{Parser, Subcommand};
use emrsync::config::{Settings, StoreArgs};
use emrsync::startup::Application;

/// The server allocates many small JSON values per resource: glibc's malloc spent about a third
/// of a transaction's CPU time in profiles, mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "emrsync",
    version,
    about = "Real-time EMR sync hub: a FHIR R4 server on a canonical store"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<Settings>),
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate(StoreArgs),
    /// Print an access token signed with this server's key (for local use and scripts).
    Token(TokenArgs),
    /// The SMART client registry: add, list or remove clients.
    Client(ClientArgs),
    /// People who sign in when an app asks for authorization.
    User(UserArgs),
    /// Drive a running server over HTTP and print throughput and latency percentiles.
    Bench(emrsync::bench::BenchArgs),
    /// Run HL7v2 messages of the exception queue again, once the cause is fixed.
    Replay(ReplayArgs),
    /// Move the database and the secrets sealed in it to a new master key. Stop every server
    /// on the database first; start them again with the new key. Safe to run again if cut short.
    Rekey(RekeyArgs),
}

#[derive(clap::Args)]
struct RekeyArgs {
    /// The database, with its current master key (--master-key-file or EMRSYNC_MASTER_KEY).
    #[command(flatten)]
    store: StoreArgs,
    /// A file holding the new master key (base64 of 32 random bytes); or the key itself in
    /// EMRSYNC_NEW_MASTER_KEY.
    #[arg(long, env = "EMRSYNC_NEW_MASTER_KEY_FILE")]
    new_master_key_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The message's id (as `GET /admin/hl7v2/messages` lists it).
    #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
    id: Option<String>,
    /// Every message of the exception queue, oldest first.
    #[arg(long)]
    all_failed: bool,
    /// Replay this corrected text instead of the stored one (with an id only).
    #[arg(long, conflicts_with = "all_failed")]
    message_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ClientArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    action: ClientAction,
}

#[derive(clap::Args)]
struct UserArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user who can sign in at /auth/authorize.
    Add {
        #[arg(long)]
        username: String,
        /// A file whose first line is the password (at least 8 characters, kept as an argon2
        /// hash); else EMRSYNC_USER_PASSWORD, else it is asked for at a prompt. Never a flag.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// The FHIR resource the user is: Practitioner/ID, Patient/ID, RelatedPerson/ID.
        #[arg(long)]
        fhir_user: String,
    },
}

#[derive(Subcommand)]
enum ClientAction {
    /// Register a client.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        kind: emrsync::auth::clients::ClientKind,
        /// The most this client may be granted (space separated SMART scopes).
        #[arg(long)]
        scope: String,
        /// Where users may be sent back after authorizing (exact match); repeatable.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A file whose first line is a symmetric client's shared secret (at least 16
        /// characters); else EMRSYNC_CLIENT_SECRET, else it is asked for at a prompt. Never a
        /// flag.
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
        /// A file holding an asymmetric client's public JWK Set.
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
        /// Where an asymmetric client publishes its JWK Set.
        #[arg(long)]
        jwks_uri: Option<String>,
    },
    /// Make an ES384 key pair for a Backend Services client: keep the private key, register
    /// the JWK Set with `client add --kind asymmetric --jwks-file`.
    Keygen {
        #[arg(long)]
        private_key: std::path::PathBuf,
        #[arg(long)]
        jwks: std::path::PathBuf,
        #[arg(long, default_value = "key-1")]
        kid: String,
    },
    /// List the registered clients.
    List,
    /// Remove a client.
    Remove {
        #[arg(long)]
        id: String,
    },
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// The FHIR base URL of the server the token is for (its `aud`) [default: the one `serve`
    /// last ran with on this database].
    #[arg(long, env = "EMRSYNC_BASE_URL")]
    base_url: Option<String>,

    /// SMART scopes, space separated (e.g. "system/*.cruds" or "patient/*.rs").
    #[arg(long)]
    scope: String,

    /// The patient whose compartment `patient/` scopes open.
    #[arg(long)]
    patient: Option<String>,

    /// The user the token speaks for, as `fhirUser` (e.g. Practitioner/123).
    #[arg(long)]
    user: Option<String>,

    /// How long the token is valid (e.g. 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    expires: std::time::Duration,
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EMRSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None => Command::Serve(Box::new(Settings::parse_from_env_only())),
    };
    match command {
        Command::Serve(settings) => {
            init_logs(settings.log_json);
            let app = Application::build(*settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate(store) => {
            init_logs(false);
            let db = store.database()?;
            let applied = tokio::task::spawn_blocking(move || db.migrate()).await??;
            println!(
                "{applied} migration(s) applied to {}",
                store.database()?.describe()
            );
        }
        Command::Token(args) => {
            init_logs(false);
            let mint = emrsync::auth::Mint {
                subject: args.user.clone().unwrap_or_else(|| "emrsync-cli".into()),
                scope: args.scope.clone(),
                client_id: Some("emrsync-cli".into()),
                patient: args.patient.clone(),
                encounter: None,
                fhir_user: args.user.clone(),
                lifetime: args.expires,
            };
            let patient_scope = args
                .scope
                .split_whitespace()
                .any(|s| s.starts_with("patient/"));
            if patient_scope && args.patient.is_none() {
                anyhow::bail!(
                    "a patient/ scope opens one patient's compartment: name it with --patient ID"
                );
            }
            let database = args.store.database()?;
            let seal = args.store.seal()?;
            let base = args.base_url.map(|b| b.trim_end_matches('/').to_string());
            let token = tokio::task::spawn_blocking(move || {
                emrsync::auth::mint_for_server(&database, base.as_deref(), &mint, seal.as_ref())
            })
            .await??;
            println!("{token}");
        }
        Command::Client(args) => {
            init_logs(false);
            tokio::task::spawn_blocking(move || client_command(args)).await??;
        }
        Command::User(args) => {
            init_logs(false);
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let database = args.store.database()?;
                database.migrate()?;
                let mut conn = database.connect()?;
                match args.action {
                    UserAction::Add {
                        username,
                        password_file,
                        fhir_user,
                    } => {
                        let password = emrsync::auth::secret::from_operator(
                            "password",
                            password_file.as_deref(),
                            "EMRSYNC_USER_PASSWORD",
                        )?;
                        emrsync::auth::users::add(&mut conn, &username, &password, &fhir_user)
                            .map_err(|e| anyhow::anyhow!(e))?;
                        println!("user {username} added as {fhir_user}");
                    }
                }
                Ok(())
            })
            .await??;
        }
        Command::Bench(args) => {
            init_logs(false);
            emrsync::bench::run(args).await?;
        }
        Command::Rekey(args) => {
            init_logs(false);
            tokio::task::spawn_blocking(move || rekey_command(args)).await??;
        }
        Command::Replay(args) => {
            init_logs(false);
            let accepted = tokio::task::spawn_blocking(move || replay_command(args)).await??;
            if !accepted {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Replay one message or the whole exception queue; true when every one was accepted (AA).
fn replay_command(args: ReplayArgs) -> anyhow::Result<bool> {
    use emrsync::adapters::hl7v2::queue;
    let settings = emrsync::config::Settings::new("127.0.0.1:0", args.store);
    let store = emrsync::store::Store::open(&settings.store_settings()?)?;
    let ingest = emrsync::startup::ingest(store, &settings);
    let outcomes = match &args.id {
        Some(id) => {
            let corrected = match &args.message_file {
                Some(f) => Some(emrsync::adapters::hl7v2::message::decode(&std::fs::read(
                    f,
                )?)),
                None => None,
            };
            match queue::replay(&ingest, id, corrected)? {
                Some(o) => vec![(id.clone(), o)],
                None => anyhow::bail!("no HL7v2 message {id} in the archive"),
            }
        }
        None => queue::replay_failed(&ingest)?,
    };
    for (id, o) in &outcomes {
        let why = o.problem.as_ref().map(|p| format!(": {}", p.text));
        println!(
            "{id} {} {}{}",
            o.code.as_str(),
            o.correlation_id,
            why.unwrap_or_default()
        );
    }
    println!("{} replayed", outcomes.len());
    Ok(outcomes
        .iter()
        .all(|(_, o)| o.code == emrsync::adapters::hl7v2::ack::AckCode::Accept))
}

fn rekey_command(args: RekeyArgs) -> anyhow::Result<()> {
    use emrsync::store::seal::Seal;
    let old = args.store.seal()?.ok_or_else(|| {
        anyhow::anyhow!("give the current master key (--master-key-file or EMRSYNC_MASTER_KEY)")
    })?;
    let new = Seal::from_file_or_env(
        args.new_master_key_file.as_deref(),
        "EMRSYNC_NEW_MASTER_KEY",
    )?
    .ok_or_else(|| {
        anyhow::anyhow!("give the new master key (--new-master-key-file or EMRSYNC_NEW_MASTER_KEY)")
    })?;
    let database = args.store.database()?;
    let r = emrsync::rekey::rotate(&database, &old, &new)?;
    println!(
        "{}: {}resealed {} signing key(s), {} channel header set(s), {} archived message(s); \
         start the servers with the new master key",
        database.describe(),
        if r.file_rewritten {
            "file rewritten under the new key, "
        } else {
            ""
        },
        r.signing_keys,
        r.channel_headers,
        r.archived_messages
    );
    Ok(())
}

fn client_command(args: ClientArgs) -> anyhow::Result<()> {
    use emrsync::auth::clients;
    if let ClientAction::Keygen {
        private_key,
        jwks,
        kid,
    } = &args.action
    {
        let (pem, set) = clients::generate_es384(kid).map_err(|e| anyhow::anyhow!(e))?;
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        std::io::Write::write_all(&mut file.open(private_key)?, pem.as_bytes())?;
        std::fs::write(jwks, set)?;
        println!(
            "private key in {} (keep it secret), public JWK Set in {}",
            private_key.display(),
            jwks.display()
        );
        return Ok(());
    }
    let database = args.store.database()?;
    database.migrate()?;
    let mut conn = database.connect()?;
    match args.action {
        ClientAction::Add {
            id,
            kind,
            scope,
            redirect_uris,
            secret_file,
            jwks_file,
            jwks_uri,
        } => {
            // only a symmetric client has a secret
            let secret = (kind == clients::ClientKind::Symmetric)
                .then(|| {
                    emrsync::auth::secret::from_operator(
                        "secret",
                        secret_file.as_deref(),
                        "EMRSYNC_CLIENT_SECRET",
                    )
                })
                .transpose()?;
            let jwks = jwks_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))
                })
                .transpose()?;
            let new = clients::NewClient {
                client_id: id.clone(),
                kind,
                scope,
                redirect_uris,
                secret,
                jwks,
                jwks_uri,
            };
            clients::add(&mut conn, &new)?;
            println!("client {id} registered");
        }
        ClientAction::List => {
            for c in clients::list(&mut conn)? {
                println!(
                    "{}\t{:?}\t{}\t{}",
                    c.client_id,
                    c.kind,
                    c.scope,
                    c.redirect_uris.join(" ")
                );
            }
        }
        ClientAction::Keygen { .. } => unreachable!("handled above"),
        ClientAction::Remove { id } => {
            if !clients::remove(&mut conn, &id)? {
                anyhow::bail!("no client '{id}' is registered");
            }
            println!("client {id} removed");
        }
    }
    Ok(())
}

trait FromEnvOnly {
    fn parse_from_env_only() -> Self;
}

impl FromEnvOnly for Settings {
    /// `emrsync` with no command: serve with defaults and environment variables.
    fn parse_from_env_only() -> Self {
        #[derive(Parser)]
        struct ServeOnly {
            #[command(flatten)]
            settings: Settings,
        }
        ServeOnly::parse_from(["emrsync"]).settings
    }
}
