//! Carrying out one export: every type it covers read in one snapshot of the store, page by
//! page in id order through the search engine (so `_typeFilter`, the token's limits and
//! `_since` are searches like any other), written as ndjson files of at most `per_file`
//! resources. Memory stays at one page whatever the store's size.

use super::files::ExportFiles;
use super::request::ExportRequest;
use crate::auth::Grant;
use crate::fhir::definitions::Definitions;
use crate::fhir::resource::now_micros;
use crate::fhir::search::filter::Filter;
use crate::fhir::search::query::parse_clause;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::search::{Cursor, Scope, SearchSpec, search};
use diesel::connection::{Connection, SimpleConnection};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Resources read per query.
const PAGE: i64 = 1000;

/// One file written: its type, name and how many resources it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    #[serde(rename = "type")]
    pub rtype: String,
    pub name: String,
    pub count: u64,
}

/// What a running export has done so far (for `X-Progress`), and whether it was cancelled.
#[derive(Default)]
pub struct Progress {
    pub cancelled: AtomicBool,
    pub exported: AtomicU64,
    pub current: Mutex<String>,
}

impl Progress {
    pub fn describe(&self) -> String {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.exported.load(Ordering::Relaxed);
        if current.is_empty() {
            "starting".to_string()
        } else {
            format!("{n} resources exported; now {current}")
        }
    }
}

/// Why an export stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the files: {0}")]
    Files(#[from] std::io::Error),
}

impl From<diesel::result::Error> for RunError {
    fn from(e: diesel::result::Error) -> Self {
        RunError::Store(e.into())
    }
}

/// The snapshot's time and the files of `request`, read with `grant`'s reach, written under
/// `job`.
pub fn export(
    conn: &mut DbConnection,
    files: &dyn ExportFiles,
    job: &str,
    request: &ExportRequest,
    grant: &Grant,
    progress: &Progress,
    per_file: u64,
) -> Result<(i64, Vec<Output>), RunError> {
    let pg = matches!(conn, DbConnection::Pg(_));
    conn.transaction(|conn| {
        if pg {
            // one snapshot for every query of the export, and no write by mistake
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        // The time is taken before the snapshot is: a change committed in between is in the
        // files and also in the next `_since` export (twice, never lost).
        let transaction_time = now_micros();
        conn.batch_execute("SELECT 1 FROM resources LIMIT 1")?;
        let mut outputs = Vec::new();
        for rtype in types_of(request, grant) {
            *progress.current.lock().unwrap_or_else(|p| p.into_inner()) = rtype.clone();
            let Some(filters) = filters_of(request, grant, &rtype) else {
                continue;
            };
            export_type(
                conn,
                files,
                job,
                &rtype,
                &filters,
                progress,
                per_file,
                &mut outputs,
            )?;
        }
        Ok((transaction_time, outputs))
    })
}

/// The types an export covers: those named, else every type the token may search.
fn types_of(request: &ExportRequest, grant: &Grant) -> Vec<String> {
    if !request.types.is_empty() {
        return request.types.clone();
    }
    let mut types: Vec<String> = Definitions::get()
        .resource_types()
        .filter(|t| grant.search_limit(t).is_ok())
        .map(str::to_string)
        .collect();
    types.sort();
    types
}

/// What a resource of `rtype` must match: one of the type's `_typeFilter` searches, the
/// token's limit, changed after `_since`. `None` when the token may not search the type (it
/// lost the scope since the kick-off) or a filter cannot be built.
fn filters_of(request: &ExportRequest, grant: &Grant, rtype: &str) -> Option<Vec<Filter>> {
    let mut filters = Vec::new();
    let alternatives = request.filters_for(rtype);
    if !alternatives.is_empty() {
        filters.push(Filter::Or(
            alternatives.into_iter().map(Filter::And).collect(),
        ));
    }
    filters.extend(grant.search_limit(rtype).ok()?);
    if let Some(since) = request.since {
        // to the microsecond, the store's precision: `gt` leaves out that instant itself
        let at = chrono::DateTime::from_timestamp_micros(since)?
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let clause = parse_clause(rtype, "_lastUpdated", &format!("gt{at}")).ok()??;
        filters.push(Filter::Clause(clause));
    }
    Some(filters)
}

#[allow(clippy::too_many_arguments)]
fn export_type(
    conn: &mut DbConnection,
    files: &dyn ExportFiles,
    job: &str,
    rtype: &str,
    filters: &[Filter],
    progress: &Progress,
    per_file: u64,
    outputs: &mut Vec<Output>,
) -> Result<(), RunError> {
    let types = [(rtype.to_string(), filters.to_vec())];
    let mut cursor: Option<Cursor> = None;
    let mut file: Option<(Box<dyn Write + Send>, Output)> = None;
    loop {
        if progress.cancelled.load(Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        let spec = SearchSpec {
            scope: Scope::Types(&types),
            sort: &[],
            count: PAGE,
            cursor: cursor.as_ref(),
            total: false,
        };
        let page = search(conn, &spec).map_err(|e| match e {
            crate::store::search::SearchError::Store(s) => RunError::Store(s),
            other => RunError::Store(StoreError::Database(other.to_string())),
        })?;
        for v in &page.versions {
            if file.as_ref().is_none_or(|(_, o)| o.count >= per_file) {
                if let Some((mut w, o)) = file.take() {
                    w.flush()?;
                    outputs.push(o);
                }
                let n = outputs.iter().filter(|o| o.rtype == rtype).count() + 1;
                let name = format!("{rtype}-{n}.ndjson");
                let w = files.create(job, &name)?;
                file = Some((
                    w,
                    Output {
                        rtype: rtype.to_string(),
                        name,
                        count: 0,
                    },
                ));
            }
            let (w, o) = file.as_mut().expect("a file is open");
            // the stored JSON is one line already (serde_json writes no newlines)
            w.write_all(v.content.as_bytes())?;
            w.write_all(b"\n")?;
            o.count += 1;
        }
        progress
            .exported
            .fetch_add(page.versions.len() as u64, Ordering::Relaxed);
        match (page.more, page.versions.last()) {
            (true, Some(last)) => {
                cursor = Some(Cursor {
                    before: false,
                    keys: Vec::new(),
                    rtype: rtype.to_string(),
                    id: last.id.clone(),
                })
            }
            _ => break,
        }
    }
    if let Some((mut w, o)) = file {
        w.flush()?;
        outputs.push(o);
    }
    Ok(())
}
