//! The `emrsync` command line: parses flags and calls the library (`emrsync::cli`).

use clap::Parser;

/// The server allocates many small JSON values per resource: glibc's malloc spent about a third
/// of a transaction's CPU time in profiles, mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    emrsync::cli::run(emrsync::cli::Cli::parse()).await
}
