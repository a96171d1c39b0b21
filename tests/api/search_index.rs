//! The search index over the R4 examples: every example is indexed without error, and the
//! search parameters' expressions find values in them (the figure is printed: run with
//! `--nocapture` to see which parameters the examples never exercise).

use crate::corpus::example_resources;
use emrsync::fhir::search::SearchParams;
use emrsync::fhir::search::index::index;
use std::collections::BTreeSet;

#[test]
fn every_example_is_indexed_and_most_parameters_find_values() {
    let examples = example_resources();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut types: BTreeSet<String> = BTreeSet::new();
    let mut rows = 0;
    for (_, resource) in &examples {
        let rtype = resource["resourceType"].as_str().unwrap().to_string();
        let e = index(resource);
        rows += e.len();
        let params = e
            .strings
            .iter()
            .map(|x| x.param)
            .chain(e.tokens.iter().map(|x| x.param))
            .chain(e.references.iter().map(|x| x.param))
            .chain(e.dates.iter().map(|x| x.param))
            .chain(e.numbers.iter().map(|x| x.param))
            .chain(e.quantities.iter().map(|x| x.param))
            .chain(e.uris.iter().map(|x| x.param))
            .chain(e.composites.iter().map(|x| x.param));
        for p in params {
            used.insert((rtype.clone(), p.to_string()));
        }
        types.insert(rtype);
    }
    let sp = SearchParams::get();
    let possible: BTreeSet<(String, String)> = types
        .iter()
        .flat_map(|t| sp.of_type(t).map(move |p| (t.clone(), p.code.clone())))
        .collect();
    let unused: Vec<String> = possible
        .difference(&used)
        .map(|(t, p)| format!("{t}.{p}"))
        .collect();
    println!(
        "{} examples, {rows} index rows; {} of {} (type, parameter) pairs found values; never found: {}",
        examples.len(),
        used.len(),
        possible.len(),
        unused.join(", ")
    );
    // the examples exercise a bit over half of what could be found (many examples are minimal,
    // and none carries meta.lastUpdated before it is stored); these must all be found:
    for pair in [
        "Patient.family",
        "Patient.birthdate",
        "Patient.identifier",
        "Patient.gender",
        "Patient.address-city",
        "Observation.code",
        "Observation.patient",
        "Observation.date",
        "Observation.value-quantity",
        "Observation.component-code-value-quantity",
        "Observation.combo-code",
        "Encounter.date",
        "Encounter.subject",
        "Condition.clinical-status",
        "MedicationRequest.medication",
        "MedicationRequest.authoredon",
        "AllergyIntolerance.patient",
        "Immunization.vaccine-code",
        "DiagnosticReport.result",
        "Practitioner.name",
        "Organization.name",
        "ActivityDefinition.context-type-value",
        "Bundle.type",
    ] {
        let (t, p) = pair.split_once('.').unwrap();
        assert!(
            used.contains(&(t.to_string(), p.to_string())),
            "{pair} found no value in the examples"
        );
    }
    assert!(
        used.len() * 2 > possible.len(),
        "{} of {}",
        used.len(),
        possible.len()
    );
}
