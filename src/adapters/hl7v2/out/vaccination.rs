//! FHIR to HL7v2 immunizations: an Immunization's change written as VXU^V04 (ORC, RXA, RXR and
//! the OBX an immunization registry reads its funding and eligibility from), the inbound map
//! (`map::immunization`) turned round: the vaccine (RXA-5), when (RXA-3), the dose (RXA-6/7,
//! 999 when unknown), whether it is a new record or a history (RXA-9), who gave and ordered it
//! (RXA-10, ORC-12), lot, expiry and manufacturer (RXA-15 to 17), refusal and indication
//! (RXA-18, 19), completion status and action code (RXA-20, 21), route and site (RXR).
//! IG: VXU_V04, RXA[Immunization], RXR[Immunization]; CDC IIS implementation guide 2.5.1.

use super::adt::{Envelope, dtm, items, msh, pid, text, xcn};
use super::oru::{cwe, ei, units};
use super::pharmacy::number;
use super::write::{Seg, message, rep};
use serde_json::{Value, json};

/// The LOINC codes of the OBX an RXA is followed by (as the inbound map reads them).
const FUNDING_SOURCE: (&str, &str) = ("30963-3", "Vaccine funding source");
const ELIGIBILITY: (&str, &str) = ("64994-7", "Vaccine fund pgm elig cat");

/// RXA-20 (table 0322) and RXA-21 (table 0206) from the Immunization's status, and whether
/// it was written before (`updated`).
fn completion(i: &Value, updated: bool) -> (&'static str, &'static str) {
    match text(i, &["status"]) {
        "entered-in-error" => ("CP", "D"),
        "not-done" if i.get("statusReason").is_some() => ("RE", if updated { "U" } else { "A" }),
        "not-done" => ("NA", if updated { "U" } else { "A" }),
        _ => ("CP", if updated { "U" } else { "A" }),
    }
}

/// One vaccination of a message: the Immunization, whether it was written before (not its
/// first version), the Practitioners who gave it and the one who ordered it.
pub struct Given {
    pub immunization: Value,
    pub updated: bool,
    pub given_by: Vec<Value>,
    pub ordered_by: Option<Value>,
}

/// A VXU^V04 for `patient`'s vaccinations: an ORC, RXA, RXR and OBX group each.
pub fn vxu(env: &Envelope, patient: &Value, given: &[Given]) -> String {
    let mut segments = vec![msh(env, &["VXU", "V04", "VXU_V04"]), pid(patient)];
    for g in given {
        segments.extend(vaccination(g));
    }
    message(&segments, &env.delimiters)
}

/// ORC, RXA, RXR and OBX of one vaccination.
fn vaccination(g: &Given) -> Vec<Seg> {
    let i = &g.immunization;
    let ids = &i["identifier"];
    let (status, action) = completion(i, g.updated);
    let dose = &i["doseQuantity"];
    let amount = match number(dose) {
        n if n.is_empty() => "999".to_string(),
        n => n,
    };
    let source = match i["primarySource"].as_bool() {
        Some(true) => rep(&["00", "New immunization record", "NIP001"]),
        _ if i.get("reportOrigin").is_some() => cwe(&i["reportOrigin"]),
        Some(false) => rep(&[
            "01",
            "Historical information - source unspecified",
            "NIP001",
        ]),
        None => Vec::new(),
    };
    let manufacturer = text(i, &["manufacturer", "display"]);
    let mut segments = vec![
        Seg::new("ORC")
            .text(1, "RE")
            .text(2, &ei(ids, "PLAC"))
            .text(3, &ei(ids, "FILL"))
            .reps(12, g.ordered_by.iter().map(xcn).collect()),
        Seg::new("RXA")
            .text(1, "0")
            .text(2, "1")
            .text(3, &dtm(text(i, &["occurrenceDateTime"])))
            .reps(5, vec![cwe(&i["vaccineCode"])])
            .text(6, &amount)
            .reps(7, vec![units(dose)])
            .reps(9, vec![source])
            .reps(10, g.given_by.iter().map(xcn).collect())
            .text(15, text(i, &["lotNumber"]))
            .text(16, &dtm(text(i, &["expirationDate"])))
            .comps(17, &["", manufacturer])
            .reps(18, vec![cwe(&i["statusReason"])])
            .reps(19, items(&i["reasonCode"]).iter().map(cwe).collect())
            .text(20, status)
            .text(21, action)
            .text(22, &dtm(text(i, &["recorded"]))),
    ];
    let route = Seg::new("RXR")
        .reps(1, vec![cwe(&i["route"])])
        .reps(2, vec![cwe(&i["site"])]);
    if route != Seg::new("RXR") {
        segments.push(route);
    }
    let mut observed: Vec<((&str, &str), &Value)> = Vec::new();
    if let Some(f) = i.get("fundingSource") {
        observed.push((FUNDING_SOURCE, f));
    }
    for e in items(&i["programEligibility"]) {
        observed.push((ELIGIBILITY, e));
    }
    let at = dtm(text(i, &["occurrenceDateTime"]));
    for (n, ((code, name), value)) in observed.into_iter().enumerate() {
        let loinc = cwe(
            &json!({"coding": [{"system": "http://loinc.org", "code": code, "display": name}]}),
        );
        segments.push(
            Seg::new("OBX")
                .text(1, &(n + 1).to_string())
                .text(2, "CE")
                .reps(3, vec![loinc])
                .text(4, &(n + 1).to_string())
                .reps(5, vec![cwe(value)])
                .text(11, "F")
                .text(14, &at),
        );
    }
    segments
}
