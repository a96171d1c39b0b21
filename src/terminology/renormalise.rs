//! Resources already stored, normalised again once a map for their local codes is written
//! (`POST /admin/terminology/renormalise`). The codes to look for are the worklist's: every
//! unmapped code a feed sent is there with its sending system and element, so the resources
//! that carry it are found through the search index (the element's token parameter), not by
//! reading the store. Each is written again through the ingest path as its sender, where the
//! normaliser adds the standard coding as it would to a new message: a new version, audited,
//! in the outbox, so subscribers and targets see the change.
//!
//! A code leaves the worklist once every resource carrying it was written; a call does at
//! most `limit` resources and says whether more are left, so a large backlog is worked off by
//! calling again, without one long transaction.

use super::Terminology;
use super::tables::{self, UnmappedRow};
use crate::auth::Grant;
use crate::fhir::search::params::{ParamType, SearchParams};
use crate::ingest::restate::{self, Stated};
use crate::ingest::{Channel, Ingest, Source};
use crate::store::Actor;
use serde::Serialize;
use std::sync::Arc;

/// Worklist codes looked at per call.
const MAX_CODES: i64 = 10_000;
/// Resources written per transaction.
const BATCH: usize = 100;

/// What became of one code of the worklist.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub system: String,
    pub code: String,
    pub source: String,
    pub element: String,
    /// Resources written with the standard coding added.
    pub updated: usize,
    /// Resources found that could not be written, each with why.
    pub failed: Vec<String>,
    /// More resources carry it than this call's limit let it write.
    pub more: bool,
    /// Why it was not looked for, when it was not (its element has no token parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The token search parameter of `rtype` whose expression selects the element at `path`
/// (`Observation.code` -> `code`; `MedicationRequest.medicationCodeableConcept` ->
/// `code`, whose expression is `(MedicationRequest.medication as CodeableConcept)`).
pub fn token_param(path: &str) -> Option<(&str, String)> {
    let rtype = path.split('.').next()?;
    let param = SearchParams::get().of_type(rtype).find(|p| {
        p.kind == ParamType::Token
            && p.expression_text
                .split('|')
                .any(|e| selects(e.trim(), path))
    })?;
    Some((rtype, param.code.clone()))
}

fn selects(expression: &str, path: &str) -> bool {
    let e = expression.trim_start_matches('(').trim_end_matches(')');
    if e == path {
        return true;
    }
    // `X.value as CodeableConcept` selects the choice element `X.valueCodeableConcept`
    match e.split_once(" as ") {
        Some((base, ty)) => format!("{}{}", base.trim(), ty.trim()) == path,
        None => false,
    }
}

/// Normalise again the stored resources carrying the worklist's codes that a map now
/// translates, at most `limit` of them, writing as `grant` (whose scopes must allow it).
pub fn renormalise(
    ingest: &Ingest,
    terminology: &Terminology,
    grant: Arc<Grant>,
    limit: usize,
) -> Result<Vec<Done>, super::TermError> {
    let rules = terminology.normalisation()?;
    let store = &ingest.store;
    let codes: Vec<UnmappedRow> = store
        .read(|c| tables::unmapped(c, None, MAX_CODES))?
        .into_iter()
        .filter(|r| rules.translates(&r.source, &r.element, &r.system, &r.code))
        .collect();
    let mut left = limit;
    let mut out = Vec::new();
    for row in codes {
        let mut done = Done {
            system: row.system.clone(),
            code: row.code.clone(),
            source: row.source.clone(),
            element: row.element.clone(),
            updated: 0,
            failed: Vec::new(),
            more: false,
            skipped: None,
        };
        let Some((rtype, param)) = token_param(&row.element) else {
            done.skipped = Some(format!("{} has no token search parameter", row.element));
            out.push(done);
            continue;
        };
        if left == 0 {
            done.more = true;
            out.push(done);
            continue;
        }
        // one more than may be written: whether more are left
        let ids = store.read(|c| {
            tables::carrying(
                c,
                (rtype, &param),
                (&row.system, &row.code),
                left as i64 + 1,
            )
        })?;
        done.more = ids.len() > left;
        let ids = &ids[..ids.len().min(left)];
        let writer = ingest.writer(
            grant.clone(),
            Actor::Named(grant.actor()),
            Source {
                channel: Channel::Terminology,
                system: row.source.clone(),
                reviewed_by: None,
            },
            format!("renormalise-{}", uuid::Uuid::now_v7()),
        );
        let Some(rtype) = crate::fhir::definitions::Definitions::get().type_name(rtype) else {
            done.skipped = Some(format!("{rtype} is not a resource type"));
            out.push(done);
            continue;
        };
        for batch in ids.chunks(BATCH) {
            let mut stated = Vec::with_capacity(batch.len());
            // the batch's current versions in one read (a deleted one is left alone)
            let currents = store.read(|c| crate::store::versions::current_many(c, rtype, batch))?;
            for current in currents.iter().filter(|v| !v.deleted) {
                match writer.accept(current.json(), rtype, true) {
                    Ok(a) => stated.push(Stated {
                        rtype,
                        id: current.id.clone(),
                        body: a.resource,
                    }),
                    Err(e) => done.failed.push(format!("{rtype}/{}: {e}", current.id)),
                }
            }
            match restate::restate_all(store, &writer, &stated, &restate::Plain) {
                Ok(()) => done.updated += stated.len(),
                Err(e) => done
                    .failed
                    .extend(stated.iter().map(|s| format!("{}: {e}", s.reference()))),
            }
        }
        left -= ids.len();
        if !done.more && done.failed.is_empty() {
            store.write_rows(|c| tables::forget_unmapped(c, &row))?;
        }
        out.push(done);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_finds_its_token_parameter() {
        assert_eq!(
            token_param("Observation.code"),
            Some(("Observation", "code".to_string()))
        );
        assert_eq!(
            token_param("MedicationRequest.medicationCodeableConcept"),
            Some(("MedicationRequest", "code".to_string()))
        );
        assert_eq!(
            token_param("Condition.code"),
            Some(("Condition", "code".to_string()))
        );
        assert_eq!(token_param("Observation.note"), None);
    }
}
