//! One dropped file, applied: a CSV file's rows in chunks, each chunk a page of the rule's
//! record type (`page::apply`: mapped, validated, written with the exception queue's rows)
//! whose transaction also advances the file's row in `dropped_files` (how far it is read, its
//! report so far); an HL7v2 file's messages one by one through the HL7v2 path
//! (`ingest::handle`, which recognises a message it applied before), the row advanced after
//! each. A process stopped mid-file resumes after the last chunk or message it recorded:
//! nothing lost, nothing applied twice.

use super::delimited::Rows;
use super::folder::{Folder, Format, Rule};
use super::page::{self, Applied, Page};
use super::source::Source;
use crate::adapters::hl7v2::ack::AckCode;
use crate::adapters::hl7v2::batch;
use crate::adapters::hl7v2::ingest::{self as hl7v2, Inbound};
use crate::fhir::resource::{instant, now_micros};
use crate::ingest::Ingest;
use crate::store::schema::dropped_files as df;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// A file's outcomes (its report's `outcome`, its row's status).
pub const READING: &str = "reading";
/// Read through: every record applied, or refused and listed in the report.
pub const DONE: &str = "done";
/// Not readable as its rule says: nothing of it applied.
pub const FAILED: &str = "failed";
/// The same content was applied before (the report names the file it came in).
pub const DUPLICATE: &str = "duplicate";

/// Rows a CSV chunk holds: one transaction.
const CHUNK: usize = 500;
/// A report lists at most this many refused records (it counts them all).
const LISTED: usize = 1_000;

/// What became of a dropped file: the report beside it in `done/` or `failed/`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub source: String,
    pub file: String,
    pub sha256: String,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    pub outcome: String,
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Records (CSV rows, HL7v2 messages) read.
    pub records: usize,
    /// Applied (or found already saying what the store says).
    pub accepted: usize,
    /// Not applied: in `refusedRecords`, and (those that could be mapped again) in the
    /// exception queue.
    pub refused: usize,
    /// HL7v2 messages received before (by another file or MLLP): acknowledged, not applied
    /// twice.
    #[serde(default)]
    pub duplicates: usize,
    #[serde(default)]
    pub refused_records: Vec<RefusedRecord>,
    /// What the file says that does not add up (a batch trailer's count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the file was refused whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file this content came in first, when it is a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// One record not applied, where it is in the file and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefusedRecord {
    pub line: u64,
    /// The vendor's key of the record (CSV) or the message's control id (HL7v2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The element and JSONPath at fault (CSV), or the ERR location (HL7v2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HL7v2: the ACK code the message got (AE, AR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    pub reason: String,
}

impl Report {
    fn refuse(&mut self, r: RefusedRecord) {
        self.refused += 1;
        if self.refused_records.len() < LISTED {
            self.refused_records.push(r);
        }
    }
}

/// What processing a file needs.
pub struct Context<'a> {
    pub ingest: &'a Ingest,
    pub inbound: &'a Inbound,
    pub source: &'a Source,
    pub folder: &'a Folder,
    pub rule: &'a Rule,
    /// Asked between chunks whether to go on (the sweep's lease).
    pub keep: &'a dyn Fn() -> Result<(), String>,
}

/// Where a file's row stands.
struct Row {
    status: String,
    done: usize,
    report: Report,
}

/// Apply the file at `path` (named `name`); `resumed` when a stopped process left it in
/// `processing/`. The file's report; an error (the store or the lease) leaves the file where
/// it is for the next sweep.
pub fn process(cx: &Context<'_>, path: &Path, name: &str, resumed: bool) -> Result<Report, String> {
    let store = &cx.ingest.store;
    let source = cx.source.definition.name.as_str();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let sha = sha256_of(path)?;
    let row = store
        .read(|c| row(c, source, &sha))
        .map_err(|e| e.to_string())?;
    let mut report = match row {
        Some(r) if r.status == READING => return go_on(cx, path, r.report, r.done),
        // finished before the process stopped, not yet moved: move it now
        Some(r) if resumed => return Ok(r.report),
        Some(r) if r.status == DONE => {
            return Ok(Report {
                outcome: DUPLICATE.into(),
                file: name.into(),
                started: instant(now_micros()),
                finished: Some(instant(now_micros())),
                duplicate_of: Some(format!(
                    "{} ({})",
                    r.report.file,
                    r.report.finished.unwrap_or_default()
                )),
                records: 0,
                accepted: 0,
                refused: 0,
                duplicates: 0,
                refused_records: Vec::new(),
                warnings: Vec::new(),
                error: None,
                ..r.report
            });
        }
        // failed before (a map since fixed, say), or new: from the start
        _ => Report {
            source: source.into(),
            file: name.into(),
            sha256: sha.clone(),
            format: cx.rule.format.as_str().into(),
            record_type: cx.rule.record.clone(),
            outcome: READING.into(),
            started: instant(now_micros()),
            ..Report::default()
        },
    };
    if size > cx.folder.max_file_bytes {
        report.error = Some(format!(
            "{size} bytes: larger than the source's maxFileBytes ({})",
            cx.folder.max_file_bytes
        ));
        return finish(cx, report, 0);
    }
    store
        .write_rows(|c| start(c, &report))
        .map_err(|e| e.to_string())?;
    go_on(cx, path, report, 0)
}

/// A file in `processing/` that no rule of the definition takes any more (claimed under a
/// rule since removed or changed): failed, with why, and what it had applied kept in its
/// report (its row, if it had one, says so too). Nothing more of it is applied: the rule
/// that said how to read it is gone.
pub fn abandoned(
    store: &crate::store::Store,
    source: &str,
    path: &Path,
    name: &str,
) -> Result<Report, String> {
    let sha = sha256_of(path)?;
    let found = store
        .read(|c| row(c, source, &sha))
        .map_err(|e| e.to_string())?;
    let had_row = found.is_some();
    let (mut report, done) = match found {
        Some(r) => (r.report, r.done),
        None => (
            Report {
                source: source.into(),
                file: name.into(),
                sha256: sha,
                started: instant(now_micros()),
                ..Report::default()
            },
            0,
        ),
    };
    report.outcome = FAILED.into();
    report.error = Some(format!(
        "{name}: no rule of the source's drop folder takes this file any more (claimed under \
         one since removed or changed): what it applied before is counted here, the rest was \
         not read"
    ));
    report.finished = Some(instant(now_micros()));
    // its row (when it had one) says so too; one it never had is not made now
    if had_row {
        store
            .write_rows(|c| advance(c, &report, done))
            .map_err(|e| e.to_string())?;
    }
    Ok(report)
}

/// Read the file on from record `done`.
fn go_on(cx: &Context<'_>, path: &Path, report: Report, done: usize) -> Result<Report, String> {
    match cx.rule.format {
        Format::Csv => csv(cx, path, report, done),
        Format::Hl7v2 => hl7v2(cx, path, report, done),
    }
}

fn csv(cx: &Context<'_>, path: &Path, mut report: Report, done: usize) -> Result<Report, String> {
    let open = || -> Result<Rows<std::io::BufReader<std::fs::File>>, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Rows::open(
            std::io::BufReader::new(file),
            cx.rule.delimiter(),
            cx.rule.encoding,
        )
    };
    // counted first: a file with too many rows is refused before any of it is applied
    let mut rows = match open() {
        Ok(rows) => rows,
        Err(e) => return fail(cx, report, e),
    };
    let mut count = 0usize;
    loop {
        match rows.next_row() {
            Ok(Some(_)) => count += 1,
            Ok(None) => break,
            Err(e) => return fail(cx, report, e),
        }
        if count > cx.folder.max_records {
            let e = format!("more than {} records", cx.folder.max_records);
            return fail(cx, report, e);
        }
    }
    let mut rows = open()?;
    for _ in 0..done {
        rows.next_row()?;
    }
    let record_type = cx
        .rule
        .record
        .as_deref()
        .expect("checked: a CSV rule names its record");
    let (maps, name) = (&cx.source.maps, cx.source.definition.name.as_str());
    let mut done = done;
    loop {
        (cx.keep)()?;
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            match rows.next_row()? {
                Some(row) => chunk.push(row),
                None => break,
            }
        }
        if chunk.is_empty() {
            break;
        }
        let (mut records, mut lines, mut unread) = (Vec::new(), Vec::new(), Vec::new());
        for (line, row) in &chunk {
            match row {
                Ok(r) => {
                    records.push(r.clone());
                    lines.push(*line);
                }
                Err(e) => unread.push((*line, e.clone())),
            }
        }
        let through = done + chunk.len();
        let advanced = |applied: &Applied| {
            let mut r = report.clone();
            r.records += chunk.len();
            r.accepted += applied.accepted;
            let mut refused: Vec<RefusedRecord> = unread
                .iter()
                .map(|(line, why)| RefusedRecord {
                    line: *line,
                    key: None,
                    element: None,
                    path: None,
                    ack: None,
                    reason: format!("the row cannot be read: {why}"),
                })
                .collect();
            refused.extend(applied.refusals.iter().map(|(at, why)| RefusedRecord {
                line: lines[*at],
                key: maps.key_of(record_type, &records[*at]),
                element: Some(why.element.clone()),
                path: Some(why.path.clone()),
                ack: None,
                reason: why.reason.clone(),
            }));
            refused.sort_by_key(|r| r.line);
            for one in refused {
                r.refuse(one);
            }
            r
        };
        let also =
            |c: &mut DbConnection, applied: &Applied| advance(c, &advanced(applied), through);
        let page = Page {
            record_type,
            records: &records,
            cursor: None,
            also: Some(&also),
        };
        let applied = page::in_context(&cx.ingest.store, cx.source.zone, |pcx| {
            page::apply(cx.ingest, name, maps, pcx, &page)
        })
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
        report = advanced(&applied);
        done = through;
    }
    report.outcome = DONE.into();
    finish(cx, report, done)
}

fn hl7v2(cx: &Context<'_>, path: &Path, mut report: Report, done: usize) -> Result<Report, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cx.folder.max_file_bytes).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let limits = batch::Limits {
        max_messages: cx.folder.max_records,
        ..batch::Limits::default()
    };
    let split = match batch::split(&bytes, limits) {
        Ok(b) => b,
        Err(e) => return fail(cx, report, e),
    };
    drop(bytes);
    report.warnings = split.warnings;
    let store = &cx.ingest.store;
    for (i, part) in split.messages.iter().enumerate().skip(done) {
        (cx.keep)()?;
        let outcome = hl7v2::handle(cx.inbound, &part.bytes);
        report.records += 1;
        match outcome.code {
            AckCode::Accept if outcome.duplicate => {
                report.accepted += 1;
                report.duplicates += 1;
            }
            AckCode::Accept => report.accepted += 1,
            code => {
                let problem = outcome.problem.as_ref();
                let control_id =
                    crate::adapters::hl7v2::message::parse(&String::from_utf8_lossy(&part.bytes))
                        .ok()
                        .map(|m| m.header().control_id)
                        .filter(|id| !id.is_empty());
                report.refuse(RefusedRecord {
                    line: part.line as u64,
                    key: control_id,
                    element: problem
                        .map(|p| p.location.clone())
                        .filter(|l| !l.is_empty()),
                    path: None,
                    ack: Some(code.as_str().into()),
                    reason: problem.map(|p| p.text.clone()).unwrap_or_default(),
                });
            }
        }
        store
            .write_rows(|c| advance(c, &report, i + 1))
            .map_err(|e| e.to_string())?;
    }
    report.outcome = DONE.into();
    finish(cx, report, split.messages.len())
}

/// The file refused whole, for `why`: nothing of it was applied.
fn fail(cx: &Context<'_>, mut report: Report, why: String) -> Result<Report, String> {
    report.error = Some(why);
    report.outcome = FAILED.into();
    finish(cx, report, 0)
}

fn finish(cx: &Context<'_>, mut report: Report, done: usize) -> Result<Report, String> {
    if report.outcome == READING {
        report.outcome = FAILED.into();
    }
    report.finished = Some(instant(now_micros()));
    cx.ingest
        .store
        .write_rows(|c| {
            start(c, &report)?;
            advance(c, &report, done)
        })
        .map_err(|e| e.to_string())?;
    Ok(report)
}

/// The file's row as `report` starts it (made, or taken back to the start).
fn start(c: &mut DbConnection, report: &Report) -> Result<(), StoreError> {
    let text = serde_json::to_string(report).map_err(|e| StoreError::Database(e.to_string()))?;
    let key = df::table
        .filter(df::source.eq(&report.source))
        .filter(df::sha256.eq(&report.sha256));
    let changed = diesel::update(key)
        .set((
            df::name.eq(&report.file),
            df::status.eq(&report.outcome),
            df::done_count.eq(0i64),
            df::started_at.eq(now_micros()),
        ))
        .execute(c)?;
    if changed == 0 {
        diesel::insert_into(df::table)
            .values((
                df::source.eq(&report.source),
                df::sha256.eq(&report.sha256),
                df::name.eq(&report.file),
                df::format.eq(&report.format),
                df::status.eq(&report.outcome),
                df::done_count.eq(0i64),
                df::report.eq(&text),
                df::started_at.eq(now_micros()),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// The file's row: read through record `done`, its report so far.
fn advance(c: &mut DbConnection, report: &Report, done: usize) -> Result<(), StoreError> {
    let text = serde_json::to_string(report).map_err(|e| StoreError::Database(e.to_string()))?;
    let finished = (report.outcome != READING).then(now_micros);
    diesel::update(
        df::table
            .filter(df::source.eq(&report.source))
            .filter(df::sha256.eq(&report.sha256)),
    )
    .set((
        df::done_count.eq(done as i64),
        df::report.eq(text),
        df::status.eq(&report.outcome),
        df::finished_at.eq(finished),
    ))
    .execute(c)?;
    Ok(())
}

fn row(c: &mut DbConnection, source: &str, sha: &str) -> Result<Option<Row>, StoreError> {
    let found: Option<(String, i64, String)> = df::table
        .filter(df::source.eq(source))
        .filter(df::sha256.eq(sha))
        .select((df::status, df::done_count, df::report))
        .get_result(c)
        .optional()?;
    Ok(found.map(|(status, done, report)| Row {
        status,
        done: done.max(0) as usize,
        report: serde_json::from_str(&report).unwrap_or_default(),
    }))
}

/// The latest files of `source`, newest first (`emrsync source list`).
pub fn recent(c: &mut DbConnection, source: &str, limit: i64) -> Result<Vec<Report>, StoreError> {
    let texts: Vec<String> = df::table
        .filter(df::source.eq(source))
        .order(df::started_at.desc())
        .limit(limit)
        .select(df::report)
        .load(c)?;
    Ok(texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect())
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        cx.update(&buf[..n]);
    }
    Ok(hex::encode(cx.finish()))
}
