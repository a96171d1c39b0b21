//! `includeAssociatedData`: the Provenance whose `target` is a resource the export writes,
//! looked up page by page as the resources are written (a search on `Provenance.target`, the
//! token's limits applied), into one `Provenance` output shared with the type's own walk, so
//! that a Provenance is written once however many of its targets are exported.

use super::out::Out;
use super::request::Provenance;
use super::run::{RunError, every_page};
use crate::fhir::resource::parse_instant;
use crate::fhir::search::filter::Filter;
use crate::fhir::search::query::{MAX_VALUES, parse_clause};
use crate::store::db::DbConnection;
use crate::store::versions::Version;
use std::collections::{HashMap, HashSet};

pub struct Associated<'a> {
    pub out: Out<'a>,
    mode: Provenance,
    /// The token's limit on Provenance.
    limit: Vec<Filter>,
}

impl<'a> Associated<'a> {
    pub fn new(mut out: Out<'a>, mode: Provenance, limit: Vec<Filter>) -> Self {
        out.seen = Some(HashSet::new());
        Associated { out, mode, limit }
    }

    /// Write the Provenance of `written` (resources of `rtype`); how many were new.
    pub fn follow(
        &mut self,
        conn: &mut DbConnection,
        rtype: &str,
        written: &[Version],
    ) -> Result<u64, RunError> {
        let mut n = 0;
        for chunk in written.chunks(MAX_VALUES) {
            let refs: Vec<String> = chunk.iter().map(|v| format!("{rtype}/{}", v.id)).collect();
            let clause = parse_clause("Provenance", "target", &refs.join(","))
                .map_err(|e| RunError::Refused(format!("includeAssociatedData: {}", e.message)))?
                .ok_or_else(|| RunError::Refused("Provenance.target is not searchable".into()))?;
            let mut filters = self.limit.clone();
            filters.push(Filter::Clause(clause));
            let mut found = Vec::new();
            every_page(conn, "Provenance", &filters, |_, page| {
                found.extend_from_slice(page);
                Ok(())
            })?;
            if self.mode == Provenance::Latest {
                found = latest(found, &refs);
            }
            for p in &found {
                n += u64::from(self.out.write(p)?);
            }
        }
        Ok(n)
    }
}

/// Of `found`, for each of `refs`, the Provenance recorded last (then changed last).
fn latest(found: Vec<Version>, refs: &[String]) -> Vec<Version> {
    let wanted: HashSet<&str> = refs.iter().map(String::as_str).collect();
    let mut best: HashMap<String, (i64, i64, usize)> = HashMap::new();
    for (i, p) in found.iter().enumerate() {
        let json = p.json();
        let recorded = json["recorded"]
            .as_str()
            .and_then(parse_instant)
            .unwrap_or(i64::MIN);
        let targets = json["target"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for t in targets.iter().filter_map(|t| t["reference"].as_str()) {
            // a versioned reference (`Observation/1/_history/2`) is to the resource
            let t = t.split("/_history/").next().unwrap_or(t);
            if !wanted.contains(t) {
                continue;
            }
            let key = (recorded, p.last_updated, i);
            let slot = best.entry(t.to_string()).or_insert(key);
            if key > *slot {
                *slot = key;
            }
        }
    }
    let keep: HashSet<usize> = best.values().map(|(_, _, i)| *i).collect();
    found
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::versions::Method;

    fn provenance(id: &str, recorded: &str, targets: &[&str]) -> Version {
        let targets: Vec<_> = targets
            .iter()
            .map(|t| serde_json::json!({"reference": t}))
            .collect();
        let json = serde_json::json!({"resourceType": "Provenance", "id": id,
            "recorded": recorded, "target": targets});
        Version {
            resource_type: "Provenance".into(),
            id: id.into(),
            version_id: 1,
            last_updated: 0,
            method: Method::Post,
            deleted: false,
            content: json.to_string().into(),
            seq: 0,
        }
    }

    #[test]
    fn the_latest_provenance_of_each_target_is_kept() {
        let found = vec![
            provenance(
                "old",
                "2026-01-01T00:00:00Z",
                &["Observation/1", "Observation/2"],
            ),
            provenance(
                "new",
                "2026-02-01T00:00:00+05:00",
                &["Observation/1/_history/3"],
            ),
            provenance("other", "2026-03-01T00:00:00Z", &["Observation/9"]),
        ];
        let refs = vec!["Observation/1".to_string(), "Observation/2".to_string()];
        let kept: Vec<String> = latest(found, &refs).into_iter().map(|p| p.id).collect();
        // "old" is still the latest of Observation/2
        assert_eq!(kept, ["old", "new"]);
    }
}
