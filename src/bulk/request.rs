//! What a `$export` kick-off asks for, parsed from its query string (GET) or its `Parameters`
//! body (POST) and checked before a job is made: a request the server would not carry out as
//! written is refused at kick-off, never discovered by the client in the files.

use crate::fhir::definitions::Definitions;
use crate::fhir::resource::FhirId;
use crate::fhir::search::filter::{Filter, compartment_types, parse_filter};
use serde::{Deserialize, Serialize};

/// At most this many `_type` names and `_typeFilter` queries in one request.
const MAX_TYPES: usize = 200;
const MAX_TYPE_FILTERS: usize = 50;
/// At most this many parameters in one `_typeFilter` query.
const MAX_FILTER_PARAMS: usize = 20;

/// At most this many patients named by `patient` (POST), and members of an exported Group.
pub const MAX_PATIENTS: usize = 10_000;

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `[base]/$export`: every resource the client may read.
    System,
    /// `[base]/Patient/$export`: the compartments of every patient, or of those `patient`
    /// names.
    Patient,
    /// `[base]/Group/[id]/$export`: the compartments of the Group's members.
    Group(String),
}

/// A kick-off, as kept with its job (`bulk_exports.params`) and carried out by `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub level: Level,
    /// `_type`, in the order given; empty for every type.
    pub types: Vec<String>,
    /// `_since`: only resources changed after this instant (microseconds since the epoch).
    pub since: Option<i64>,
    /// `_until`: only resources last changed at or before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// `includeAssociatedData`: the Provenance of the resources exported, all of it or the
    /// latest for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// `patient` (Patient level, POST): these patients' compartments only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// `_typeFilter`: per type, searches of which a resource must match one (kept as the
    /// query strings asked, parsed again when the job runs).
    pub type_filters: Vec<(String, String)>,
    /// `_elements`: only these top-level elements (and the mandatory ones), each for one type
    /// (`Patient.name`) or every type (`id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<(Option<String>, String)>,
    /// Parameters ignored under `Prefer: handling=lenient`, said in the manifest's `error`.
    pub ignored: Vec<String>,
}

/// Which Provenance `includeAssociatedData` adds: those whose `target` is a resource exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// `LatestProvenanceResources`: for each resource, the one recorded last.
    Latest,
    /// `RelevantProvenanceResources`: every one.
    Relevant,
}

/// Why a kick-off is refused (400, with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl ExportRequest {
    /// Read the kick-off's parameters (each `(name, value)` as sent); unknown ones are refused
    /// unless `lenient`.
    pub fn parse(
        level: Level,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<ExportRequest, BadRequest> {
        let compartment = level != Level::System;
        let mut req = ExportRequest {
            level,
            types: Vec::new(),
            patients: Vec::new(),
            elements: Vec::new(),
            since: None,
            until: None,
            provenance: None,
            type_filters: Vec::new(),
            ignored: Vec::new(),
        };
        let bad = |m: String| Err(BadRequest(m));
        for (name, value) in params {
            match name.as_str() {
                "_outputFormat" => {
                    if !matches!(
                        value.as_str(),
                        "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                    ) {
                        return bad(format!(
                            "_outputFormat '{value}': only application/fhir+ndjson is offered"
                        ));
                    }
                }
                "_type" => {
                    for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        if !Definitions::get().is_resource_type(t) {
                            return bad(format!("_type: '{t}' is not a resource type"));
                        }
                        if compartment && !compartment_types().any(|c| c == t) {
                            return bad(format!(
                                "_type: {t} resources are not in a patient's compartment"
                            ));
                        }
                        if !req.types.iter().any(|k| k == t) {
                            req.types.push(t.to_string());
                        }
                    }
                    if req.types.len() > MAX_TYPES {
                        return bad(format!("_type names more than {MAX_TYPES} types"));
                    }
                }
                "patient" if req.level == Level::Patient => {
                    let Some(id) = value
                        .strip_prefix("Patient/")
                        .filter(|i| FhirId::parse(i).is_ok())
                    else {
                        return bad(format!("patient '{value}' is not a Patient/[id] reference"));
                    };
                    req.patients.push(id.to_string());
                    if req.patients.len() > MAX_PATIENTS {
                        return bad(format!("patient: at most {MAX_PATIENTS} patients"));
                    }
                }
                "_elements" => {
                    for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        let (rtype, name) = match e.split_once('.') {
                            Some((t, n)) => (Some(t), n),
                            None => (None, e),
                        };
                        if name.is_empty()
                            || name.contains('.')
                            || rtype.is_some_and(|t| !Definitions::get().is_resource_type(t))
                        {
                            return bad(format!(
                                "_elements: '{e}' is not an element (name, or Type.name)"
                            ));
                        }
                        req.elements
                            .push((rtype.map(str::to_string), name.to_string()));
                    }
                    if req.elements.len() > MAX_TYPES {
                        return bad(format!("_elements names more than {MAX_TYPES} elements"));
                    }
                }
                "_since" => {
                    req.since = Some(instant(name, value)?);
                }
                "_until" => {
                    req.until = Some(instant(name, value)?);
                }
                "includeAssociatedData" => {
                    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                        // of two values, the one that returns more wins (the IG's rule)
                        match v {
                            "RelevantProvenanceResources" => {
                                req.provenance = Some(Provenance::Relevant)
                            }
                            "LatestProvenanceResources" => {
                                req.provenance.get_or_insert(Provenance::Latest);
                            }
                            _ if lenient => req.ignored.push(format!("{name}={v}")),
                            _ => {
                                return bad(format!(
                                    "includeAssociatedData '{v}': LatestProvenanceResources \
                                     and RelevantProvenanceResources are offered"
                                ));
                            }
                        }
                    }
                }
                "_typeFilter" => {
                    for query in value.split(',').filter(|q| !q.is_empty()) {
                        let (rtype, _) = filters_of(query)?;
                        req.type_filters.push((rtype, query.to_string()));
                    }
                    if req.type_filters.len() > MAX_TYPE_FILTERS {
                        return bad(format!(
                            "_typeFilter: at most {MAX_TYPE_FILTERS} queries are accepted"
                        ));
                    }
                }
                _ if lenient => req.ignored.push(name.clone()),
                _ => {
                    return bad(format!(
                        "{name} is not a $export parameter this server offers \
                         (send Prefer: handling=lenient to have it ignored)"
                    ));
                }
            }
        }
        // a filter on a type the export leaves out would filter nothing: say so
        if !req.types.is_empty()
            && let Some((t, _)) = req
                .type_filters
                .iter()
                .find(|(t, _)| !req.types.contains(t))
        {
            return bad(format!("_typeFilter names {t}, which _type leaves out"));
        }
        if let (Some(since), Some(until)) = (req.since, req.until)
            && until <= since
        {
            return bad("_until is not after _since: the export would be empty".into());
        }
        Ok(req)
    }

    /// The elements kept of each resource of `rtype`; `None` keeps them all.
    pub fn elements_for(&self, rtype: &str) -> Option<Vec<String>> {
        if self.elements.is_empty() {
            return None;
        }
        Some(
            self.elements
                .iter()
                .filter(|(t, _)| t.as_deref().is_none_or(|t| t == rtype))
                .map(|(_, n)| n.clone())
                .collect(),
        )
    }

    /// The searches a resource of `rtype` must match one of (empty: every resource). Checked
    /// at kick-off; one that no longer parses when the job runs (the server changed between)
    /// is an error, never a filter dropped (which would export every resource of the type).
    pub fn filters_for(&self, rtype: &str) -> Result<Vec<Vec<Filter>>, BadRequest> {
        self.type_filters
            .iter()
            .filter(|(t, _)| t == rtype)
            .map(|(_, q)| filters_of(q).map(|(_, f)| f))
            .collect()
    }
}

/// `Type?name=value&...` as the type and its filters. Only plain search parameters, chains and
/// `_has`: result parameters (`_sort`, `_count`, `_include`) mean nothing in an export, and
/// codes drawn from terminology or persons from the MPI are not offered here.
fn filters_of(query: &str) -> Result<(String, Vec<Filter>), BadRequest> {
    let bad = |m: String| Err(BadRequest(format!("_typeFilter '{query}': {m}")));
    let Some((rtype, rest)) = query.split_once('?') else {
        return bad("a filter is Type?parameter=value".into());
    };
    if !Definitions::get().is_resource_type(rtype) {
        return bad(format!("'{rtype}' is not a resource type"));
    }
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(rest) {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    if pairs.is_empty() || pairs.len() > MAX_FILTER_PARAMS {
        return bad(format!("1 to {MAX_FILTER_PARAMS} parameters are accepted"));
    }
    let mut filters = Vec::with_capacity(pairs.len());
    for (name, value) in &pairs {
        match parse_filter(rtype, name, value) {
            Ok(Some(f)) if f.through_terminology() || f.through_identity() => {
                return bad(format!("{name}: not offered in an export"));
            }
            Ok(Some(f)) => filters.push(f),
            Ok(None) => return bad(format!("{name} is not a search parameter of {rtype}")),
            Err(e) => return bad(e.message),
        }
    }
    Ok((rtype.to_string(), filters))
}

/// `value` as microseconds since the epoch (`2026-12-01T00:00:00Z`; a date alone is its first
/// moment in UTC).
fn instant(name: &str, value: &str) -> Result<i64, BadRequest> {
    crate::fhir::resource::parse_instant(value).ok_or_else(|| {
        BadRequest(format!(
            "{name} '{value}' is not an instant (such as 2026-12-01T00:00:00Z)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_read_or_refused_by_name() {
        let req = ExportRequest::parse(
            Level::System,
            &pairs(&[
                ("_type", "Patient,Observation,Patient"),
                ("_since", "2026-12-01T00:00:00Z"),
                ("_typeFilter", "Observation?code=http://loinc.org|2345-7"),
                ("_outputFormat", "application/fhir+ndjson"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(req.types, ["Patient", "Observation"]);
        assert_eq!(req.since, Some(1_796_083_200_000_000));
        assert_eq!(req.filters_for("Observation").unwrap().len(), 1);
        assert!(req.filters_for("Patient").unwrap().is_empty());
        for bad in [
            ("_type", "Patient,Nonsense"),
            ("_since", "last week"),
            ("_outputFormat", "text/csv"),
            ("_typeFilter", "Observation?nonsense=1"),
            ("_typeFilter", "Observation"),
            ("_typeFilter", "Observation?code:in=http://x/vs"),
            ("_elements", "Patient.name.given"),
            ("_elements", "Nonsense.id"),
            ("_until", "yesterday"),
            ("includeAssociatedData", "_everythingElse"),
            ("_count", "10"),
        ] {
            let e = ExportRequest::parse(Level::System, &pairs(&[bad]), false);
            assert!(e.is_err(), "{bad:?} was accepted");
        }
        let e = ExportRequest::parse(
            Level::System,
            &pairs(&[("_type", "Patient"), ("_typeFilter", "Observation?code=x")]),
            false,
        );
        assert!(e.unwrap_err().0.contains("_type leaves out"));
        let lenient = ExportRequest::parse(
            Level::System,
            &pairs(&[("_count", "2026"), ("includeAssociatedData", "_mine")]),
            true,
        )
        .unwrap();
        assert_eq!(lenient.ignored, ["_count", "includeAssociatedData=_mine"]);
        let window = pairs(&[("_since", "2026-12-02"), ("_until", "2026-12-01")]);
        let e = ExportRequest::parse(Level::System, &window, false).unwrap_err();
        assert!(e.0.contains("_until"), "{e}");
        let req = ExportRequest::parse(
            Level::Patient,
            &pairs(&[
                ("_until", "2026-12-01T00:00:00Z"),
                (
                    "includeAssociatedData",
                    "RelevantProvenanceResources,LatestProvenanceResources",
                ),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(req.until, Some(1_796_083_200_000_000));
        assert_eq!(req.provenance, Some(Provenance::Relevant));
        let req = ExportRequest::parse(
            Level::System,
            &pairs(&[("_elements", "Patient.name,id")]),
            false,
        )
        .unwrap();
        assert_eq!(req.elements_for("Patient").unwrap(), ["name", "id"]);
        assert_eq!(req.elements_for("Observation").unwrap(), ["id"]);
    }
}
