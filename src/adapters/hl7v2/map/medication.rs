//! Pharmacy: RDE^O11 (an encoded order) -> a MedicationRequest per RXE; RAS^O17 (an
//! administration) -> a MedicationAdministration per RXA, pointing at its order's
//! MedicationRequest. IG: RDE_O11, RAS_O17, RXE / RXO[MedicationRequest], RXA / RXR
//! [MedicationAdministration].
//!
//! Identity: a request is its placer order number (ORC-2), like every order; an administration
//! is its order (or patient) plus RXA-1, RXA-2 and its start time.

use super::super::datatypes::{append, codeable, cq_quantity, cwe_texts, date_time, put, said};
use super::super::message::Segment;
use super::observation::quantity;
use super::order::{self, Item};
use super::{Context, Resource, Unmapped, adt, failed, unsupported};
use serde_json::{Map, Value, json};

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    let (main, kind) = match (cx.header.message_type.as_str(), trigger) {
        ("RDE", "O11") => ("RXE", "an encoded order (RXE)"),
        ("RAS", "O17") => ("RXA", "an administration (RXA)"),
        (ty, _) => {
            let takes = if ty == "RDE" { "O11" } else { "O17" };
            return Err(unsupported(
                "201",
                format!("{ty} trigger event '{trigger}' is not one this server takes ({takes})"),
            ));
        }
    };
    let (patient, mut out) = super::patient::with_allergies(cx)?;
    let items = order::items(cx, main);
    if items.is_empty() {
        return Err(failed(
            main,
            "100",
            format!("a {}^{trigger} needs {kind}", cx.header.message_type),
        ));
    }
    for (n, item) in items.iter().enumerate() {
        let r = match main {
            "RXE" => request(cx, n + 1, item, &patient, &mut out)?,
            _ => administration(cx, item, &patient, &mut out)?,
        };
        out.push(r);
    }
    Ok(out)
}

/// RXE (with its ORC, RXO and RXR) -> MedicationRequest.
fn request(
    cx: &Context,
    n: usize,
    item: &Item,
    patient: &Resource,
    out: &mut Vec<Resource>,
) -> Result<Resource, Unmapped> {
    let rxe = item.main;
    let rxo = item.first("RXO");
    // the give code, else what was requested
    let medication = codeable(rxe.field(2).first())
        .or_else(|| rxo.and_then(|o| codeable(o.field(1).first())))
        .ok_or_else(|| {
            failed(
                "RXE-2",
                "101",
                "RXE-2 (give code) is empty: which medication is not said",
            )
        })?;
    let id = order::order_id(cx, "MedicationRequest", item, None, None, &[&n.to_string()]);
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("MedicationRequest"));
    r.insert("id".into(), json!(id));
    put(
        &mut r,
        "identifier",
        Value::Array(order::identifiers(cx, item, None, None)),
    );
    r.insert("status".into(), json!(order::medication_status(item.orc)));
    r.insert("intent".into(), json!("order"));
    r.insert("medicationCodeableConcept".into(), medication);
    r.insert("subject".into(), json!({"reference": patient.reference()}));
    if let Some(at) = item.orc.and_then(|o| cx.date_time(o.value(9), "ORC-9")) {
        r.insert("authoredOn".into(), json!(at));
    }
    if let Some(pr) = order::requester(cx, item) {
        r.insert("requester".into(), json!({"reference": pr.reference()}));
        order::add_once(out, pr);
    }
    put(&mut r, "note", Value::Array(order::notes(cx, item)));
    let mut dosage = Map::new();
    put(
        &mut dosage,
        "text",
        json!(cwe_texts(rxe.field(7)).join("\n")),
    );
    // RXR: the route, the site, the method and further instructions
    if let Some(rxr) = item.first("RXR") {
        for (field, element) in [(1, "route"), (2, "site"), (4, "method")] {
            if let Some(c) = codeable(rxr.field(field).first()) {
                dosage.insert(element.into(), c);
            }
        }
        let more: Vec<Value> = rxr.field(5).repetitions().filter_map(codeable).collect();
        put(&mut dosage, "additionalInstruction", Value::Array(more));
    }
    // after RXR: TQ1's condition adds to its instructions
    if let Some(tq1) = item.first("TQ1") {
        timing(cx, tq1, &mut dosage, &mut r);
    }
    if let Some(dose) = quantity(rxe.value(3), rxe.field(5).first()) {
        dosage.insert("doseAndRate".into(), json!([{"doseQuantity": dose}]));
    }
    if !dosage.is_empty() {
        r.insert("dosageInstruction".into(), json!([dosage]));
    }
    let mut dispense = Map::new();
    if let Some(q) = quantity(rxe.value(10), rxe.field(11).first()) {
        dispense.insert("quantity".into(), q);
    }
    if let Ok(refills) = rxe.value(12).trim().parse::<u32>() {
        dispense.insert("numberOfRepeatsAllowed".into(), json!(refills));
    }
    put(&mut r, "dispenseRequest", Value::Object(dispense));
    Ok(Resource {
        rtype: "MedicationRequest",
        id,
        body: Value::Object(r),
    })
}

/// TQ1 (v2.5 on) -> the dosage's timing (IG TQ1[MedicationRequest], see `order::timing`);
/// the quantity (TQ1-2) as the dose, the condition (TQ1-10) as an instruction, the text (TQ1-11) as the dosage's
/// text, and the priority (TQ1-9) as the request's.
fn timing(
    cx: &Context,
    tq1: &Segment,
    dosage: &mut Map<String, Value>,
    r: &mut Map<String, Value>,
) {
    put(dosage, "timing", order::timing(cx, tq1));
    let amount = tq1.field(2).first();
    if !dosage.contains_key("doseAndRate")
        && let Some(dose) = cq_quantity(amount)
    {
        dosage.insert("doseAndRate".into(), json!([{"doseQuantity": dose}]));
    }
    if let Some(condition) = said(tq1.value(10)) {
        append(
            dosage,
            "additionalInstruction",
            [json!({"text": condition})],
        );
    }
    if let Some(text) = said(tq1.value(11))
        && !dosage.contains_key("text")
    {
        dosage.insert("text".into(), json!(text));
    }
    if let Some(p) = order::priority(tq1.get(9, 1)) {
        r.insert("priority".into(), json!(p));
    }
}

/// RXA (with its ORC and RXR) -> MedicationAdministration.
fn administration(
    cx: &Context,
    item: &Item,
    patient: &Resource,
    out: &mut Vec<Resource>,
) -> Result<Resource, Unmapped> {
    let rxa = item.main;
    let medication = codeable(rxa.field(5).first()).ok_or_else(|| {
        failed(
            "RXA-5",
            "101",
            "RXA-5 (administered code) is empty: which medication is not said",
        )
    })?;
    let start = date_time(rxa.value(3), cx.zone).ok_or_else(|| {
        failed(
            "RXA-3",
            "101",
            "RXA-3 (start of administration) is empty or not a date/time",
        )
    })?;
    // the order this administers, when the ORC names it
    let order_id = item
        .names_order()
        .then(|| order::order_id(cx, "MedicationRequest", item, None, None, &[]));
    let within = order_id.as_deref().unwrap_or(&patient.id);
    let id = cx.stable_id(
        "MedicationAdministration",
        &[within, rxa.value(1), rxa.value(2), &start],
    );
    let mut a = Map::new();
    a.insert("resourceType".into(), json!("MedicationAdministration"));
    a.insert("id".into(), json!(id));
    // the order's numbers (ORC-2, ORC-3) are the administration's identifiers too
    put(
        &mut a,
        "identifier",
        Value::Array(order::identifiers(cx, item, None, None)),
    );
    a.insert("status".into(), json!(order::administered(rxa, "stopped")));
    a.insert("medicationCodeableConcept".into(), medication);
    a.insert("subject".into(), json!({"reference": patient.reference()}));
    match cx
        .date_time(rxa.value(4), "RXA-4")
        .filter(|end| *end != start)
    {
        Some(end) => a.insert(
            "effectivePeriod".into(),
            json!({"start": start, "end": end}),
        ),
        None => a.insert("effectiveDateTime".into(), json!(start)),
    };
    let mut performers = Vec::new();
    for xcn in rxa.field(10).repetitions() {
        if let Some(pr) = adt::practitioner(cx, xcn) {
            performers.push(json!({"actor": {"reference": pr.reference()}}));
            order::add_once(out, pr);
        }
    }
    // the ordering provider (ORC-12), with the IG's function: ordering provider
    if let Some(pr) = order::requester(cx, item) {
        performers.push(json!({
            "function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "OP"}]},
            "actor": {"reference": pr.reference()}}));
        order::add_once(out, pr);
    }
    put(&mut a, "performer", Value::Array(performers));
    if let Some(o) = order_id {
        a.insert(
            "request".into(),
            json!({"reference": format!("MedicationRequest/{o}")}),
        );
    }
    let notes: Vec<Value> = cwe_texts(rxa.field(9))
        .into_iter()
        .map(|t| json!({"text": t}))
        .collect();
    put(&mut a, "note", Value::Array(notes));
    let mut dosage = Map::new();
    if let Some(route) = item
        .first("RXR")
        .and_then(|rxr| codeable(rxr.field(1).first()))
    {
        dosage.insert("route".into(), route);
    }
    if let Some(dose) = quantity(rxa.value(6), rxa.field(7).first()) {
        dosage.insert("dose".into(), dose);
    }
    put(&mut a, "dosage", Value::Object(dosage));
    Ok(Resource {
        rtype: "MedicationAdministration",
        id,
        body: Value::Object(a),
    })
}
