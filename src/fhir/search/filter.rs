//! What a search selects by: a resource's own index rows (`Clause`), or another resource it
//! points at (chaining, `subject:Patient.name=peter`), or one that points at it (reverse
//! chaining, `_has:Observation:patient:code=1234-5`), or membership of a patient's compartment
//! (`/Patient/123/Observation`). Filters nest: a chain can end in a `_has` and vice versa.

use super::params::{ParamType, SearchParam, SearchParams};
use super::query::{Clause, QueryError, parse_clause};
use super::text::{TextField, TextQuery};
use crate::fhir::definitions::Definitions;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// How deep chains and `_has` may nest: enough for any real query, and a bound on the SQL.
const MAX_DEPTH: usize = 4;

/// How many terms one search may test, over all its parameters ([`Filter::size`]). A chain
/// through a reference that may point at many types tests the rest of the chain on each of
/// them, so a short parameter can fan out into thousands of subqueries (seconds of CPU and
/// SQL past the database's limits); this bound refuses it while it is being parsed.
pub const MAX_TERMS: usize = 500;

#[derive(Debug, Clone)]
pub enum Filter {
    /// A test on the resource's own index rows.
    Clause(Clause),
    /// `param[:Type].rest=value`: the resource points, through `param`, at a resource of one
    /// of the listed types that matches that type's filter.
    Chain {
        param: &'static SearchParam,
        targets: Vec<(String, Filter)>,
    },
    /// `_has:Source:param:rest=value`: some `Source` resource points at this one through
    /// `param` and matches `inner`.
    Has {
        source_type: String,
        param: &'static SearchParam,
        inner: Box<Filter>,
    },
    /// A member of the compartment of any of `patients` (one; or a golden record and each
    /// record of its person; `None`: any Patient at all, what a Patient-level export reads):
    /// the patient itself, or a resource that refers to it through one of the compartment's
    /// parameters for its type.
    Compartment {
        patients: Option<Vec<String>>,
        params: Vec<&'static SearchParam>,
        is_patient_type: bool,
    },
    /// Every one of these (what a chain or `_has` must match when the caller may only reach
    /// one patient's compartment: its own filter and the compartment).
    And(Vec<Filter>),
    /// Words in the resource's text (`_text`, `_content`).
    Text(TextQuery),
    /// Not this (`_filter`'s `not (...)` and `ne`).
    Not(Box<Filter>),
    /// Any one of these (what a token with several query-restricted scopes on one type may
    /// read: `?category=laboratory` or `?category=vital-signs`).
    Or(Vec<Filter>),
}

impl Filter {
    /// The terms this filter tests: each value of a clause, each target type of a chain, each
    /// `_has`, each compartment parameter. A bound on the SQL it becomes.
    pub fn size(&self) -> usize {
        match self {
            Filter::Clause(c) => c.any_of.len().max(1),
            Filter::Chain { targets, .. } => targets.iter().map(|(_, f)| 1 + f.size()).sum(),
            Filter::Has { inner, .. } => 1 + inner.size(),
            Filter::Not(inner) => inner.size(),
            Filter::Compartment { params, .. } => 1 + params.len(),
            Filter::Text(q) => q.any_of.iter().map(Vec::len).sum(),
            Filter::And(parts) | Filter::Or(parts) => parts.iter().map(Filter::size).sum(),
        }
    }

    /// Whether a clause anywhere in this filter names a Patient through identity (`:mdm`),
    /// for whoever runs it to expand.
    pub fn through_identity(&self) -> bool {
        match self {
            Filter::Clause(c) => c.through_identity,
            Filter::Compartment { .. } | Filter::Text(_) => false,
            Filter::Chain { targets, .. } => targets.iter().any(|(_, f)| f.through_identity()),
            Filter::Has { inner, .. } | Filter::Not(inner) => inner.through_identity(),
            Filter::And(parts) | Filter::Or(parts) => parts.iter().any(Filter::through_identity),
        }
    }

    /// Whether a clause anywhere in this filter draws its codes from terminology (`:in`,
    /// `:not-in`, `:below`, `:above`), for whoever runs it to resolve.
    pub fn through_terminology(&self) -> bool {
        match self {
            Filter::Clause(c) => c
                .any_of
                .iter()
                .any(|p| matches!(p, super::query::Predicate::Coded { .. })),
            Filter::Compartment { .. } | Filter::Text(_) => false,
            Filter::Chain { targets, .. } => targets.iter().any(|(_, f)| f.through_terminology()),
            Filter::Has { inner, .. } | Filter::Not(inner) => inner.through_terminology(),
            Filter::And(parts) | Filter::Or(parts) => parts.iter().any(Filter::through_terminology),
        }
    }

    /// Every clause of this filter, however deep in chains and `_has`, to change in place.
    pub fn for_each_clause(
        &mut self,
        f: &mut dyn FnMut(&mut Clause) -> Result<(), String>,
    ) -> Result<(), String> {
        match self {
            Filter::Clause(c) => f(c),
            Filter::Compartment { .. } | Filter::Text(_) => Ok(()),
            Filter::Chain { targets, .. } => targets
                .iter_mut()
                .try_for_each(|(_, t)| t.for_each_clause(f)),
            Filter::Has { inner, .. } | Filter::Not(inner) => inner.for_each_clause(f),
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter_mut().try_for_each(|p| p.for_each_clause(f))
            }
        }
    }

    /// A filter that only keeps resources with index rows: no `:not` and no `:missing=true`
    /// anywhere at its top. Such a filter can be answered from the index alone.
    pub fn needs_only_index(&self) -> bool {
        match self {
            Filter::Clause(c) => !c.negate && c.missing != Some(true),
            _ => false,
        }
    }
}

/// Parse `name=value` for `rtype`: a plain parameter, a chain or a `_has`. `Ok(None)` when the
/// name is not a search parameter of the type (the caller decides whether that is an error).
pub fn parse_filter(rtype: &str, name: &str, value: &str) -> Result<Option<Filter>, QueryError> {
    parse_at(rtype, name, value, 0)
}

fn parse_at(
    rtype: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Filter>, QueryError> {
    if depth > MAX_DEPTH {
        return Err(QueryError::new(format!(
            "{name}: chains and _has nest at most {MAX_DEPTH} levels deep"
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(rtype, rest, value, depth).map(Some);
    }
    if let Some((head, rest)) = name.split_once('.') {
        return parse_chain(rtype, head, rest, value, depth);
    }
    let field = match name {
        "_text" => Some(TextField::Narrative),
        "_content" => Some(TextField::Content),
        _ => None,
    };
    if let Some(field) = field {
        return TextQuery::parse(name, field, value).map(|q| Some(Filter::Text(q)));
    }
    Ok(parse_clause(rtype, name, value)?.map(Filter::Clause))
}

/// `Source:param:rest` of `_has:Source:param:rest`.
fn parse_has(rtype: &str, spec: &str, value: &str, depth: usize) -> Result<Filter, QueryError> {
    let mut parts = spec.splitn(3, ':');
    let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(QueryError::new(format!(
            "_has:{spec}: reverse chains are _has:Type:reference-parameter:parameter"
        )));
    };
    if !Definitions::get().is_resource_type(source) {
        return Err(QueryError::new(format!(
            "_has:{spec}: '{source}' is not a resource type"
        )));
    }
    let param = reference_param(source, code, &format!("_has:{spec}"))?;
    if !param.target.iter().any(|t| t == rtype) {
        return Err(QueryError::new(format!(
            "_has:{spec}: {source}.{code} never points at a {rtype}"
        )));
    }
    let inner = parse_at(source, rest, value, depth + 1)?.ok_or_else(|| {
        QueryError::new(format!(
            "_has:{spec}: '{rest}' is not a search parameter of {source}"
        ))
    })?;
    Ok(Filter::Has {
        source_type: source.to_string(),
        param,
        inner: Box::new(inner),
    })
}

/// `head.rest` where head is `param` or `param:Type`.
fn parse_chain(
    rtype: &str,
    head: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Filter>, QueryError> {
    let (code, type_modifier) = match head.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    if SearchParams::get().find(rtype, code).is_none() {
        return Ok(None);
    }
    let whole = format!("{head}.{rest}");
    let param = reference_param(rtype, code, &whole)?;
    let candidates: Vec<&String> = match type_modifier {
        Some(t) if param.target.iter().any(|x| x == t) => {
            param.target.iter().filter(|x| *x == t).collect()
        }
        Some(t) => {
            return Err(QueryError::new(format!(
                "{whole}: {rtype}.{code} does not point at a {t} (it may point at: {})",
                param.target.join(", ")
            )));
        }
        None => param.target.iter().collect(),
    };
    let mut targets = Vec::new();
    let mut terms = 0;
    // Without a `:Type`, the rest of the chain is tried on every type the reference may point
    // at, and kept where it applies: where it does not (a parameter that is a token there, say)
    // that type is passed over, and only if it applies nowhere is the first reason given.
    let mut first_error = None;
    for target in candidates {
        let parsed = match parse_at(target, rest, value, depth + 1) {
            Ok(p) => p,
            // (a fan-out past the bound is never passed over: it ends the parse)
            Err(e) if type_modifier.is_none() && !e.over_bound => {
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(f) = parsed {
            terms += 1 + f.size();
            if terms > MAX_TERMS {
                return Err(too_many_terms(&whole));
            }
            targets.push((target.clone(), f));
        }
    }
    if targets.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            QueryError::new(format!(
                "{whole}: '{rest}' is not a search parameter of any type {rtype}.{code} points at"
            ))
        }));
    }
    Ok(Some(Filter::Chain { param, targets }))
}

pub fn too_many_terms(name: &str) -> QueryError {
    QueryError {
        over_bound: true,
        ..QueryError::new(format!(
            "{name}: the search tests more than {MAX_TERMS} terms (chains through references \
             that may point at many types test each of them); name the target type \
             (param:Type.rest) or narrow it"
        ))
    }
}

fn reference_param(
    rtype: &str,
    code: &str,
    whole: &str,
) -> Result<&'static SearchParam, QueryError> {
    match SearchParams::get().find(rtype, code) {
        Some(p) if p.kind == ParamType::Reference => Ok(p),
        Some(p) => Err(QueryError::new(format!(
            "{whole}: {rtype}.{code} is a {} parameter; only references chain",
            p.kind.as_str()
        ))),
        None => Err(QueryError::new(format!(
            "{whole}: '{code}' is not a search parameter of {rtype}"
        ))),
    }
}

/// The Patient compartment's members: for each type, its parameters (see `patient_compartment`).
fn compartment_members() -> &'static BTreeMap<String, Vec<String>> {
    static COMPARTMENT: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    COMPARTMENT.get_or_init(|| {
        serde_json::from_str(include_str!("../../../capability/compartment-patient.json"))
            .expect("capability/compartment-patient.json is valid (generated file)")
    })
}

/// The codes of the reference parameters that make a `rtype` resource a member of a patient's
/// compartment; `None` for types that are never members.
pub fn compartment_params(rtype: &str) -> Option<&'static [String]> {
    compartment_members().get(rtype).map(Vec::as_slice)
}

/// The types with members in a patient's compartment, Patient among them, in name order.
pub fn compartment_types() -> impl Iterator<Item = &'static str> {
    compartment_members()
        .iter()
        .filter(|(t, params)| t.as_str() == "Patient" || !params.is_empty())
        .map(|(t, _)| t.as_str())
}

/// The Patient compartment (R4 CompartmentDefinition/patient): for each resource type, the
/// reference parameters that make a resource a member. Derived by
/// `scripts/gen-search-parameters.py` into `capability/compartment-patient.json`.
pub fn patient_compartment(rtype: &str, patient: &str) -> Result<Filter, QueryError> {
    compartment_of(rtype, &[patient.to_string()])
}

/// `patient_compartment` of several patients at once: in any one's compartment.
pub fn compartment_of(rtype: &str, patients: &[String]) -> Result<Filter, QueryError> {
    compartment_filter(rtype, Some(patients.to_vec()))
}

/// The compartment of every patient: `rtype`'s resources that refer to some Patient through
/// a compartment parameter (every Patient, for `Patient`).
pub fn any_patient_compartment(rtype: &str) -> Result<Filter, QueryError> {
    compartment_filter(rtype, None)
}

fn compartment_filter(rtype: &str, patients: Option<Vec<String>>) -> Result<Filter, QueryError> {
    // a Subscription is a patient's by the server's own parameter (see `params`), not by the
    // spec's compartment, which has none (nor does `$everything` return them)
    let subscription = [super::params::SUBSCRIPTION_PATIENT_PARAM.to_string()];
    let codes = (rtype == "Subscription")
        .then_some(&subscription[..])
        .or_else(|| compartment_params(rtype))
        .ok_or_else(|| {
            QueryError::new(format!(
                "{rtype} resources are not in the Patient compartment"
            ))
        })?;
    let params = codes
        .iter()
        .filter_map(|c| SearchParams::get().find(rtype, c))
        .filter(|p| p.kind == ParamType::Reference)
        .collect();
    Ok(Filter::Compartment {
        patients,
        params,
        is_patient_type: rtype == "Patient",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_reference_targets() {
        let f = parse_filter("Observation", "subject:Patient.name", "peter")
            .unwrap()
            .unwrap();
        let Filter::Chain { param, targets } = f else {
            panic!("not a chain")
        };
        assert_eq!(param.code, "subject");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].0, "Patient");
        // without a type, every target type that has the parameter
        let Filter::Chain { targets, .. } = parse_filter("Observation", "subject.name", "x")
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        assert!(targets.iter().any(|(t, _)| t == "Patient"));
        assert!(targets.iter().any(|(t, _)| t == "Location"));
        // two levels
        assert!(
            parse_filter("Observation", "encounter.patient.family", "x")
                .unwrap()
                .is_some()
        );
        assert!(parse_filter("Observation", "code.text", "x").is_err());
        assert!(parse_filter("Observation", "subject:Patient.nonsense", "x").is_err());
        assert!(
            parse_filter("Observation", "nonsense.name", "x")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn reverse_chains_name_a_source_that_points_here() {
        let f = parse_filter("Patient", "_has:Observation:patient:code", "1234-5")
            .unwrap()
            .unwrap();
        assert!(matches!(f, Filter::Has { ref source_type, .. } if source_type == "Observation"));
        assert!(parse_filter("Patient", "_has:Observation:code:code", "x").is_err());
        assert!(parse_filter("Patient", "_has:Spaceship:patient:code", "x").is_err());
        assert!(parse_filter("Patient", "_has:Observation:patient", "x").is_err());
        assert!(
            parse_filter(
                "Patient",
                "_has:Observation:patient:_has:Provenance:target:agent",
                "Practitioner/1"
            )
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn the_patient_compartment_comes_from_the_spec() {
        let Filter::Compartment { params, .. } = patient_compartment("Observation", "p1").unwrap()
        else {
            panic!()
        };
        let codes: Vec<&str> = params.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes, ["subject", "performer"]);
        assert!(patient_compartment("CodeSystem", "p1").is_err());
    }
}
