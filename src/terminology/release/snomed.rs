//! SNOMED CT from an RF2 Snapshot release (tab-separated, a header line each):
//! `sct2_Concept_Snapshot` (id, effectiveTime, active, moduleId, definitionStatusId),
//! `sct2_Description_Snapshot` (id, effectiveTime, active, moduleId, conceptId, languageCode,
//! typeId, term, caseSignificanceId), `sct2_Relationship_Snapshot` (id, effectiveTime, active,
//! moduleId, sourceId, destinationId, relationshipGroup, typeId, ...; the inferred file, or the
//! stated one) and, optionally, a language reference set (`der2_cRefset_Language...`: id,
//! effectiveTime, active, moduleId, refsetId, referencedComponentId, acceptabilityId).
//!
//! A concept's display is its preferred synonym when a language reference set is given, else
//! its fully specified name; every active description is a designation (its use: FSN or
//! synonym). Active `116680003 |Is a|` relationships make the hierarchy. An inactive concept
//! is kept, inactive.

use super::{Concept, Progress, Release, lines};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub const URL: &str = "http://snomed.info/sct";
const IS_A: &str = "116680003";
const FSN: &str = "900000000000003001";
const SYNONYM: &str = "900000000000013009";
const PREFERRED: &str = "900000000000548007";

pub struct Files<'a> {
    pub concepts: &'a Path,
    pub descriptions: &'a Path,
    pub relationships: &'a Path,
    pub language: Option<&'a Path>,
}

/// Each data line of an RF2 file as its tab-separated fields (at least `min` of them).
fn rows(
    path: &Path,
    min: usize,
    mut each: impl FnMut(&[&str]) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for (i, line) in lines(path)?.enumerate() {
        let line = line?;
        if i == 0 || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(
            fields.len() >= min,
            "{}: line {} has {} fields, not {min}",
            path.display(),
            i + 1,
            fields.len()
        );
        each(&fields)?;
        n += 1;
    }
    Ok(n)
}

pub fn read(files: &Files, version: Option<&str>, progress: Progress) -> anyhow::Result<Release> {
    let mut order = Vec::new();
    let mut active = HashMap::new();
    let mut modules: HashMap<String, usize> = HashMap::new();
    let mut latest = String::new();
    let n = rows(files.concepts, 5, |f| {
        if !active.contains_key(f[0]) {
            order.push(f[0].to_string());
        }
        active.insert(f[0].to_string(), f[2] == "1");
        *modules.entry(f[3].to_string()).or_default() += 1;
        if f[1] > latest.as_str() {
            latest = f[1].to_string();
        }
        Ok(())
    })?;
    progress(&format!(
        "read {n} concepts from {}",
        files.concepts.display()
    ));
    let mut preferred = HashSet::new();
    if let Some(language) = files.language {
        let n = rows(language, 7, |f| {
            if f[2] == "1" && f[6] == PREFERRED {
                preferred.insert(f[5].to_string());
            }
            Ok(())
        })?;
        progress(&format!("read {n} language reference set members"));
    }
    let mut fsn: HashMap<String, String> = HashMap::new();
    let mut preferred_term: HashMap<String, String> = HashMap::new();
    let mut designations: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    let n = rows(files.descriptions, 9, |f| {
        if f[2] != "1" || !active.contains_key(f[4]) {
            return Ok(());
        }
        let (concept, kind, term) = (f[4], f[6], f[7]);
        let use_display = if kind == FSN {
            "Fully specified name"
        } else {
            "Synonym"
        };
        designations
            .entry(concept.to_string())
            .or_default()
            .push(json!({
                "language": f[5],
                "use": {"system": URL, "code": kind, "display": use_display},
                "value": term,
            }));
        if kind == FSN {
            fsn.insert(concept.to_string(), term.to_string());
        } else if kind == SYNONYM && preferred.contains(f[0]) {
            preferred_term.insert(concept.to_string(), term.to_string());
        }
        Ok(())
    })?;
    progress(&format!("read {n} descriptions"));
    let mut parents = Vec::new();
    let n = rows(files.relationships, 8, |f| {
        if f[2] == "1" && f[7] == IS_A {
            parents.push((f[4].to_string(), f[5].to_string()));
        }
        Ok(())
    })?;
    progress(&format!("read {n} relationships ({} is-a)", parents.len()));
    let module = modules
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(m, _)| m)
        .unwrap_or_else(|| "900000000000207008".into());
    let version = version
        .map(str::to_string)
        .unwrap_or_else(|| format!("{URL}/{module}/version/{latest}"));
    let concepts = order
        .into_iter()
        .map(|code| {
            let display = preferred_term
                .remove(&code)
                .or_else(|| fsn.get(&code).cloned());
            Concept {
                inactive: !active[&code],
                designations: designations.remove(&code).unwrap_or_default(),
                display,
                code,
                ..Default::default()
            }
        })
        .collect();
    Ok(Release {
        url: URL.into(),
        version,
        name: "SNOMED_CT".into(),
        title: "SNOMED CT".into(),
        property: vec![
            json!({"code": "parent", "type": "code"}),
            json!({"code": "child", "type": "code"}),
            json!({"code": "inactive", "type": "boolean"}),
        ],
        concepts,
        parents,
    })
}
