//! The operator's commands on a server's database: the SMART client registry, the users who
//! sign in, and access tokens for local use and scripts.

use crate::config::StoreArgs;
use clap::Subcommand;

#[derive(clap::Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: ClientAction,
}

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Subcommand)]
pub enum UserAction {
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
        /// A role (repeatable): `admin` signs in to the dashboard at /admin.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Give an existing user a role (`admin`: the dashboard).
    Grant {
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
pub enum ClientAction {
    /// Register a client.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        kind: crate::auth::clients::ClientKind,
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
pub struct TokenArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The FHIR base URL of the server the token is for (its `aud`) [default: the one `serve`
    /// last ran with on this database].
    #[arg(long, env = "EMRSYNC_BASE_URL")]
    pub base_url: Option<String>,

    /// SMART scopes, space separated (e.g. "system/*.cruds" or "patient/*.rs").
    #[arg(long)]
    pub scope: String,

    /// The patient whose compartment `patient/` scopes open.
    #[arg(long)]
    pub patient: Option<String>,

    /// The user the token speaks for, as `fhirUser` (e.g. Practitioner/123).
    #[arg(long)]
    pub user: Option<String>,

    /// How long the token is valid (e.g. 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
}

/// `emrsync token`: an access token signed with the server's key, for its base URL.
pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let mint = crate::auth::Mint {
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
        crate::auth::mint_for_server(&database, base.as_deref(), &mint, seal.as_ref())
    })
    .await??;
    println!("{token}");
    Ok(())
}

/// `emrsync user add`.
pub fn user(args: UserArgs) -> anyhow::Result<()> {
    let database = args.store.database()?;
    database.migrate()?;
    let mut conn = database.connect()?;
    let known = |role: &str| match role == crate::auth::sessions::ADMIN {
        true => Ok(()),
        false => Err(anyhow::anyhow!(
            "unknown role '{role}': the roles are: admin"
        )),
    };
    match args.action {
        UserAction::Add {
            username,
            password_file,
            fhir_user,
            roles,
        } => {
            roles.iter().try_for_each(|r| known(r))?;
            let password = crate::auth::secret::from_operator(
                "password",
                password_file.as_deref(),
                "EMRSYNC_USER_PASSWORD",
            )?;
            crate::auth::users::add(&mut conn, &username, password.expose(), &fhir_user)
                .map_err(|e| anyhow::anyhow!(e))?;
            for role in &roles {
                crate::auth::users::grant(&mut conn, &username, role)?;
            }
            println!("user {username} added as {fhir_user}");
        }
        UserAction::Grant { username, role } => {
            known(&role)?;
            if !crate::auth::users::grant(&mut conn, &username, &role)? {
                anyhow::bail!("no user '{username}'");
            }
            println!("user {username} has the role {role}");
        }
    }
    Ok(())
}

/// `emrsync client add|keygen|list|remove`.
pub fn client(args: ClientArgs) -> anyhow::Result<()> {
    use crate::auth::clients;
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
                    crate::auth::secret::from_operator(
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
