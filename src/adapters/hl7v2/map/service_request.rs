//! ORM^O01 and OML^O21 (orders for tests and procedures): each OBR, with the ORC it comes
//! under, -> a ServiceRequest for the patient of PID; its DG1 -> Conditions that are the
//! order's reasons; the ordering provider -> a Practitioner. IG: ORM_O01 / OML_O21, ORC and
//! OBR[ServiceRequest].
//!
//! Identity: an order is its placer order number (ORC-2, else OBR-2), so that the same order
//! sent again (scheduled, then cancelled, then completed) updates one ServiceRequest.

use super::super::datatypes::{codeable, put};
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
    r.insert("status".into(), json!(order::request_status(item.orc)));
    r.insert("intent".into(), json!("order"));
    if let Some(p) = priority(item) {
        r.insert("priority".into(), json!(p));
    }
    r.insert("code".into(), code);
    r.insert("subject".into(), json!({"reference": patient.reference()}));
    if let Some(at) = item
        .first("TQ1")
        .and_then(|tq| cx.date_time(tq.value(7), "TQ1-7"))
        .or_else(|| cx.date_time(obr.value(7), "OBR-7"))
    {
        r.insert("occurrenceDateTime".into(), json!(at));
    }
    if let Some(at) = item.orc.and_then(|o| cx.date_time(o.value(9), "ORC-9")) {
        r.insert("authoredOn".into(), json!(at));
    }
    if let Some(pr) = order::requester(cx, item) {
        r.insert("requester".into(), json!({"reference": pr.reference()}));
        order::add_once(out, pr);
    }
    // DG1 of the order: the reasons for it, as Conditions of the patient
    let mut reasons = Vec::new();
    for dg1 in item.all("DG1") {
        if let Some(c) = clinical::diagnosis(cx, dg1, &patient.id, None) {
            reasons.push(json!({"reference": c.reference()}));
            order::add_once(out, c);
        }
    }
    put(&mut r, "reasonReference", Value::Array(reasons));
    // OBR-31, the reason for study, when coded there instead
    let coded_reasons: Vec<Value> = obr.field(31).repetitions().filter_map(codeable).collect();
    put(&mut r, "reasonCode", Value::Array(coded_reasons));
    put(&mut r, "note", Value::Array(order::notes(item)));
    out.push(Resource {
        rtype: "ServiceRequest",
        id,
        body: Value::Object(r),
    });
    Ok(())
}

/// TQ1-9 (v2.5 on) or OBR-27's priority component (before) -> ServiceRequest.priority.
fn priority(item: &Item) -> Option<&'static str> {
    let code = item
        .first("TQ1")
        .map(|tq| tq.get(9, 1))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| item.main.get(27, 6));
    match code {
        "S" => Some("stat"),
        "A" | "P" | "C" => Some("asap"),
        "R" | "T" => Some("routine"),
        _ => None,
    }
}
