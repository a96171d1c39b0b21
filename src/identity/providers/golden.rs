//! Golden records of the registry: the enterprise Practitioner, Organization or
//! PractitionerRole of each provider with two or more records, its id the provider's, tagged
//! `golden-record` as the MPI's are, built by survivorship rules that are data
//! (`capability/mpi/providers.json`, `--provider-golden`) and kept up through stale marks
//! (`tables::mark`) in the same way (`identity::golden`): written through the ingest path by
//! the linker's task, each mark cleared in the transaction that writes its record.

use super::record::KINDS;
use super::tables::{self, provider_records, provider_stale};
use crate::identity::golden::{Record, Rule, Survivorship, is_golden};
use crate::identity::links::Link as PatientLink;
use crate::ingest::{Ingest, restate};
use crate::store::{DbConnection, StoreError, Tx};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

pub const SHIPPED: &str = include_str!("../../../capability/mpi/providers.json");

/// Providers whose golden records are built in one write.
const BATCH: i64 = 50;

/// The survivorship rules of each kind.
#[derive(Debug, Clone)]
pub struct Rules(BTreeMap<&'static str, Survivorship>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    sources: Vec<String>,
    #[serde(rename = "Practitioner")]
    practitioner: BTreeMap<String, Rule>,
    #[serde(rename = "Organization")]
    organization: BTreeMap<String, Rule>,
    #[serde(rename = "PractitionerRole")]
    role: BTreeMap<String, Rule>,
}

impl Rules {
    pub fn parse(text: &str, origin: &str) -> Result<Rules, String> {
        let file: File = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let mut rules = BTreeMap::new();
        for (rtype, elements) in
            KINDS
                .into_iter()
                .zip([file.practitioner, file.organization, file.role])
        {
            let s = Survivorship {
                description: String::new(),
                sources: file.sources.clone(),
                elements,
            };
            rules.insert(rtype, s.checked(&format!("{origin}: {rtype}"))?);
        }
        Ok(Rules(rules))
    }

    pub fn load(path: &std::path::Path) -> Result<Rules, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Rules::parse(&text, &path.display().to_string())
    }

    pub fn shipped() -> Rules {
        Rules::parse(SHIPPED, "capability/mpi/providers.json")
            .expect("the shipped provider survivorship rules are valid")
    }
}

/// The stale providers, longest stale first, as (type, provider, since).
fn stale(conn: &mut DbConnection, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
    use provider_stale::dsl as s;
    Ok(s::provider_stale
        .order(s::since)
        .select((s::resource_type, s::provider_id, s::since))
        .limit(limit)
        .load(conn)?)
}

/// The golden record of `rtype`'s `provider`, if it should have one (two or more records, or
/// a golden record already, which stays, inactive, when its records leave).
fn plan(
    conn: &mut DbConnection,
    rules: &Rules,
    rtype: &'static str,
    provider: &str,
) -> Result<Option<Value>, StoreError> {
    let links = tables::links_to(conn, rtype, provider)?;
    let existing = crate::store::versions::current(conn, rtype, provider)?
        .filter(|v| !v.deleted)
        .map(|v| v.json());
    if existing.as_ref().is_some_and(|e| !is_golden(e)) {
        tracing::warn!(
            rtype,
            provider,
            "a source's record has this provider's id; its golden record is not written"
        );
        return Ok(None);
    }
    let ids: Vec<String> = links.iter().map(|l| l.resource_id.clone()).collect();
    let sources: BTreeMap<String, String> = {
        use provider_records::dsl as r;
        r::provider_records
            .filter(r::resource_type.eq(rtype))
            .filter(r::resource_id.eq_any(&ids))
            .select((r::resource_id, r::filed_by))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect()
    };
    let mut by_id: BTreeMap<String, tables::Link> = links
        .into_iter()
        .map(|l| (l.resource_id.clone(), l))
        .collect();
    let mut records = Vec::new();
    for v in crate::store::versions::current_many(conn, rtype, &ids)? {
        let (Some(l), Value::Object(resource)) = (by_id.remove(&v.id), v.json()) else {
            continue;
        };
        if v.deleted {
            continue;
        }
        records.push(Record {
            source: sources.get(&v.id).cloned().unwrap_or_default(),
            updated: v.last_updated,
            link: PatientLink {
                patient_id: v.id.clone(),
                person_id: l.provider_id,
                probability: 1.0,
                grade: l.grade,
                rule: l.rule,
                linked_at: l.linked_at,
                decided_by: l.decided_by,
            },
            id: v.id,
            resource,
        });
    }
    if records.len() < 2 && existing.is_none() {
        return Ok(None);
    }
    let mut golden = rules.0[rtype].build_as(rtype, provider, &records);
    if rtype == "PractitionerRole" {
        for (element, kind) in [
            ("practitioner", "Practitioner"),
            ("organization", "Organization"),
        ] {
            let Some(id) = golden[element]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix(kind)?.strip_prefix('/'))
                .map(str::to_string)
            else {
                continue;
            };
            // the golden record of the provider it names, where it has one (two records or
            // more: written in this batch or the next, as its marks come before this one's)
            let theirs = tables::provider_of(conn, kind, &id)?;
            if tables::links_to(conn, kind, &theirs)?.len() > 1 {
                golden[element] = json!({"reference": format!("{kind}/{theirs}")});
            }
        }
    }
    Ok(Some(golden))
}

struct Clear(Vec<(String, String, i64)>);

impl restate::Unit for Clear {
    type Done = ();
    type Seen = ();

    fn look(&self, _tx: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        use provider_stale::dsl as s;
        for (rtype, provider, since) in &self.0 {
            diesel::delete(
                s::provider_stale
                    .find((rtype, provider))
                    .filter(s::since.eq(since)),
            )
            .execute(tx.conn)?;
        }
        Ok(())
    }
}

/// Build and write the golden records of one batch of stale providers; how many were stale.
pub fn refresh(ingest: &Ingest, rules: &Rules) -> Result<usize, StoreError> {
    let store = &ingest.store;
    let marks = store.read(|c| stale(c, BATCH))?;
    if marks.is_empty() {
        return Ok(0);
    }
    let plans = store.read(|c| {
        marks
            .iter()
            .map(
                |(rtype, provider, _)| match KINDS.iter().find(|k| *k == rtype) {
                    Some(kind) => Ok(plan(c, rules, kind, provider)?.map(|g| (*kind, g))),
                    None => Ok(None),
                },
            )
            .collect::<Result<Vec<_>, StoreError>>()
    })?;
    let writer = crate::identity::golden::writer(ingest, "provider-golden");
    let mut stated = Vec::new();
    for ((_, provider, _), plan) in marks.iter().zip(plans) {
        let Some((rtype, body)) = plan else { continue };
        match writer.accept(body, rtype, false) {
            Ok(accepted) => stated.push(restate::Stated {
                rtype,
                id: provider.clone(),
                body: accepted.resource,
            }),
            Err(e) => {
                tracing::error!(rtype, provider, error = %e, "a provider's golden record did not validate; not written")
            }
        }
    }
    restate::restate_all(store, &writer, &stated, &Clear(marks.clone()))?;
    Ok(marks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_per_kind_are_checked_and_name_where_they_fail() {
        let rules = Rules::shipped();
        assert_eq!(rules.0.len(), 3);
        let bad = r#"{"sources": [], "Practitioner": {"identifier": "most-recent"},
                      "Organization": {}, "PractitionerRole": {}}"#;
        let e = Rules::parse(bad, "providers.json").unwrap_err();
        assert!(e.starts_with("providers.json: Practitioner"), "{e}");
        assert!(Rules::parse(r#"{"sources": []}"#, "p.json").is_err());
    }
}
