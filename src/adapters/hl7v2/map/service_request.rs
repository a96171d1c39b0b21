//! ORM^O01 and OML^O21 (orders for tests and procedures): each OBR, with the ORC it comes
//! under, -> a ServiceRequest for the patient of PID; its DG1 -> Conditions that are the
//! order's reasons; the ordering provider -> a Practitioner. IG: ORM_O01 / OML_O21, ORC and
//! OBR[ServiceRequest].
//!
//! Identity: an order is its placer order number (ORC-2, else OBR-2), so that the same order
//! sent again (scheduled, then cancelled, then completed) updates one ServiceRequest.

use super::super::datatypes::{
    append, codeable, cq_quantity, instant, minutes, put, said, shifted, telecom,
};
use super::order::{self, Item};
use super::{Context, Resource, Unmapped, clinical, failed, unsupported};
use serde_json::{Map, Value, json};

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    let expected = match cx.header.message_type.as_str() {
        "ORM" => "O01",
        _ => "O21",
    };
    if trigger != expected {
        return Err(unsupported(
            "201",
            format!(
                "{} trigger event '{trigger}' is not one this server takes ({expected})",
                cx.header.message_type
            ),
        ));
    }
    let (patient, mut out) = super::patient::with_allergies(cx)?;
    let items = order::items(cx, "OBR");
    if items.is_empty() {
        return Err(failed(
            "OBR",
            "100",
            "an order message needs an OBR segment (what is ordered)",
        ));
    }
    for (n, item) in items.iter().enumerate() {
        request(cx, n + 1, item, &patient, &mut out)?;
    }
    Ok(out)
}

fn request(
    cx: &Context,
    n: usize,
    item: &Item,
    patient: &Resource,
    out: &mut Vec<Resource>,
) -> Result<(), Unmapped> {
    let obr = item.main;
    let code = codeable(obr.field(4).first()).ok_or_else(|| {
        failed(
            "OBR-4",
            "101",
            "OBR-4 (universal service identifier) is empty: what is ordered is not said",
        )
    })?;
    let id = order::order_id(
        cx,
        "ServiceRequest",
        item,
        Some(2),
        Some(3),
        &[&n.to_string()],
    );
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("ServiceRequest"));
    r.insert("id".into(), json!(id));
    put(
        &mut r,
        "identifier",
        Value::Array(order::identifiers(cx, item, Some(2), Some(3))),
    );
    // the placer group number (ORC-4): the requisition the order was placed under
    if let Some(group) = item.orc.map(|o| o.field(4).first())
        && !group.get(1).trim().is_empty()
    {
        r.insert(
            "requisition".into(),
            json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PGN"}]},
                   "system": order::system(cx, group), "value": group.get(1).trim()}),
        );
    }
    r.insert("status".into(), json!(order::request_status(item.orc)));
    // a reflex test (OBR-11 G) is a reflex order, as the IG maps it
    let intent = match obr.value(11) {
        "G" => "reflex-order",
        _ => "order",
    };
    r.insert("intent".into(), json!(intent));
    if let Some(p) = priority(item) {
        r.insert("priority".into(), json!(p));
    }
    r.insert("code".into(), code);
    r.insert("subject".into(), json!({"reference": patient.reference()}));
    occurrence(cx, item, &mut r);
    // the order type (ORC-29: inpatient, outpatient...) as where it is to be done
    if let Some(t) = item.orc.and_then(|o| codeable(o.field(29).first())) {
        r.insert("locationCode".into(), json!([t]));
    }
    // the placer's and filler's supplemental information (OBR-46, OBR-47)
    let details: Vec<Value> = [46, 47]
        .into_iter()
        .flat_map(|f| obr.field(f).repetitions())
        .filter_map(codeable)
        .collect();
    put(&mut r, "orderDetail", Value::Array(details));
    // the parent order of a reflex or child order (OBR-29: placer^filler), by identifier
    let parent: Vec<Value> = [(1, "PLAC"), (2, "FILL")]
        .into_iter()
        .filter_map(|(c, code)| {
            order::eip_reference(cx, obr.field(29).first(), c, code, "ServiceRequest")
        })
        .collect();
    put(&mut r, "basedOn", Value::Array(parent));
    if let Some(at) = item.orc.and_then(|o| cx.date_time(o.value(9), "ORC-9")) {
        r.insert("authoredOn".into(), json!(at));
    }
    if let Some(pr) = order::requester(cx, item) {
        r.insert("requester".into(), json!({"reference": pr.reference()}));
        order::add_once(out, pr);
    }
    callback_and_context(item, &mut r);
    // DG1 of the order: the reasons for it, as Conditions of the patient
    let mut reasons = Vec::new();
    for dg1 in item.all("DG1") {
        if let Some(c) = clinical::diagnosis(cx, dg1, &patient.id, None, out) {
            reasons.push(json!({"reference": c.reference()}));
        }
    }
    put(&mut r, "reasonReference", Value::Array(reasons));
    // OBR-31, the reason for study, when coded there instead
    let coded_reasons: Vec<Value> = obr.field(31).repetitions().filter_map(codeable).collect();
    put(&mut r, "reasonCode", Value::Array(coded_reasons));
    // the NTE notes, then TQ1's text instruction
    append(&mut r, "note", order::notes(cx, item));
    let instruction = item.first("TQ1").and_then(|tq| said(tq.value(11)));
    append(&mut r, "note", instruction.map(|t| json!({"text": t})));
    out.push(Resource {
        rtype: "ServiceRequest",
        id,
        body: Value::Object(r),
    });
    Ok(())
}

/// What the IG keeps in extensions of the order: the number to call back about it (OBR-17 on
/// the requester, else ORC-14 on the order), why its status is what it is (ORC-16, when ORC-5
/// does not say), and the relevant clinical information (OBR-13, as R5's supportingInfo
/// concept: R4 has no CodeableReference, so its value is the CodeableConcept).
fn callback_and_context(item: &Item, r: &mut Map<String, Value>) {
    const CALLBACK: &str =
        "http://hl7.org/fhir/StructureDefinition/servicerequest-order-callback-phone-number";
    let phone = |f: &super::super::message::Field| f.repetitions().find_map(|x| telecom(x, "work"));
    if let Some(p) = phone(item.main.field(17)) {
        if !r.contains_key("requester") {
            r.insert("requester".into(), json!({}));
        }
        r["requester"]["extension"] = json!([{"url": CALLBACK, "valueContactPoint": p}]);
    } else if let Some(p) = item.orc.and_then(|o| phone(o.field(14))) {
        append(
            r,
            "extension",
            [json!({"url": CALLBACK, "valueContactPoint": p})],
        );
    }
    let orc = item.orc;
    if let Some(reason) = orc
        .filter(|o| o.value(5).trim().is_empty())
        .and_then(|o| codeable(o.field(16).first()))
    {
        append(
            r,
            "extension",
            [
                json!({"url": "http://hl7.org/fhir/StructureDefinition/request-statusReason",
                    "valueCodeableConcept": reason}),
            ],
        );
    }
    let info: Vec<Value> = item
        .main
        .field(13)
        .repetitions()
        .filter_map(codeable)
        .map(|c| {
            json!({"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-ServiceRequest.supportingInfo",
                   "valueCodeableConcept": c})
        })
        .collect();
    append(r, "extension", info);
}

/// When: a repeating service's Timing (TQ1 with a pattern, times of day or a count), else
/// TQ1's start and end (TQ1-7, TQ1-8) as a period, its start alone as a time, else the
/// requested time (OBR-6), else the observation time (OBR-7); TQ1-2 as the quantity.
fn occurrence(cx: &Context, item: &Item, r: &mut Map<String, Value>) {
    let tq1 = item.first("TQ1");
    // a repeating service (a pattern, times of day, a count): its Timing
    if let Some(tq) = tq1
        && [3, 4, 14].iter().any(|f| said(tq.value(*f)).is_some())
    {
        r.insert("occurrenceTiming".into(), order::timing(cx, tq));
    }
    let start = tq1.and_then(|tq| cx.date_time(tq.value(7), "TQ1-7"));
    let end = tq1.and_then(|tq| cx.date_time(tq.value(8), "TQ1-8"));
    match (start, end) {
        _ if r.contains_key("occurrenceTiming") => {}
        (start, Some(end)) => {
            let mut p = json!({"end": end});
            if let Some(s) = start {
                p["start"] = json!(s);
            }
            r.insert("occurrencePeriod".into(), p);
        }
        // a start and the service duration (TQ1-6): the period it implies
        (Some(at), None) => {
            let length = tq1.map(|tq| tq.field(6).first());
            let end = length
                .and_then(|l| minutes(l.get(1), l.sub(2, 1)))
                .and_then(|m| shifted(&instant(&at), m));
            match end {
                Some(end) => r.insert("occurrencePeriod".into(), json!({"start": at, "end": end})),
                None => r.insert("occurrenceDateTime".into(), json!(at)),
            };
        }
        (None, None) => {
            if let Some(at) = cx
                .date_time(item.main.value(6), "OBR-6")
                .or_else(|| cx.date_time(item.main.value(7), "OBR-7"))
            {
                r.insert("occurrenceDateTime".into(), json!(at));
            }
        }
    }
    let Some(tq1) = tq1 else {
        return;
    };
    if let Some(q) = cq_quantity(tq1.field(2).first()) {
        r.insert("quantityQuantity".into(), q);
    }
}

/// TQ1-9 (v2.5 on) or OBR-27's priority component (before), else OBR-5 ->
/// ServiceRequest.priority.
fn priority(item: &Item) -> Option<&'static str> {
    let code = item
        .first("TQ1")
        .map(|tq| tq.get(9, 1))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| item.main.get(27, 6));
    // OBR-5, kept for backward compatibility, when nothing newer says
    order::priority(code).or_else(|| order::priority(item.main.get(5, 1)))
}
