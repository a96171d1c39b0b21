//! LOINC from its release: `LoincTable/Loinc.csv` (one row per LOINC term, columns by their
//! header names) and, for the hierarchy, `AccessoryFiles/ComponentHierarchyBySystem/
//! ComponentHierarchyBySystem.csv` (or the older `MultiAxialHierarchy.csv`: `IMMEDIATE_PARENT`,
//! `CODE`, `CODE_TEXT`), whose part codes (`LP...`) become concepts too.
//!
//! A term's display is its `LONG_COMMON_NAME`; `SHORTNAME` and `DisplayName` are designations;
//! `COMPONENT`, `PROPERTY`, `TIME_ASPCT`, `SYSTEM`, `SCALE_TYP`, `METHOD_TYP`, `CLASS`,
//! `CLASSTYPE` and `STATUS` are properties (as HL7's LOINC CodeSystem names them); a
//! `DEPRECATED` term is inactive.

use super::{Concept, Progress, Release, property};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

pub const URL: &str = "http://loinc.org";

const PROPERTIES: [&str; 9] = [
    "COMPONENT",
    "PROPERTY",
    "TIME_ASPCT",
    "SYSTEM",
    "SCALE_TYP",
    "METHOD_TYP",
    "CLASS",
    "CLASSTYPE",
    "STATUS",
];

/// Records of one CSV file at most, and bytes of one record.
const MAX_RECORDS: usize = super::MAX_LINES;

fn reader(path: &Path) -> anyhow::Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(file))
}

/// Each record of `path` as (column name -> value), bounded.
fn records(
    path: &Path,
    mut each: impl FnMut(&HashMap<&str, &str>) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut r = reader(path)?;
    let headers = r
        .headers()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .clone();
    let mut n = 0;
    for record in r.records() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        n += 1;
        anyhow::ensure!(
            n <= MAX_RECORDS,
            "{}: more than {MAX_RECORDS} records",
            path.display()
        );
        anyhow::ensure!(
            record.as_slice().len() <= super::MAX_LINE_BYTES,
            "{}: record {n} is longer than {} bytes",
            path.display(),
            super::MAX_LINE_BYTES
        );
        let row: HashMap<&str, &str> = headers.iter().zip(record.iter()).collect();
        each(&row)?;
    }
    Ok(n)
}

pub fn read(
    table: &Path,
    hierarchy: Option<&Path>,
    version: &str,
    progress: Progress,
) -> anyhow::Result<Release> {
    let mut release = Release {
        url: URL.into(),
        version: version.into(),
        name: "LOINC".into(),
        title: "LOINC Code System".into(),
        property: PROPERTIES
            .iter()
            .map(|p| json!({"code": p, "type": "string"}))
            .chain([
                json!({"code": "parent", "type": "code"}),
                json!({"code": "child", "type": "code"}),
            ])
            .collect(),
        ..Default::default()
    };
    let mut known = std::collections::HashSet::new();
    let n = records(table, |row| {
        let code = row.get("LOINC_NUM").copied().unwrap_or("").trim();
        anyhow::ensure!(
            !code.is_empty(),
            "{}: a row has no LOINC_NUM",
            table.display()
        );
        let text = |k: &str| row.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut c = Concept {
            code: code.into(),
            display: text("LONG_COMMON_NAME").map(str::to_string),
            definition: text("DefinitionDescription").map(str::to_string),
            inactive: text("STATUS") == Some("DEPRECATED"),
            ..Default::default()
        };
        for p in PROPERTIES {
            if let Some(v) = text(p) {
                c.properties.push(property(p, v));
            }
        }
        for (k, use_code) in [("SHORTNAME", "SHORTNAME"), ("DisplayName", "DisplayName")] {
            if let Some(v) = text(k) {
                c.designations.push(json!({"language": "en",
                    "use": {"system": URL, "code": use_code}, "value": v}));
            }
        }
        if c.display.is_none() {
            c.display = text("SHORTNAME").map(str::to_string);
        }
        known.insert(c.code.clone());
        release.concepts.push(c);
        if release.concepts.len().is_multiple_of(20_000) {
            progress(&format!("read {} LOINC terms", release.concepts.len()));
        }
        Ok(())
    })?;
    progress(&format!("read {n} LOINC terms from {}", table.display()));
    if let Some(h) = hierarchy {
        let mut parts = 0;
        let links = records(h, |row| {
            let code = row.get("CODE").copied().unwrap_or("").trim();
            let parent = row.get("IMMEDIATE_PARENT").copied().unwrap_or("").trim();
            if code.is_empty() {
                return Ok(());
            }
            if !known.contains(code) {
                // a part of the hierarchy (LP...), not a term: a concept of its own
                known.insert(code.to_string());
                parts += 1;
                release.concepts.push(Concept {
                    code: code.into(),
                    display: row.get("CODE_TEXT").map(|t| t.trim().to_string()),
                    properties: vec![property("CLASSTYPE", "part")],
                    ..Default::default()
                });
            }
            if !parent.is_empty() {
                release.parents.push((code.to_string(), parent.to_string()));
            }
            Ok(())
        })?;
        progress(&format!(
            "read {links} hierarchy rows ({parts} parts) from {}",
            h.display()
        ));
    }
    Ok(release)
}
