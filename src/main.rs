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
    /// Drive a running server over HTTP and print throughput and latency percentiles.
    Bench(emrsync::bench::BenchArgs),
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
            tokio::select! {
                r = app.run_until_stopped() => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
            }
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
        Command::Bench(args) => {
            init_logs(false);
            emrsync::bench::run(args).await?;
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
