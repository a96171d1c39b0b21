//! `emrsync terminology`: FHIR packages and code system releases loaded into a server's
//! database (a running server sees them within its terminology cache's time to live).

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct TerminologyArgs {
    #[command(subcommand)]
    pub command: TerminologyCommand,
}

#[derive(Subcommand)]
pub enum TerminologyCommand {
    /// Load the CodeSystems, ValueSets and ConceptMaps of FHIR packages (`.tgz` as the npm
    /// registry serves them) or folders of JSON resources. A package loaded before with the
    /// same bytes is skipped; a resource that says what the store has is not written again.
    Load {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Run the command; each resource refused is printed with why.
pub fn run(args: TerminologyArgs) -> anyhow::Result<()> {
    match args.command {
        TerminologyCommand::Load { store, paths } => {
            let settings = crate::config::Settings::new("127.0.0.1:0", store);
            let store = crate::store::Store::open(&settings.store_settings()?)?;
            let ingest = crate::startup::ingest(store, &settings)?;
            for path in paths {
                let loaded = crate::terminology::package::load(&ingest, &path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                for (what, why) in &loaded.refused {
                    println!("refused {what}: {why}");
                }
                match loaded.already {
                    true => println!(
                        "{}@{}: loaded before with the same bytes, skipped",
                        loaded.name, loaded.version
                    ),
                    false => println!(
                        "{}@{}: {} terminology resources loaded, {} refused",
                        loaded.name,
                        loaded.version,
                        loaded.found - loaded.refused.len(),
                        loaded.refused.len()
                    ),
                }
            }
            Ok(())
        }
    }
}
