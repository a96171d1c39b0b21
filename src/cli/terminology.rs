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
    /// Import a code system from its release files (LOINC, SNOMED CT RF2, RxNorm RRF), which
    /// its publisher licenses to you: importing a version again replaces that version.
    Import {
        #[command(subcommand)]
        release: ReleaseArgs,
    },
}

#[derive(Subcommand)]
pub enum ReleaseArgs {
    /// LOINC: `LoincTable/Loinc.csv`, and the hierarchy (`ComponentHierarchyBySystem.csv`).
    Loinc {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        #[arg(long)]
        table: PathBuf,
        #[arg(long)]
        hierarchy: Option<PathBuf>,
        /// The release's version (e.g. 2.78): LOINC's files do not say it.
        #[arg(long)]
        version: String,
    },
    /// SNOMED CT: an RF2 Snapshot's concept, description and relationship files, and
    /// optionally a language reference set (for preferred terms).
    Snomed {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        #[arg(long)]
        concepts: PathBuf,
        #[arg(long)]
        descriptions: PathBuf,
        #[arg(long)]
        relationships: PathBuf,
        #[arg(long)]
        language: Option<PathBuf>,
        /// The version URI [default: http://snomed.info/sct/<module>/version/<latest effectiveTime>].
        #[arg(long)]
        version: Option<String>,
    },
    /// RxNorm: `RXNCONSO.RRF`, and optionally `RXNREL.RRF`.
    Rxnorm {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        #[arg(long)]
        conso: PathBuf,
        #[arg(long)]
        rel: Option<PathBuf>,
        /// The release's version (e.g. 2025-01-06, from the release's file name).
        #[arg(long)]
        version: String,
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
        TerminologyCommand::Import { release } => import(release),
    }
}

fn import(args: ReleaseArgs) -> anyhow::Result<()> {
    use crate::terminology::release::{loinc, rxnorm, snomed};
    let started = std::time::Instant::now();
    let say = |what: &str| {
        eprintln!("{:>7.1} s  {what}", started.elapsed().as_secs_f64());
    };
    let (store, release) = match args {
        ReleaseArgs::Loinc {
            store,
            table,
            hierarchy,
            version,
        } => (
            store,
            loinc::read(&table, hierarchy.as_deref(), &version, &say)?,
        ),
        ReleaseArgs::Snomed {
            store,
            concepts,
            descriptions,
            relationships,
            language,
            version,
        } => {
            let files = snomed::Files {
                concepts: &concepts,
                descriptions: &descriptions,
                relationships: &relationships,
                language: language.as_deref(),
            };
            (store, snomed::read(&files, version.as_deref(), &say)?)
        }
        ReleaseArgs::Rxnorm {
            store,
            conso,
            rel,
            version,
        } => (store, rxnorm::read(&conso, rel.as_deref(), &version, &say)?),
    };
    let settings = crate::config::Settings::new("127.0.0.1:0", store);
    let store = crate::store::Store::open(&settings.store_settings()?)?;
    let ingest = crate::startup::ingest(store, &settings)?;
    let (url, version, count) = (
        release.url.clone(),
        release.version.clone(),
        release.concepts.len(),
    );
    let id = crate::terminology::release::write(&ingest, release, &say)?;
    say("done");
    println!("CodeSystem/{id}: {url} version {version}, {count} concepts");
    Ok(())
}
