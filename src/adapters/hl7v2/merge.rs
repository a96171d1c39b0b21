//! A patient merge (ADT^A40), carried out in the message's transaction: the prior Patient is
//! marked inactive and `replaced-by` the survivor (created as a record of the merge if this
//! server never had it), the survivor `replaces` it, and every resource that pointed at the
//! prior patient (found through the reference index) is moved to the survivor.

use super::map::Merge;
use crate::ingest::Writer;
use crate::ingest::restate::restate;
use crate::store::{Current, StoreError, Tx};
use serde_json::{Value, json};

/// Carry out `merge`; returns the versions written, as `Type/id/_history/n`.
pub fn apply(tx: &mut Tx, merge: &Merge, ctx: &Writer) -> Result<Vec<String>, StoreError> {
    let mut written = Vec::new();
    let (from_ref, into_ref) = (
        format!("Patient/{}", merge.from),
        format!("Patient/{}", merge.into),
    );
    // the prior patient: inactive, replaced by the survivor
    let prior = Current::read(tx.conn, "Patient", &merge.from)?;
    let mut body = match &prior.json {
        Some(json) => json.clone(),
        None => {
            json!({"resourceType": "Patient", "id": merge.from, "identifier": merge.identifiers})
        }
    };
    body["active"] = json!(false);
    set_link(&mut body, "replaced-by", &into_ref, true);
    written.extend(restate(tx, "Patient", &merge.from, &prior, body, ctx)?);
    // the survivor replaces it (beside any patient it replaced before)
    let survivor = Current::read(tx.conn, "Patient", &merge.into)?;
    if let Some(json) = &survivor.json {
        let mut body = json.clone();
        set_link(&mut body, "replaces", &from_ref, false);
        written.extend(restate(tx, "Patient", &merge.into, &survivor, body, ctx)?);
    }
    // what pointed at the prior patient now points at the survivor
    let pointing = crate::store::search_index::referring(tx.conn, "Patient", &merge.from)?;
    for (rtype, id) in pointing {
        if rtype == "Patient" && (id == merge.from || id == merge.into) {
            continue;
        }
        let current = Current::read(tx.conn, &rtype, &id)?;
        let Some(mut body) = current.json.clone() else {
            continue;
        };
        if repoint(&mut body, &from_ref, &into_ref) {
            written.extend(restate(tx, &rtype, &id, &current, body, ctx)?);
        }
    }
    Ok(written)
}

/// Set a link of `kind` to `other`; `only` drops the other links of that kind first (a
/// patient is replaced by one survivor, but may replace many).
fn set_link(patient: &mut Value, kind: &str, other: &str, only: bool) {
    let mut links: Vec<Value> = patient["link"].as_array().cloned().unwrap_or_default();
    if only {
        links.retain(|l| l["type"] != kind);
    }
    if !links
        .iter()
        .any(|l| l["type"] == kind && l["other"]["reference"] == other)
    {
        links.push(json!({"other": {"reference": other}, "type": kind}));
    }
    patient["link"] = Value::Array(links);
}

/// Replace every reference to `from` (relative, or absolute ending in it) by `to`; whether
/// any was.
fn repoint(v: &mut Value, from: &str, to: &str) -> bool {
    match v {
        Value::Object(o) => {
            let mut changed = false;
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                    && (s == from || s.ends_with(&format!("/{from}")))
                {
                    *s = to.to_string();
                    changed = true;
                } else {
                    changed |= repoint(child, from, to);
                }
            }
            changed
        }
        // every element is visited (no short cut): each may hold the reference
        Value::Array(a) => a
            .iter_mut()
            .map(|c| repoint(c, from, to))
            .fold(false, |x, y| x | y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_to_the_prior_patient_move_and_others_stay() {
        let mut e = json!({"subject": {"reference": "Patient/old"},
                           "participant": [{"individual": {"reference": "Practitioner/old"}}],
                           "x": [{"reference": "http://h/fhir/Patient/old"}]});
        assert!(repoint(&mut e, "Patient/old", "Patient/new"));
        assert_eq!(e["subject"]["reference"], "Patient/new");
        assert_eq!(e["x"][0]["reference"], "Patient/new");
        assert_eq!(
            e["participant"][0]["individual"]["reference"],
            "Practitioner/old"
        );
        assert!(!repoint(&mut e, "Patient/old", "Patient/new"));
    }

    #[test]
    fn a_patient_is_replaced_by_one_survivor_but_replaces_many() {
        let mut p = json!({"resourceType": "Patient"});
        set_link(&mut p, "replaced-by", "Patient/a", true);
        set_link(&mut p, "replaced-by", "Patient/b", true);
        assert_eq!(p["link"].as_array().unwrap().len(), 1);
        set_link(&mut p, "replaces", "Patient/c", false);
        set_link(&mut p, "replaces", "Patient/c", false);
        assert_eq!(p["link"].as_array().unwrap().len(), 2);
    }
}
