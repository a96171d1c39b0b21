//! The big code systems imported from their release files, which a hospital that holds the
//! licence downloads itself (`docs/terminology.md` says where): LOINC (`loinc`), SNOMED CT RF2
//! (`snomed`), RxNorm RRF (`rxnorm`). Each reader streams its files line by line into a
//! `Release`; `write` then stores it: the CodeSystem resource as a header (`content`
//! `not-present`, with the count), through the ingest path, and its concepts and hierarchy as
//! rows, in one transaction. Importing a version again replaces what that version held.

pub mod loinc;
pub mod rxnorm;
pub mod snomed;

use super::tables::{self, ConceptRow, ParentRow};
use crate::ingest::restate::{self, Stated, Unit};
use crate::ingest::{Channel, Ingest, Source};
use crate::store::{Actor, StoreError, Tx};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Lines of one release file read at most (the largest, SNOMED CT's descriptions, has about
/// two million).
pub const MAX_LINES: usize = 20_000_000;
/// Bytes of one line at most.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A code system's release, read.
#[derive(Debug, Default)]
pub struct Release {
    pub url: String,
    pub version: String,
    pub name: String,
    pub title: String,
    /// `CodeSystem.property` declarations.
    pub property: Vec<Value>,
    pub concepts: Vec<Concept>,
    /// (child, parent)
    pub parents: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub inactive: bool,
    /// `CodeSystem.concept.property` entries.
    pub properties: Vec<Value>,
    /// `CodeSystem.concept.designation` entries.
    pub designations: Vec<Value>,
}

/// A string property entry.
pub fn property(code: &str, value: &str) -> Value {
    json!({"code": code, "valueString": value})
}

/// A code property entry (a concept of the same system).
pub fn code_property(code: &str, value: &str) -> Value {
    json!({"code": code, "valueCode": value})
}

/// Told of the import's progress, in words.
pub type Progress<'a> = &'a dyn Fn(&str);

/// The CodeSystem resource's id for a release: the one that already has its url and version,
/// else `name-version`, made an id.
fn home(ingest: &Ingest, release: &Release) -> Result<String, StoreError> {
    let existing = ingest
        .store
        .read(|c| tables::by_url(c, "CodeSystem", &release.url))?
        .into_iter()
        .find(|r| r.version == release.version);
    if let Some(r) = existing {
        return Ok(r.resource_id);
    }
    // a SNOMED CT version is a URI: its last segment (the date) names it
    let version = release
        .version
        .rsplit('/')
        .next()
        .unwrap_or(&release.version);
    let id: String = format!("{}-{version}", release.name)
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                true => c,
                false => '-',
            },
        )
        .take(64)
        .collect();
    Ok(id)
}

/// Store `release`: its header through the ingest path, its rows in the same transaction.
/// Returns the CodeSystem's id.
pub fn write(ingest: &Ingest, release: Release, progress: Progress) -> anyhow::Result<String> {
    anyhow::ensure!(!release.concepts.is_empty(), "the release has no concepts");
    let id = home(ingest, &release)?;
    let header = json!({
        "resourceType": "CodeSystem",
        "id": id,
        "url": release.url,
        "version": release.version,
        "name": release.name,
        "title": release.title,
        "status": "active",
        "hierarchyMeaning": "is-a",
        "content": "not-present",
        "count": release.concepts.len(),
        "property": release.property,
    });
    let writer = ingest.writer(
        Arc::new(crate::auth::Grant::unrestricted()),
        Actor::Named(format!("import {}", release.name)),
        Source {
            channel: Channel::Load,
            system: format!("{}@{}", release.name, release.version),
            reviewed_by: None,
        },
        format!("import-{}", uuid::Uuid::now_v7()),
    );
    let accepted = writer
        .accept(header, "CodeSystem", false)
        .map_err(|e| anyhow::anyhow!("the CodeSystem header: {e}"))?;
    let (concepts, parents) = rows(&id, release);
    progress(&format!(
        "writing {} concepts and {} parent links",
        concepts.len(),
        parents.len()
    ));
    let unit = Rows {
        id: &id,
        concepts,
        parents,
    };
    let stated = [Stated {
        rtype: "CodeSystem",
        id: id.clone(),
        body: accepted.resource,
    }];
    restate::restate_all(&ingest.store, &writer, &stated, &unit)?;
    Ok(id)
}

/// The release as rows: each code once (the first wins), each link once and only between
/// codes the release has.
fn rows(id: &str, release: Release) -> (Vec<ConceptRow>, Vec<ParentRow>) {
    let json = |v: Vec<Value>| (!v.is_empty()).then(|| Value::Array(v).to_string());
    let mut seen = HashSet::new();
    let mut concepts = Vec::with_capacity(release.concepts.len());
    for c in release.concepts {
        if !seen.insert(c.code.clone()) {
            continue;
        }
        concepts.push(ConceptRow {
            system_id: id.to_string(),
            position: concepts.len() as i64,
            code: c.code,
            display: c.display,
            definition: c.definition,
            inactive: c.inactive,
            properties: json(c.properties),
            designations: json(c.designations),
        });
    }
    let mut linked = HashSet::new();
    let parents = release
        .parents
        .into_iter()
        .filter(|(c, p)| c != p && seen.contains(c) && seen.contains(p))
        .filter(|l| linked.insert(l.clone()))
        .map(|(child, parent)| ParentRow {
            system_id: id.to_string(),
            child,
            parent,
        })
        .collect();
    (concepts, parents)
}

/// The rows, written after the header in its transaction (replacing what this version held).
struct Rows<'a> {
    id: &'a str,
    concepts: Vec<ConceptRow>,
    parents: Vec<ParentRow>,
}

impl Unit for Rows<'_> {
    type Done = ();
    type Seen = ();

    fn look(&self, _: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        tables::clear_concepts(tx.conn, self.id)?;
        tables::insert_concepts(tx.conn, self.concepts.clone())?;
        tables::insert_parents(tx.conn, self.parents.clone())?;
        Ok(())
    }
}

/// The lines of a release file, each bounded, and their count.
pub fn lines(
    path: &std::path::Path,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<String>>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    let mut reader = std::io::BufReader::new(file);
    let mut n = 0usize;
    Ok(std::iter::from_fn(move || {
        let mut line = Vec::new();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => None,
            Err(e) => Some(Err(anyhow::anyhow!("{shown}: {e}"))),
            Ok(_) if line.len() > MAX_LINE_BYTES && !line.ends_with(b"\n") => {
                Some(Err(anyhow::anyhow!(
                    "{shown}: line {} is longer than {MAX_LINE_BYTES} bytes",
                    n + 1
                )))
            }
            Ok(_) => {
                n += 1;
                if n > MAX_LINES {
                    return Some(Err(anyhow::anyhow!("{shown}: more than {MAX_LINES} lines")));
                }
                let text = String::from_utf8_lossy(&line);
                Some(Ok(text.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }))
}

#[cfg(test)]
mod hostile_tests;
