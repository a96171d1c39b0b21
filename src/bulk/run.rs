//! Carrying out one export: every type it covers read in one snapshot of the store, page by
//! page in id order through the search engine (so `_typeFilter`, the token's limits and
//! `_since` are searches like any other), written as ndjson files of at most `per_file`
//! resources. Memory stays at one page whatever the store's size.

use super::files::ExportFiles;
use super::out::Out;
use super::provenance::Associated;
use super::request::{ExportRequest, Level, MAX_PATIENTS};
use crate::auth::{Grant, Interaction};
use crate::fhir::definitions::Definitions;
use crate::fhir::resource::now_micros;
use crate::fhir::search::filter::{
    Filter, any_patient_compartment, compartment_of, compartment_types,
};
use crate::fhir::search::query::parse_clause;
use crate::store::StoreError;
use crate::store::db::DbConnection;
use crate::store::search::{Cursor, Scope, SearchSpec, search};
use crate::store::versions::Version;
use diesel::connection::{Connection, SimpleConnection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
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
    /// A file of deletions (Bundles of DELETE entries), the manifest's `deleted`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
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
    /// What was asked cannot be carried out (a Group gone, a filter that no longer parses).
    #[error("{0}")]
    Refused(String),
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
        let patients = patients_of(conn, request, grant)?;
        let mut outputs = Vec::new();
        let mut associated = match request.provenance {
            Some(mode) => {
                let limit = grant
                    .search_limit("Provenance")
                    .map_err(|d| RunError::Refused(format!("includeAssociatedData: {d}")))?;
                let mut out = Out::new(files, job, "Provenance", per_file);
                out.elements = request.elements_for("Provenance");
                Some(Associated::new(out, mode, limit.into_iter().collect()))
            }
            None => None,
        };
        for rtype in types_of(request, grant) {
            *progress.current.lock().unwrap_or_else(|p| p.into_inner()) = rtype.clone();
            let Some(filters) = filters_of(request, grant, &rtype)? else {
                continue;
            };
            let mut own = Out::new(files, job, &rtype, per_file);
            own.elements = request.elements_for(&rtype);
            // Provenance exported as a type goes to the file its associated ones go to
            let (out, mut follow) = match associated.as_mut() {
                Some(a) if rtype == "Provenance" => (&mut a.out, None),
                a => (&mut own, a),
            };
            // a resource in the compartments of members of two batches is written once
            if matches!(&patients, Patients::These(ids) if ids.len() > BATCH) {
                out.seen.get_or_insert_with(HashSet::new);
            }
            let mut walk = |compartment: Option<Filter>| {
                walk(
                    conn,
                    &rtype,
                    &filters,
                    compartment,
                    progress,
                    out,
                    follow.as_deref_mut(),
                )
            };
            match &patients {
                // every resource of the type (a system export)
                Patients::All => walk(None)?,
                Patients::Any => walk(any_patient_compartment(&rtype).ok())?,
                Patients::These(ids) => {
                    for batch in ids.chunks(BATCH) {
                        walk(compartment_of(&rtype, batch).ok())?;
                    }
                }
            }
            outputs.extend(own.close()?);
        }
        if let Some(a) = associated {
            outputs.extend(a.out.close()?);
        }
        if let (Some(since), Level::System) = (request.since, &request.level) {
            deletions(conn, files, job, request, grant, since, &mut outputs)?;
        }
        Ok((transaction_time, outputs))
    })
}

/// The types an export covers: those named, else every type the token may search.
fn types_of(request: &ExportRequest, grant: &Grant) -> Vec<String> {
    if !request.types.is_empty() {
        return request.types.clone();
    }
    let all: Vec<&str> = match request.level {
        Level::System => Definitions::get().resource_types().collect(),
        Level::Patient | Level::Group(_) => compartment_types().collect(),
    };
    let mut types: Vec<String> = all
        .into_iter()
        .filter(|t| grant.search_limit(t).is_ok())
        .map(str::to_string)
        .collect();
    types.sort();
    types
}

/// What a resource of `rtype` must match: one of the type's `_typeFilter` searches, the
/// token's limit, changed after `_since` and not after `_until`. `None` when the token may no longer search the type
/// (it lost the scope since the kick-off); a filter that cannot be built fails the export.
fn filters_of(
    request: &ExportRequest,
    grant: &Grant,
    rtype: &str,
) -> Result<Option<Vec<Filter>>, RunError> {
    let Ok(limit) = grant.search_limit(rtype) else {
        return Ok(None);
    };
    let refused = |why: String| RunError::Refused(format!("{rtype}: {why}"));
    let mut filters = Vec::new();
    let alternatives = request.filters_for(rtype).map_err(|e| refused(e.0))?;
    if !alternatives.is_empty() {
        filters.push(Filter::Or(
            alternatives.into_iter().map(Filter::And).collect(),
        ));
    }
    filters.extend(limit);
    // to the microsecond, the store's precision: `gt` leaves out `_since` itself
    for (prefix, at) in [("gt", request.since), ("le", request.until)] {
        let Some(at) = at else { continue };
        let at = chrono::DateTime::from_timestamp_micros(at)
            .ok_or_else(|| refused(format!("{at} is out of range")))?
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let clause = parse_clause(rtype, "_lastUpdated", &format!("{prefix}{at}"))
            .map_err(|e| refused(e.message))?
            .ok_or_else(|| refused("_lastUpdated is not searchable".into()))?;
        filters.push(Filter::Clause(clause));
    }
    Ok(Some(filters))
}

/// The resources deleted after `since`, for a `_since` export of the system: one file of
/// Bundles (a DELETE entry each, at most a page a Bundle), for the manifest's `deleted`. Only
/// types the token reaches whole: a limited token cannot be shown what no longer is.
fn deletions(
    conn: &mut DbConnection,
    files: &dyn ExportFiles,
    job: &str,
    request: &ExportRequest,
    grant: &Grant,
    since: i64,
    outputs: &mut Vec<Output>,
) -> Result<(), RunError> {
    use crate::store::schema::resources as r;
    use diesel::prelude::*;
    let mut file: Option<(Box<dyn Write + Send>, Output)> = None;
    for rtype in types_of(request, grant) {
        if !matches!(grant.search_limit(&rtype), Ok(None)) {
            continue;
        }
        let mut after = String::new();
        loop {
            let ids: Vec<String> = r::table
                .filter(r::resource_type.eq(&rtype))
                .filter(r::deleted.eq(true))
                .filter(r::last_updated.gt(since))
                .filter(r::last_updated.le(request.until.unwrap_or(i64::MAX)))
                .filter(r::resource_id.gt(&after))
                .order(r::resource_id.asc())
                .limit(PAGE)
                .select(r::resource_id)
                .load(conn)?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            if file.is_none() {
                let name = "deleted-1.ndjson".to_string();
                let o = Output {
                    rtype: "Bundle".into(),
                    name: name.clone(),
                    count: 0,
                    deleted: true,
                };
                file = Some((files.create(job, &name)?, o));
            }
            let (w, o) = file.as_mut().expect("a file is open");
            let entries: Vec<Value> = ids
                .iter()
                .map(|id| serde_json::json!({"request": {"method": "DELETE", "url": format!("{rtype}/{id}")}}))
                .collect();
            let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            serde_json::to_writer(&mut *w, &bundle).map_err(std::io::Error::from)?;
            w.write_all(b"\n")?;
            o.count += 1;
            if (ids.len() as i64) < PAGE {
                break;
            }
            after = last;
        }
    }
    if let Some((mut w, o)) = file {
        w.flush()?;
        outputs.push(o);
    }
    Ok(())
}

/// Whose compartments an export reads.
enum Patients {
    /// No compartment: every resource of each type (a system export).
    All,
    /// Any patient's (`Patient/$export`).
    Any,
    /// These patients' (`patient`, or a Group's members).
    These(Vec<String>),
}

/// Patients per compartment query.
const BATCH: usize = 500;

/// Whose compartments `request` reads; a Group's members as of the snapshot.
fn patients_of(
    conn: &mut DbConnection,
    request: &ExportRequest,
    grant: &Grant,
) -> Result<Patients, RunError> {
    Ok(match &request.level {
        Level::System => Patients::All,
        Level::Patient if request.patients.is_empty() => Patients::Any,
        Level::Patient => Patients::These(request.patients.clone()),
        Level::Group(id) => {
            let group = crate::store::versions::current(conn, "Group", id)?
                .filter(|v| !v.deleted)
                .ok_or_else(|| RunError::Refused(format!("Group/{id} is not in the store")))?;
            let json = group.json();
            grant
                .check(Interaction::Read, "Group", id, || &json)
                .map_err(|d| RunError::Refused(d.to_string()))?;
            Patients::These(members(&json)?)
        }
    })
}

/// The Patients a Group lists as its current members.
fn members(group: &Value) -> Result<Vec<String>, RunError> {
    let mut ids: Vec<String> = group["member"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|m| m["inactive"] != true)
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    if ids.len() > MAX_PATIENTS {
        return Err(RunError::Refused(format!(
            "the Group has {} members; an export reads at most {MAX_PATIENTS}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Every resource of `rtype` that matches `filters` (and `compartment`) into `out`, with
/// their Provenance when `associated`.
fn walk(
    conn: &mut DbConnection,
    rtype: &str,
    filters: &[Filter],
    compartment: Option<Filter>,
    progress: &Progress,
    out: &mut Out,
    mut associated: Option<&mut Associated>,
) -> Result<(), RunError> {
    let mut all = filters.to_vec();
    all.extend(compartment);
    every_page(conn, rtype, &all, |conn, page| {
        if progress.cancelled.load(Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        let mut n = 0;
        for v in page {
            if out.write(v)? {
                n += 1;
            }
        }
        if let Some(a) = associated.as_deref_mut() {
            n += a.follow(conn, rtype, page)?;
        }
        progress.exported.fetch_add(n, Ordering::Relaxed);
        Ok(())
    })
}

/// Every resource of `rtype` that matches `filters`, a page at a time in id order, to `each`
/// (which may query the store between pages).
pub(super) fn every_page(
    conn: &mut DbConnection,
    rtype: &str,
    filters: &[Filter],
    mut each: impl FnMut(&mut DbConnection, &[Version]) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let types = [(rtype.to_string(), filters.to_vec())];
    let mut cursor: Option<Cursor> = None;
    loop {
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
        each(conn, &page.versions)?;
        match (page.more, page.versions.last()) {
            (true, Some(last)) => {
                cursor = Some(Cursor {
                    before: false,
                    keys: Vec::new(),
                    rtype: rtype.to_string(),
                    id: last.id.clone(),
                })
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `_typeFilter` that no longer parses when the job runs fails the export: dropped, it
    /// would have exported every resource of the type.
    #[test]
    fn a_filter_that_no_longer_parses_fails_the_export() {
        let request = ExportRequest {
            level: Level::System,
            types: vec!["Observation".into()],
            patients: Vec::new(),
            elements: Vec::new(),
            since: None,
            until: None,
            provenance: None,
            type_filters: vec![("Observation".into(), "Observation?nonsense=1".into())],
            ignored: Vec::new(),
        };
        let grant = Grant::unrestricted();
        let e = filters_of(&request, &grant, "Observation").unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
        // a type the token may not search is left out, not an error
        let narrow = Grant::stored("t", "system/Patient.rs", None);
        assert!(
            filters_of(&request, &narrow, "Observation")
                .unwrap()
                .is_none()
        );
    }
}
