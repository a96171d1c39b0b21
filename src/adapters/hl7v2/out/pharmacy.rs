//! FHIR to HL7v2 pharmacy orders: a MedicationRequest's change written as RDE^O11 (ORC, RXE,
//! TQ1, RXR and NTE, after PID and PV1), the inbound map (`map::medication`) turned round: the
//! medication as the give code (RXE-2), the dose as the give amount and units (RXE-3, RXE-5),
//! the dosage's text as the administration instructions (RXE-7), the dispense quantity and
//! refills (RXE-10 to RXE-12), the timing's pattern and bounds and the priority (TQ1), route,
//! site and method (RXR).
//! IG: RDE_O11, RXE[MedicationRequest], RXR[MedicationRequest], TQ1[MedicationRequest].

use super::adt::{Envelope, dtm, items, msh, pid, pv1, text};
use super::orm::{Order, notes, orc};
use super::oru::{cwe, units};
use super::write::{Rep, Seg, message, rep};
use serde_json::Value;

/// A Quantity's number as v2 writes it (no trailing `.0`).
pub(super) fn number(q: &Value) -> String {
    match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// TQ1-9 (table 0485) from a request's priority.
pub(super) fn priority(request: &Value) -> &'static str {
    match text(request, &["priority"]) {
        "stat" => "S",
        "asap" | "urgent" => "A",
        "routine" => "R",
        _ => "",
    }
}

/// An RDE^O11 for `orders`' changes (MedicationRequests), of `patient` in `encounter`: an
/// ORC, RXE, NTE, TQ1 and RXR group per order.
pub fn rde(
    env: &Envelope,
    (patient, encounter): (&Value, Option<&Value>),
    orders: &[Order],
) -> String {
    let mut segments = vec![msh(env, &["RDE", "O11", "RDE_O11"]), pid(patient)];
    if let Some(e) = encounter {
        segments.push(pv1(e));
    }
    for o in orders {
        segments.push(orc(o));
        segments.extend(give(&o.current));
    }
    message(&segments, &env.delimiters)
}

/// RXE, NTE, TQ1 and RXR of one MedicationRequest.
fn give(request: &Value) -> Vec<Seg> {
    let dosage = items(&request["dosageInstruction"])
        .first()
        .cloned()
        .unwrap_or_default();
    let dose = &dosage["doseAndRate"][0]["doseQuantity"];
    let dispense = &request["dispenseRequest"];
    let refills = match &dispense["numberOfRepeatsAllowed"] {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let instructions: Vec<Rep> = text(&dosage, &["text"])
        .lines()
        .map(|l| rep(&["", l]))
        .collect();
    let mut segments = vec![
        Seg::new("RXE")
            .reps(2, vec![cwe(&request["medicationCodeableConcept"])])
            .text(3, &number(dose))
            .reps(5, vec![units(dose)])
            .reps(7, instructions)
            .text(10, &number(&dispense["quantity"]))
            .reps(11, vec![units(&dispense["quantity"])])
            .text(12, &refills),
    ];
    segments.extend(notes(request));
    let timing = &dosage["timing"];
    let bounds = &timing["repeat"]["boundsPeriod"];
    let tq1 = Seg::new("TQ1")
        .text(1, "1")
        .comps(3, &[text(timing, &["code", "text"])])
        .text(7, &dtm(text(bounds, &["start"])))
        .text(8, &dtm(text(bounds, &["end"])))
        .comps(9, &[priority(request)]);
    // TQ1 only when it says something beyond its set id
    if tq1 != Seg::new("TQ1").text(1, "1") {
        segments.push(tq1);
    }
    // RXR is required: written even when the route is not stated
    segments.push(
        Seg::new("RXR")
            .reps(1, vec![cwe(&dosage["route"])])
            .reps(2, vec![cwe(&dosage["site"])])
            .reps(4, vec![cwe(&dosage["method"])])
            .reps(
                5,
                items(&dosage["additionalInstruction"])
                    .iter()
                    .map(cwe)
                    .collect(),
            ),
    );
    segments
}
