//! The first step for every resource, whatever its source: code normalisation (the hooks),
//! validation against R4, and the canonical JSON the store keeps.

use super::{Hooks, IngestError, Source};
use crate::fhir::validate::validate_resource;
use crate::fhir::{Issue, model};
use serde_json::Value;

/// A resource that passed validation, in canonical JSON, with the warnings to report (what
/// `lenient` dropped, what no code map knew).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub resource: Value,
    pub warnings: Vec<Issue>,
}

/// Normalise, validate and canonicalise `resource` as a `rtype` from `source`. `lenient`
/// (`Prefer: handling=lenient`) drops unknown elements with a warning instead of refusing.
pub fn accept(
    mut resource: Value,
    rtype: &str,
    lenient: bool,
    (source, correlation_id): (&Source, &str),
    hooks: &Hooks,
) -> Result<Accepted, IngestError> {
    let actual = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if actual != rtype {
        let msg = format!("resourceType '{actual}' does not match the URL's type '{rtype}'");
        let issue = Issue::error("invalid", msg).at(format!("{rtype}.resourceType"));
        return Err(IngestError::BadRequest(issue));
    }
    let mut warnings: Vec<Issue> = hooks
        .codes
        .iter()
        .flat_map(|c| c.normalise(source, correlation_id, rtype, &mut resource))
        .collect();
    let report = validate_resource(&mut resource, lenient);
    if !report.is_valid() {
        return Err(IngestError::Invalid(report.errors));
    }
    warnings.extend(report.warnings);
    let canonical = model::canonical_json(resource).map_err(|e| {
        IngestError::Invalid(vec![Issue::error(
            "structure",
            format!("invalid {rtype}: {e}"),
        )])
    })?;
    Ok(Accepted {
        resource: canonical,
        warnings,
    })
}
