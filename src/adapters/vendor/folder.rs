//! A source's drop folder: systems without an API leave CSV exports or HL7v2 batch files in a
//! folder every few minutes. A sweep takes each file whose name a rule of the definition
//! matches, once it has stopped changing, moves it into `processing/` (so that no other sweep
//! takes it), applies it (`dropped`), and moves it to `done/` (read through: every record
//! applied, or in the report and the exception queue) or `failed/` (not readable as its rule
//! says: nothing of it applied), with `<name>.report.json` beside it.
//!
//! A file is processed once: its content's SHA-256 keys its row in `dropped_files`, so the
//! same file dropped again is recognised and moved to `done/` as a duplicate, and a file left
//! in `processing/` by a stopped process resumes where its last committed chunk left it.

use super::delimited::Encoding;
use super::dropped::{self, Report};
use super::source::Source;
use crate::adapters::hl7v2::ingest::Inbound;
use crate::ingest::Ingest;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The `drop` of a source definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Folder {
    /// The folder the files arrive in; `processing/`, `done/` and `failed/` are made in it.
    pub path: PathBuf,
    /// Seconds between sweeps.
    #[serde(default = "five")]
    pub poll_seconds: u64,
    /// A file is taken once it has not changed for this long (a file still being written is
    /// left for the next sweep; writers that rename a finished file into place can say 0).
    #[serde(default = "two")]
    pub settle_seconds: u64,
    /// A larger file is refused whole (moved to `failed/` unread).
    #[serde(default = "max_file_bytes")]
    pub max_file_bytes: u64,
    /// At most this many records (CSV rows, HL7v2 messages) in one file.
    #[serde(default = "max_records")]
    pub max_records: usize,
    /// Which files are taken, and as what: the first rule whose pattern a name matches.
    pub files: Vec<Rule>,
}

fn five() -> u64 {
    5
}
fn two() -> u64 {
    2
}
fn max_file_bytes() -> u64 {
    256 << 20
}
fn max_records() -> usize {
    1_000_000
}

/// Files of one kind: a pattern (`*` any run of characters, `?` one; case does not matter)
/// and what they hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub format: Format,
    /// CSV: the record type of the source each row is (its map).
    #[serde(default)]
    pub record: Option<String>,
    /// CSV: the character between values (`,` unless given: `;`, `|`, `\t`).
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A header row, then one record a row.
    Csv,
    /// HL7v2 messages, optionally in FHS/BHS batches: each through the HL7v2 path.
    Hl7v2,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Hl7v2 => "hl7v2",
        }
    }
}

impl Rule {
    /// The delimiter as the CSV reader takes it.
    pub fn delimiter(&self) -> u8 {
        match self.delimiter.as_deref() {
            Some("\\t") | Some("\t") => b'\t',
            Some(d) => d.as_bytes()[0],
            None => b',',
        }
    }
}

impl Folder {
    /// Check the rules against the source's record types (`types`).
    pub fn check(&self, types: &[&str]) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("drop.files: no rule, so no file would be taken".into());
        }
        if self.max_file_bytes == 0 || self.max_records == 0 {
            return Err("drop: maxFileBytes and maxRecords must be above 0".into());
        }
        for r in &self.files {
            let at = format!("drop.files '{}'", r.pattern);
            if r.pattern.is_empty() || r.pattern.contains(['/', '\\']) {
                return Err(format!("{at}: a pattern is a file name, without folders"));
            }
            match (r.format, &r.record) {
                (Format::Csv, Some(t)) if !types.contains(&t.as_str()) => {
                    return Err(format!("{at}: the source has no record type {t}"));
                }
                (Format::Csv, None) => {
                    return Err(format!("{at}: a CSV rule names its record type (record)"));
                }
                (Format::Hl7v2, Some(_)) => {
                    return Err(format!(
                        "{at}: HL7v2 files are mapped by the HL7v2 maps, not a record type"
                    ));
                }
                _ => {}
            }
            if let Some(d) = &r.delimiter {
                let one = d.len() == 1 && d.is_ascii() && !matches!(d.as_str(), "\"" | "\n");
                if !one && d != "\\t" {
                    return Err(format!(
                        "{at}: the delimiter is one ASCII character ('\\t' for a tab)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rule a file's name falls under.
    pub fn rule_for(&self, name: &str) -> Option<&Rule> {
        self.files.iter().find(|r| matches(&r.pattern, name))
    }

    pub fn processing(&self) -> PathBuf {
        self.path.join("processing")
    }
}

/// Whether `name` matches `pattern` (`*`, `?`; ASCII case ignored).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (
        pattern.chars().map(|c| c.to_ascii_lowercase()).collect(),
        name.chars().map(|c| c.to_ascii_lowercase()).collect(),
    );
    // the usual greedy match with one backtrack point: the last `*` seen
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The sweeps of one source's folder.
pub struct Dropper {
    pub ingest: Ingest,
    pub inbound: Inbound,
    pub source: Arc<Source>,
}

/// A sweep at most takes this many files (the next sweep takes the rest).
const FILES_A_SWEEP: usize = 1_000;

impl Dropper {
    fn folder(&self) -> &Folder {
        self.source
            .definition
            .drop_folder
            .as_ref()
            .expect("a dropper is made for a source with a drop folder")
    }

    /// Sweep for ever, every `pollSeconds`. Processes sharing a PostgreSQL database (and the
    /// folder) sweep one at a time: the one holding the lease `drop:<name>`.
    pub async fn run(self: Arc<Self>, owner: String) {
        let every = Duration::from_secs(self.folder().poll_seconds.max(1));
        let name = self.source.definition.name.clone();
        let lease = format!("drop:{name}");
        let store = self.ingest.store.clone();
        let shared = crate::store::lease::shared(&store).await.unwrap_or(true);
        loop {
            if shared {
                match crate::store::lease::hold(&store, &lease, &owner).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tokio::time::sleep(crate::store::lease::RETRY).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "the drop folder's lease cannot be read");
                        tokio::time::sleep(crate::store::lease::RETRY).await;
                        continue;
                    }
                }
            }
            let (me, lease, owner_now) = (self.clone(), lease.clone(), owner.clone());
            let swept = tokio::task::spawn_blocking(move || {
                let renewed = std::cell::Cell::new(Instant::now());
                let keep = || {
                    if !shared || renewed.get().elapsed() < Duration::from_secs(5) {
                        return Ok(());
                    }
                    renewed.set(Instant::now());
                    match crate::store::lease::hold_now(&me.ingest.store, &lease, &owner_now) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("another process sweeps this folder now".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                };
                me.sweep(&keep)
            })
            .await;
            match swept {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    metrics::counter!("emrsync_vendor_poll_failures_total", "source" => name.clone()).increment(1);
                    tracing::warn!(source = %name, error = %e, "the drop folder could not be swept; next sweep");
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "the drop folder's sweep failed")
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One sweep: first the files a stopped process left in `processing/`, then the settled
    /// new ones, oldest first. `keep` is asked between chunks whether to go on (the lease).
    /// The reports of the files finished; an error stops the sweep, the file it was on left in
    /// `processing/` for the next.
    pub fn sweep(&self, keep: &dyn Fn() -> Result<(), String>) -> Result<Vec<Report>, String> {
        let folder = self.folder();
        let processing = folder.processing();
        std::fs::create_dir_all(&processing)
            .map_err(|e| format!("{}: {e}", processing.display()))?;
        let mut reports = Vec::new();
        for (path, name) in files(&processing, 0, None)? {
            let report = match folder.rule_for(&name) {
                Some(_) => self.take(&path, true, keep)?,
                None => self.abandon(&path, &name)?,
            };
            reports.push(report);
        }
        let settle = Duration::from_secs(folder.settle_seconds);
        for (path, name) in files(&folder.path, settle.as_secs(), Some(folder))?
            .into_iter()
            .take(FILES_A_SWEEP)
        {
            let claimed = processing.join(&name);
            if claimed.exists() {
                continue;
            }
            match std::fs::rename(&path, &claimed) {
                Ok(()) => reports.push(self.take(&claimed, false, keep)?),
                // another sweep took it first
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Ok(reports)
    }

    /// A file in `processing/` no rule takes any more: to `failed/`, with its report.
    fn abandon(&self, path: &Path, name: &str) -> Result<Report, String> {
        let source = &self.source.definition.name;
        let report = dropped::abandoned(&self.ingest.store, source, path, name)?;
        let moved = place(path, &self.folder().path.join("failed"), name)?;
        write_report(&moved, &report)?;
        metrics::counter!("emrsync_vendor_files_total", "source" => source.clone(),
            "format" => "unknown", "outcome" => dropped::FAILED)
        .increment(1);
        tracing::warn!(source = %source, file = %name, error = report.error.as_deref().unwrap_or(""),
            "a file left in processing/ that no rule takes any more: moved to failed/");
        Ok(report)
    }

    /// Process the file at `path` (in `processing/`) and move it where it belongs.
    fn take(
        &self,
        path: &Path,
        resumed: bool,
        keep: &dyn Fn() -> Result<(), String>,
    ) -> Result<Report, String> {
        let folder = self.folder();
        let name = file_name(path);
        let rule = folder
            .rule_for(&name)
            .ok_or_else(|| format!("{name}: no rule of the definition takes it any more"))?;
        let cx = dropped::Context {
            ingest: &self.ingest,
            inbound: &self.inbound,
            source: &self.source,
            folder,
            rule,
            keep,
        };
        let report = dropped::process(&cx, path, &name, resumed)?;
        let to = match report.outcome.as_str() {
            dropped::FAILED => folder.path.join("failed"),
            _ => folder.path.join("done"),
        };
        let moved = place(path, &to, &name)?;
        write_report(&moved, &report)?;
        metrics::counter!("emrsync_vendor_files_total",
            "source" => self.source.definition.name.clone(),
            "format" => rule.format.as_str(), "outcome" => report.outcome.clone())
        .increment(1);
        match report.outcome.as_str() {
            dropped::DONE if report.refused == 0 => {
                tracing::info!(source = %self.source.definition.name, file = %name, records = report.records, "dropped file applied")
            }
            outcome => {
                tracing::warn!(source = %self.source.definition.name, file = %name, %outcome,
                    records = report.records, refused = report.refused, error = report.error.as_deref().unwrap_or(""),
                    "dropped file not applied in full: see its report")
            }
        }
        Ok(report)
    }
}

/// The regular files of `dir` (no hidden ones, no links) a rule of `folder` takes (every one
/// when `None`), unchanged for `settle` seconds, oldest first: their paths and names.
fn files(
    dir: &Path,
    settle: u64,
    folder: Option<&Folder>,
) -> Result<Vec<(PathBuf, String)>, String> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let taken = folder.is_none_or(|f| f.rule_for(&name).is_some());
        if !meta.is_file() || name.starts_with('.') || !taken {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        let age = now.duration_since(modified).unwrap_or_default();
        if age.as_secs_f64() < settle as f64 {
            continue;
        }
        found.push((modified, entry.path(), name));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p, n)| (p, n)).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Move `path` into `dir` under `name`, or, when a file of that name is already there (a
/// daily export of one name), under the time now before it.
fn place(path: &Path, dir: &Path, name: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut to = dir.join(name);
    if to.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        to = dir.join(format!("{stamp}-{name}"));
    }
    std::fs::rename(path, &to)
        .map_err(|e| format!("{} to {}: {e}", path.display(), to.display()))?;
    Ok(to)
}

/// `<file>.report.json` beside the moved file, written whole (to a temporary name, renamed).
fn write_report(moved: &Path, report: &Report) -> Result<(), String> {
    let to = PathBuf::from(format!("{}.report.json", moved.display()));
    let part = PathBuf::from(format!("{}.report.part", moved.display()));
    let text = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(&part, text).map_err(|e| format!("{}: {e}", part.display()))?;
    std::fs::rename(&part, &to).map_err(|e| format!("{}: {e}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_as_a_shell_would_ignoring_case() {
        assert!(matches("*.csv", "registry-2026-12-07.CSV"));
        assert!(matches("registry-*.csv", "registry-1.csv"));
        assert!(!matches("registry-*.csv", "other-1.csv"));
        assert!(matches("adt_??.hl7", "ADT_01.hl7"));
        assert!(!matches("adt_??.hl7", "ADT_1.hl7"));
        assert!(matches("*", "anything"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b", "xxaxxbxx"));
        assert!(!matches("*.csv", "x.csv.part"));
    }
}
