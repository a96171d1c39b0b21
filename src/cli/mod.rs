//! The `emrsync` command line: its commands and flags, and what each runs. `main.rs` only
//! parses and calls `run`.

mod audit;
mod maintenance;
mod mpi;
mod operator;
mod send;
mod source;
mod stream;
mod terminology;

use crate::config::{Settings, StoreArgs};
use crate::startup::Application;
use clap::{Parser, Subcommand};
use maintenance::{RekeyArgs, ReplayArgs};
use operator::{ClientArgs, TokenArgs, UserArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "emrsync",
    version,
    about = "Real-time EMR sync hub: a FHIR R4 server on a canonical store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
    Bench(crate::bench::BenchArgs),
    /// Send HL7v2 messages from files to an MLLP listener and print each ACK.
    Send(send::SendArgs),
    /// The master patient index: estimate its model, measure it on a benchmark.
    Mpi(mpi::MpiArgs),
    /// Run HL7v2 messages of the exception queue again, once the cause is fixed.
    Replay(ReplayArgs),
    /// The terminology service: load FHIR packages (code systems, value sets, concept maps).
    Terminology(terminology::TerminologyArgs),
    /// Move the database and the secrets sealed in it to a new master key. Stop every server
    /// on the database first; start them again with the new key. Safe to run again if cut short.
    Rekey(RekeyArgs),
    /// The audit trail: check its hash chain, export it as ndjson AuditEvents.
    Audit(audit::AuditArgs),
    /// The event stream on NATS JetStream: print its events.
    Stream(stream::StreamCliArgs),
    /// Vendor sources: check, try, poll, and the exception queue (docs/vendor-sources.md).
    Source(source::SourceCliArgs),
}

/// Run the command `cli` names (serving when none is named); the process's exit status.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command {
        Some(c) => c,
        None => Command::Serve(Box::new(Settings::parse_from_env_only())),
    };
    if let Command::Serve(settings) = &command {
        init_logs(settings.log_json);
    } else {
        init_logs(false);
    }
    match command {
        Command::Serve(settings) => {
            let app = Application::build(*settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate(store) => {
            let db = store.database()?;
            let applied = tokio::task::spawn_blocking(move || db.migrate()).await??;
            println!(
                "{applied} migration(s) applied to {}",
                store.database()?.describe()
            );
        }
        Command::Token(args) => operator::token(args).await?,
        Command::Client(args) => {
            tokio::task::spawn_blocking(move || operator::client(args)).await??
        }
        Command::User(args) => tokio::task::spawn_blocking(move || operator::user(args)).await??,
        Command::Bench(args) => crate::bench::run(args).await?,
        Command::Mpi(args) => tokio::task::spawn_blocking(move || mpi::run(args)).await??,
        Command::Send(args) => {
            if !send::send(args).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Rekey(args) => {
            tokio::task::spawn_blocking(move || maintenance::rekey(args)).await??
        }
        Command::Terminology(args) => {
            tokio::task::spawn_blocking(move || terminology::run(args)).await??;
        }
        Command::Audit(args) => {
            if !tokio::task::spawn_blocking(move || audit::run(args)).await?? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Stream(args) => match args.command {
            stream::StreamCommand::Tail(args) => stream::tail(args).await?,
        },
        Command::Source(args) => {
            if !source::run(args).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Replay(args) => {
            let accepted = tokio::task::spawn_blocking(move || maintenance::replay(args)).await??;
            if !accepted {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
