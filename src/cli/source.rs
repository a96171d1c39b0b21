//! `emrsync source`: a vendor source's definition checked, tried on its API without writing,
//! polled once, its drop folder swept once, and its exception queue listed and replayed (`docs/vendor-sources.md`).

use crate::adapters::vendor::folder::Dropper;
use crate::adapters::vendor::{dropped, page, poll::Poller, source::Source};
use crate::config::{Settings, StoreArgs};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct SourceCliArgs {
    #[command(subcommand)]
    pub command: SourceCommand,
}

#[derive(clap::Subcommand)]
pub enum SourceCommand {
    /// Check definitions; say where each record type's reading stands and how many records
    /// wait in the exception queue.
    List(ListArgs),
    /// Read one page of each record type (or of --record) from where its reading stands, and
    /// print what each record becomes, or why not: nothing is written.
    Test(OneArgs),
    /// Read every record type to the vendor's last page now, and write what it sends.
    Poll(OneArgs),
    /// Sweep the source's drop folder once: apply the files waiting there, print each one's
    /// report.
    Drop(OneArgs),
    /// Print the records waiting in the exception queue; with --replay, map them again with
    /// the definition as it is now and write those that go in.
    Exceptions(ExceptionArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Source definition files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct OneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The source definition file.
    pub file: PathBuf,
    /// Only this record type.
    #[arg(long)]
    pub record: Option<String>,
}

#[derive(clap::Args)]
pub struct ExceptionArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The source definition file.
    pub file: PathBuf,
    /// Map the waiting records again and write those that go in.
    #[arg(long)]
    pub replay: bool,
}

fn open(store: StoreArgs) -> anyhow::Result<(crate::ingest::Ingest, Settings)> {
    let mut settings = Settings::new("127.0.0.1:0", store);
    settings.no_shipped_terminology = true;
    let store = crate::store::Store::open(&settings.store_settings()?)?;
    Ok((crate::startup::ingest(store, &settings)?, settings))
}

fn load(file: &std::path::Path) -> anyhow::Result<Arc<Source>> {
    Ok(Arc::new(Source::load(file).map_err(anyhow::Error::msg)?))
}

/// Run `args`; false when something was refused (a record in `test`, a reading in `poll`).
pub async fn run(args: SourceCliArgs) -> anyhow::Result<bool> {
    match args.command {
        SourceCommand::List(a) => {
            let (ingest, _) = open(a.store)?;
            for f in &a.files {
                let source = load(f)?;
                let name = &source.definition.name;
                let base = source.definition.base_url.as_deref().unwrap_or("no API");
                println!("{name} ({}): {base}", f.display());
                for (record_type, _) in source.definition.polled() {
                    let (s, n, t) = (ingest.store.clone(), name.clone(), record_type.clone());
                    let cursor =
                        tokio::task::spawn_blocking(move || s.read(|c| page::cursor(c, &n, &t)))
                            .await??;
                    println!(
                        "  {record_type}: {}",
                        cursor.unwrap_or_else(|| "not read yet".into())
                    );
                }
                let (s, n) = (ingest.store.clone(), name.clone());
                let waiting =
                    tokio::task::spawn_blocking(move || s.read(|c| page::open(c, &n, 10_000)))
                        .await??;
                println!("  exception queue: {} waiting", waiting.len());
                if let Some(folder) = &source.definition.drop_folder {
                    let (s, n) = (ingest.store.clone(), name.clone());
                    let files =
                        tokio::task::spawn_blocking(move || s.read(|c| dropped::recent(c, &n, 10)))
                            .await??;
                    println!(
                        "  drop folder {}: {} file(s) lately",
                        folder.path.display(),
                        files.len()
                    );
                    for r in files {
                        println!(
                            "    {} {}: {} record(s), {} in, {} refused{}",
                            r.finished.as_deref().unwrap_or(&r.started),
                            r.file,
                            r.records,
                            r.accepted,
                            r.refused,
                            match r.outcome.as_str() {
                                dropped::DONE => String::new(),
                                o => format!(" ({o})"),
                            }
                        );
                    }
                }
            }
            Ok(true)
        }
        SourceCommand::Test(a) => {
            let (ingest, _) = open(a.store)?;
            let source = load(&a.file)?;
            let mut poller = Poller::new(ingest.clone(), source.clone());
            let mut clean = true;
            for (record_type, _) in source.definition.polled() {
                if a.record.as_ref().is_some_and(|r| r != record_type) {
                    continue;
                }
                let records = poller
                    .first_page(record_type)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let (i, s, rt) = (ingest.clone(), source.clone(), record_type.clone());
                let shown = tokio::task::spawn_blocking(move || {
                    page::in_context(&i.store, s.zone, |cx| {
                        let made =
                            page::preview(&i, &s.definition.name, &s.maps, cx, &rt, &records);
                        records
                            .iter()
                            .zip(made)
                            .map(|(r, m)| {
                                let key = s.maps.key_of(&rt, r);
                                match m {
                                    Ok(resource) => json!({"recordType": rt, "key": key,
                                        "resource": resource}),
                                    Err(e) => json!({"recordType": rt, "key": key,
                                        "refused": {"element": e.element, "path": e.path,
                                        "reason": e.reason}}),
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .await??;
                for line in shown {
                    clean &= line.get("refused").is_none();
                    println!("{line}");
                }
            }
            Ok(clean)
        }
        SourceCommand::Poll(a) => {
            let (ingest, _) = open(a.store)?;
            let source = load(&a.file)?;
            let polled = Poller::new(ingest.clone(), source)
                .poll()
                .await
                .map_err(anyhow::Error::msg)?;
            ingest.flush_hooks();
            println!(
                "{} page(s): {} record(s) in, {} to the exception queue",
                polled.pages, polled.accepted, polled.refused
            );
            Ok(polled.refused == 0)
        }
        SourceCommand::Drop(a) => {
            let (ingest, settings) = open(a.store)?;
            let source = load(&a.file)?;
            if source.definition.drop_folder.is_none() {
                anyhow::bail!("{} has no drop folder", source.definition.name);
            }
            let dropper = Dropper {
                inbound: crate::startup::inbound(ingest.clone(), &settings),
                ingest: ingest.clone(),
                source,
            };
            let reports = tokio::task::spawn_blocking(move || dropper.sweep(&|| Ok(()))).await?;
            ingest.flush_hooks();
            let reports = reports.map_err(anyhow::Error::msg)?;
            let mut clean = true;
            for r in &reports {
                clean &= r.outcome != dropped::FAILED && r.refused == 0;
                println!("{}", serde_json::to_string(r)?);
            }
            if reports.is_empty() {
                println!("no file waiting");
            }
            Ok(clean)
        }
        SourceCommand::Exceptions(a) => {
            let (ingest, _) = open(a.store)?;
            let source = load(&a.file)?;
            tokio::task::spawn_blocking(move || {
                let name = &source.definition.name;
                if a.replay {
                    let replayed = page::replay_source(&ingest, &source)?;
                    ingest.flush_hooks();
                    println!(
                        "{} record(s) in, {} still waiting",
                        replayed.applied, replayed.still
                    );
                    return Ok(replayed.still == 0);
                }
                let waiting = ingest.store.read(|c| page::open(c, name, 10_000))?;
                for w in &waiting {
                    println!(
                        "{}",
                        json!({"seq": w.seq, "recordType": w.record_type, "key": w.vendor_key,
                            "element": w.element, "path": w.path, "reason": w.reason,
                            "record": serde_json::from_str::<serde_json::Value>(&w.record).ok()})
                    );
                }
                Ok::<_, anyhow::Error>(waiting.is_empty())
            })
            .await?
        }
    }
}
