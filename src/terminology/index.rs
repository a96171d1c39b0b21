//! The terminology rows kept in step with the store: every version of a CodeSystem, ValueSet
//! or ConceptMap, from any writer, is recorded in its write's transaction (its url and version,
//! a code system's concepts and hierarchy), so the operations never see a resource without
//! its rows, nor rows of a change that rolled back.

use super::code_system::rows_of;
use super::tables::{self, Canonical};
use crate::fhir::Issue;
use crate::store::{DbConnection, StoreError, Version};
use serde_json::Value;

/// The canonical resources the terminology service reads.
pub const TYPES: [&str; 3] = ["CodeSystem", "ValueSet", "ConceptMap"];

/// Concepts a CodeSystem resource may carry inline; larger systems are imported from their
/// release files (`emrsync terminology import`), which writes the rows itself.
pub const MAX_INLINE_CONCEPTS: usize = 50_000;

/// Record `version` (of any type: others are left alone).
pub fn record(conn: &mut DbConnection, version: &Version) -> Result<(), StoreError> {
    let rtype = version.resource_type.as_str();
    if !TYPES.contains(&rtype) {
        return Ok(());
    }
    if version.deleted {
        tables::remove_resource(conn, rtype, &version.id)?;
        if rtype == "CodeSystem" {
            tables::clear_concepts(conn, &version.id)?;
        }
        return Ok(());
    }
    let resource = version.json();
    let Some(url) = resource["url"].as_str() else {
        // a canonical resource without a url cannot be asked for by one: nothing to index (and
        // what an earlier version with a url indexed goes)
        tables::remove_resource(conn, rtype, &version.id)?;
        if rtype == "CodeSystem" {
            tables::clear_concepts(conn, &version.id)?;
        }
        return Ok(());
    };
    let text = |k: &str| resource[k].as_str().map(str::to_string);
    let row = Canonical {
        resource_type: rtype.to_string(),
        resource_id: version.id.clone(),
        url: url.to_string(),
        version: text("version").unwrap_or_default(),
        name: text("name"),
        status: text("status"),
        content: text("content").filter(|_| rtype == "CodeSystem"),
    };
    let same = tables::by_url(conn, rtype, url)?
        .into_iter()
        .find(|r| r.version == row.version && r.resource_id != row.resource_id);
    if let Some(other) = same {
        return Err(invalid(format!(
            "{rtype}/{} already has url {url}{}: one {rtype} per url and version (update that one, or give this one another version)",
            other.resource_id,
            match row.version.as_str() {
                "" => String::new(),
                v => format!(" and version {v}"),
            }
        )));
    }
    tables::put_resource(conn, &row)?;
    if rtype == "CodeSystem" {
        code_system(conn, &version.id, &resource)?;
    }
    Ok(())
}

/// A CodeSystem's concepts as rows. One that carries none (`content` not-present, or a
/// header an importer wrote) keeps the rows it has: the importer's.
fn code_system(conn: &mut DbConnection, id: &str, resource: &Value) -> Result<(), StoreError> {
    let carries = resource["concept"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    if !carries && resource["content"] == "not-present" {
        return Ok(());
    }
    let (concepts, parents) = rows_of(id, resource, MAX_INLINE_CONCEPTS)
        .map_err(|e| invalid(format!("CodeSystem: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = concepts.iter().find(|c| !seen.insert(c.code.as_str())) {
        return Err(invalid(format!(
            "CodeSystem: the code {} is defined twice",
            dup.code
        )));
    }
    tables::clear_concepts(conn, id)?;
    tables::insert_concepts(conn, concepts)?;
    let mut seen = std::collections::HashSet::new();
    let parents = parents
        .into_iter()
        .filter(|p| seen.insert((p.child.clone(), p.parent.clone())))
        .collect();
    tables::insert_parents(conn, parents)?;
    Ok(())
}

fn invalid(text: String) -> StoreError {
    StoreError::Invalid(vec![Issue::error("business-rule", text)])
}
