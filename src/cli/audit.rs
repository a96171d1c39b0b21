//! `emrsync audit verify`: walk the audit trail's hash chain and say where it is broken (exit
//! status 1 then); `emrsync audit export`: the trail as ndjson AuditEvents, for the compliance
//! team (oldest first, between two dates).

use crate::config::StoreArgs;
use crate::store::audit::block::{self, Loaded};
use crate::store::schema::audit_blocks as b;
use diesel::prelude::*;
use std::io::Write;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check every kept block against the hash chain; print the head hash to keep elsewhere.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// A head hash kept from an earlier run: the chain must still pass through it.
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Write the trail as ndjson AuditEvents to standard output.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Only rows recorded at or after this date (YYYY-MM-DD or a dateTime).
        #[arg(long)]
        since: Option<String>,
        /// Only rows recorded before this date.
        #[arg(long)]
        until: Option<String>,
    },
}

fn open(store: StoreArgs) -> anyhow::Result<crate::store::Store> {
    let settings = crate::config::Settings::new("127.0.0.1:0", store);
    crate::store::Store::open(&settings.store_settings()?)
}

/// Run it; false when the chain is broken.
pub fn run(args: AuditArgs) -> anyhow::Result<bool> {
    match args.command {
        AuditCommand::Verify { store, expect_head } => {
            let store = open(store)?;
            let mut v = store.read(crate::store::audit::verify)?;
            if let Some(head) = &expect_head {
                let found: i64 = store
                    .read(|c| Ok(b::table.filter(b::hash.eq(head)).count().get_result(c)?))?;
                if found == 0 {
                    v.problems.push(format!(
                        "the head {head} kept earlier is no longer in the chain: blocks were removed or rewritten"
                    ));
                }
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(v.problems.is_empty())
        }
        AuditCommand::Export {
            store,
            since,
            until,
        } => {
            let store = open(store)?;
            // both bounds at the start of the date given: since is in, until is out
            let bound = |d: &Option<String>| -> anyhow::Result<Option<i64>> {
                d.as_deref()
                    .map(|t| {
                        crate::fhir::search::date::DateRange::parse(t)
                            .map(|r| r.low)
                            .ok_or_else(|| anyhow::anyhow!("'{t}' is not a date"))
                    })
                    .transpose()
            };
            let (from, to) = (bound(&since)?, bound(&until)?);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = 0i64;
            loop {
                // the blocks whose span meets the dates, then their entries within them
                let page: Vec<Loaded> = store.read(|c| {
                    let mut q = b::table.filter(b::seq.gt(after)).into_boxed();
                    if let Some(f) = from {
                        q = q.filter(b::last_at.ge(f));
                    }
                    if let Some(t) = to {
                        q = q.filter(b::first_at.lt(t));
                    }
                    Ok(q.order(b::seq.asc())
                        .limit(50)
                        .select(block::loaded())
                        .load(c)?)
                })?;
                let Some(last) = page.last() else { break };
                after = last.0;
                for r in page.into_iter().flat_map(block::rows) {
                    let at = r.entry.recorded_at;
                    if from.is_some_and(|f| at < f) || to.is_some_and(|t| at >= t) {
                        continue;
                    }
                    writeln!(out, "{}", crate::ops::audit::event::audit_event(&r))?;
                }
            }
            out.flush()?;
            Ok(true)
        }
    }
}
