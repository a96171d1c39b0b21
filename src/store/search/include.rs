//! `_include` and `_revinclude`: the resources a page of matches points at, or that point at
//! it, read from the reference index. `:iterate` repeats an include on what the previous round
//! added, a few rounds deep, so that `MedicationRequest:medication` then
//! `Medication:manufacturer` both resolve.

use super::sql::{Sql, TypeAndId, VERSION_COLUMNS, VersionRow, load};
use crate::store::db::DbConnection;
use crate::store::error::StoreError;
use crate::store::versions::Version;
use std::collections::{BTreeMap, HashSet};

/// Rounds of `:iterate` followed at most.
const MAX_ROUNDS: usize = 4;
/// Ids per `IN (...)` list.
const CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeKind {
    /// What the source resources point at.
    Include,
    /// The source resources that point at the results.
    RevInclude,
}

/// One `_include=Source:param[:Target]` or `_revinclude=...`.
#[derive(Debug, Clone)]
pub struct Include {
    pub kind: IncludeKind,
    pub source_type: String,
    /// `None` for `*`: every reference parameter.
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// The resources `specs` add to `matches`: current, not deleted, each once, none of them a
/// match already; at most `limit` of them. The flag says whether the limit cut the list.
pub fn includes(
    conn: &mut DbConnection,
    matches: &[Version],
    specs: &[Include],
    limit: usize,
) -> Result<(Vec<Version>, bool), StoreError> {
    let pg = matches!(conn, DbConnection::Pg(_));
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|v| (v.resource_type.clone(), v.id.clone()))
        .collect();
    let mut added: Vec<Version> = Vec::new();
    let mut frontier: Vec<(String, String)> = seen.iter().cloned().collect();
    for round in 0..MAX_ROUNDS {
        let mut wanted: Vec<(String, String)> = Vec::new();
        for spec in specs.iter().filter(|s| round == 0 || s.iterate) {
            for pair in linked(conn, pg, spec, &frontier)? {
                if seen.insert(pair.clone()) {
                    wanted.push(pair);
                }
            }
        }
        if wanted.is_empty() {
            break;
        }
        let mut found = current_versions(conn, pg, &wanted)?;
        if added.len() + found.len() > limit {
            found.truncate(limit - added.len());
            added.extend(found);
            return Ok((added, true));
        }
        frontier = found
            .iter()
            .map(|v| (v.resource_type.clone(), v.id.clone()))
            .collect();
        added.extend(found);
    }
    Ok((added, false))
}

/// The (type, id) pairs `spec` links `frontier` to.
fn linked(
    conn: &mut DbConnection,
    pg: bool,
    spec: &Include,
    frontier: &[(String, String)],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, id) in frontier {
        by_type.entry(t.as_str()).or_default().push(id.as_str());
    }
    let mut out = Vec::new();
    for (rtype, ids) in by_type {
        let applies = match spec.kind {
            IncludeKind::Include => rtype == spec.source_type,
            IncludeKind::RevInclude => spec.target_type.as_deref().is_none_or(|t| t == rtype),
        };
        if !applies {
            continue;
        }
        for chunk in ids.chunks(CHUNK) {
            let mut sql = Sql::new(pg);
            let list: Vec<String> = chunk.iter().map(|id| sql.text(id)).collect();
            let list = list.join(", ");
            let src = sql.text(&spec.source_type);
            let mut conds = vec![format!("s.resource_type = {src}")];
            let select = match spec.kind {
                IncludeKind::Include => {
                    conds.push(format!("s.resource_id IN ({list})"));
                    conds.push("s.target_id IS NOT NULL".into());
                    if let Some(t) = &spec.target_type {
                        let t = sql.text(t);
                        conds.push(format!("s.target_type = {t}"));
                    }
                    "s.target_type AS resource_type, s.target_id AS resource_id"
                }
                IncludeKind::RevInclude => {
                    let t = sql.text(rtype);
                    conds.push(format!("s.target_type = {t}"));
                    conds.push(format!("s.target_id IN ({list})"));
                    "s.resource_type, s.resource_id"
                }
            };
            if let Some(p) = &spec.param {
                let p = sql.text(p);
                // _include reads the page's own rows (primary key), not every row of the
                // parameter (lookup index); _revinclude wants the lookup index
                let param = match spec.kind {
                    IncludeKind::Include => sql.no_index("s.param"),
                    IncludeKind::RevInclude => "s.param".to_string(),
                };
                conds.push(format!("{param} = {p}"));
            }
            let q = format!(
                "SELECT DISTINCT {select} FROM search_reference s WHERE {}",
                conds.join(" AND ")
            );
            let rows: Vec<TypeAndId> = load(conn, &q, &sql.binds)?;
            out.extend(rows.into_iter().map(|r| (r.resource_type, r.resource_id)));
        }
    }
    Ok(out)
}

/// The current versions of `pairs` that exist and are not deleted, in the order asked.
fn current_versions(
    conn: &mut DbConnection,
    pg: bool,
    pairs: &[(String, String)],
) -> Result<Vec<Version>, StoreError> {
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, id) in pairs {
        by_type.entry(t.as_str()).or_default().push(id.as_str());
    }
    let mut found: Vec<Version> = Vec::new();
    for (rtype, ids) in by_type {
        for chunk in ids.chunks(CHUNK) {
            let mut sql = Sql::new(pg);
            let t = sql.text(rtype);
            let list: Vec<String> = chunk.iter().map(|id| sql.text(id)).collect();
            let q = format!(
                "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v \
                 ON v.resource_type = r.resource_type AND v.resource_id = r.resource_id \
                 AND v.version_id = r.version_id \
                 WHERE r.resource_type = {t} AND r.deleted = FALSE AND r.resource_id IN ({})",
                list.join(", ")
            );
            let rows: Vec<VersionRow> = load(conn, &q, &sql.binds)?;
            found.extend(rows.into_iter().map(Version::from));
        }
    }
    let position: std::collections::HashMap<(&str, &str), usize> = pairs
        .iter()
        .enumerate()
        .map(|(i, (t, id))| ((t.as_str(), id.as_str()), i))
        .collect();
    found.sort_by_key(|v| {
        position
            .get(&(v.resource_type.as_str(), v.id.as_str()))
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(found)
}
