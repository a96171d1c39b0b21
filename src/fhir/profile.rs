//! A resource checked against a profile (a StructureDefinition that constrains a resource
//! type), for `$validate?profile=`: what the server can check from the profile's elements
//! without a snapshot generator: each element's cardinality (`min`, `max`) within each of its
//! parents, and its `fixed[x]` (equal) and `pattern[x]` (contains) values. Sliced elements
//! (`Patient.identifier:mrn`) and constraints written as FHIRPath invariants are not checked,
//! and the answer says so, never silently.

use super::Issue;
use super::fhirpath::{self, Item, Out};
use serde_json::Value;

/// The issues `resource` has against `profile` (empty when it conforms as far as checked).
pub fn check(resource: &Value, profile: &Value) -> Vec<Issue> {
    let url = profile["url"].as_str().unwrap_or("the profile");
    let rtype = resource["resourceType"].as_str().unwrap_or_default();
    if profile["type"].as_str() != Some(rtype) {
        return vec![Issue::error(
            "invalid",
            format!(
                "{url} constrains {}, not {rtype}",
                profile["type"].as_str().unwrap_or("another type")
            ),
        )];
    }
    // the snapshot when the profile has one (it states every element), else the differential
    let elements = ["snapshot", "differential"]
        .iter()
        .find_map(|k| profile[k]["element"].as_array())
        .cloned()
        .unwrap_or_default();
    let mut issues = Vec::new();
    let mut skipped = 0;
    for e in &elements {
        let Some(path) = e["path"].as_str() else {
            continue;
        };
        if e["id"].as_str().is_some_and(|id| id.contains(':')) || e.get("sliceName").is_some() {
            skipped += 1;
            continue;
        }
        let Some((parent, name)) = path.rsplit_once('.') else {
            continue; // the resource itself
        };
        let name = name.trim_end_matches("[x]");
        let Ok(parent_expr) = fhirpath::parse(parent) else {
            skipped += 1;
            continue;
        };
        let Ok(member) = fhirpath::parse(name) else {
            skipped += 1;
            continue;
        };
        let min = e["min"].as_u64();
        let max = e["max"].as_str().and_then(|m| m.parse::<u64>().ok());
        let fixed = value_x(e, "fixed");
        let pattern = value_x(e, "pattern");
        for owner in items(fhirpath::evaluate(&parent_expr, resource)) {
            let found = items(fhirpath::evaluate_on(&member, owner));
            let n = found.len() as u64;
            if let Some(min) = min.filter(|m| n < *m) {
                issues.push(
                    Issue::error(
                        "required",
                        format!("{path}: {n} present, {url} requires at least {min}"),
                    )
                    .at(path),
                );
            }
            if let Some(max) = max.filter(|m| n > *m) {
                issues.push(
                    Issue::error(
                        "structure",
                        format!("{path}: {n} present, {url} allows at most {max}"),
                    )
                    .at(path),
                );
            }
            for v in found.iter().filter_map(|i| i.value) {
                if let Some(f) = fixed
                    && v != f
                {
                    issues.push(
                        Issue::error("value", format!("{path}: must be {f} ({url}), is {v}"))
                            .at(path),
                    );
                }
                if let Some(p) = pattern
                    && !contains(v, p)
                {
                    issues.push(
                        Issue::error(
                            "value",
                            format!("{path}: must match the pattern {p} ({url})"),
                        )
                        .at(path),
                    );
                }
            }
        }
    }
    if skipped > 0 {
        issues.push(Issue::information(
            "informational",
            format!(
                "{skipped} element(s) of {url} (slices, paths this server cannot follow) were not checked, nor its invariants"
            ),
        ));
    }
    issues
}

fn items(out: Vec<Out<'_>>) -> Vec<Item<'_>> {
    out.into_iter()
        .filter_map(|o| match o {
            Out::Item(i) => Some(i),
            Out::Literal(_) => None,
        })
        .collect()
}

/// An element definition's `fixed[x]` or `pattern[x]`.
fn value_x<'a>(e: &'a Value, prefix: &str) -> Option<&'a Value> {
    e.as_object()?
        .iter()
        .find(|(k, _)| k.len() > prefix.len() && k.starts_with(prefix))
        .map(|(_, v)| v)
}

/// `value` holds everything `pattern` has (a pattern's arrays: each of its items found in the
/// value's), bounded by the pattern's own size.
fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => {
            p.iter().all(|pi| v.iter().any(|vi| contains(vi, pi)))
        }
        (v, p) => v == p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::outcome::Severity;
    use serde_json::json;

    fn profile() -> Value {
        json!({"resourceType": "StructureDefinition", "url": "http://example.org/p", "type": "Patient",
               "differential": {"element": [
                   {"id": "Patient", "path": "Patient"},
                   {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1},
                   {"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn"},
                   {"id": "Patient.name", "path": "Patient.name", "max": "1"},
                   {"id": "Patient.name.family", "path": "Patient.name.family", "min": 1},
                   {"id": "Patient.gender", "path": "Patient.gender", "fixedCode": "female"},
                   {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
                    "patternCodeableConcept": {"coding": [{"system": "s", "code": "M"}]}}]}})
    }

    #[test]
    fn cardinality_fixed_and_pattern_are_checked_and_slices_said_unchecked() {
        let good = json!({"resourceType": "Patient", "identifier": [{"value": "1"}],
                          "name": [{"family": "Ng"}], "gender": "female",
                          "maritalStatus": {"coding": [{"system": "s", "code": "M", "display": "Married"}]}});
        let issues = check(&good, &profile());
        assert!(
            issues.iter().all(|i| i.severity != Severity::Error),
            "{issues:?}"
        );
        assert_eq!(issues.len(), 1, "the slice is said to be unchecked");

        let bad = json!({"resourceType": "Patient", "name": [{"family": "Ng"}, {"given": ["A"]}],
                         "gender": "male", "maritalStatus": {"coding": [{"system": "s", "code": "S"}]}});
        let errors: Vec<String> = check(&bad, &profile())
            .into_iter()
            .filter(|i| i.severity == Severity::Error)
            .map(|i| i.diagnostics)
            .collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for part in [
            "identifier",
            "at most 1",
            "name.family",
            "gender",
            "maritalStatus",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(part)),
                "{part}: {errors:#?}"
            );
        }
        let other = check(&json!({"resourceType": "Observation"}), &profile());
        assert_eq!(other[0].severity, Severity::Error);
    }
}
