//! What PV1 and PV2 say of a visit beyond its number, class, status, times and providers (IG
//! PV1[Encounter], PV2[Encounter]): where the patient is, was, will be and is held
//! temporarily, and the details of the stay. Codes without a system are of the v2 table the
//! field names; the IG's code maps add the standard coding where it has one.

use super::super::codes;
use super::super::datatypes::{codeable, identifier, put};
use super::super::message::Segment;
use super::adt::location;
use super::order::add_once;
use super::{Context, Resource};
use serde_json::{Map, Value, json};

/// Where the patient went on discharge (PV1-37, DLD: a location code in subcomponents, and
/// since when): a Location of that name, the stay's destination.
pub fn destination(cx: &Context, pv1: &Segment, out: &mut Vec<Resource>) -> Option<Value> {
    let dld = pv1.field(37).first();
    let name = [dld.sub(1, 2), dld.sub(1, 1)]
        .into_iter()
        .find_map(super::super::datatypes::said)?;
    let id = cx.stable_id(
        "Location",
        &[&cx.header.sending_facility, "discharge", name],
    );
    out.push(Resource {
        rtype: "Location",
        id: id.clone(),
        body: json!({"resourceType": "Location", "id": id, "status": "active", "name": name,
                     "mode": "kind"}),
    });
    Some(json!({"reference": format!("Location/{id}"), "display": name}))
}

/// The visit's locations, each a Location written with it: the current one (PV1-3, active),
/// the prior (PV1-6, completed), the temporary (PV1-11, active), the pending (PV1-42,
/// reserved) and the prior pending (PV2-1, planned).
pub fn locations(cx: &Context, pv1: &Segment, out: &mut Vec<Resource>) -> Vec<Value> {
    let pv2 = cx.msg.first("PV2");
    let places = [
        (Some(pv1), 3, "active"),
        (Some(pv1), 6, "completed"),
        (Some(pv1), 11, "active"),
        (Some(pv1), 42, "reserved"),
        (pv2, 1, "planned"),
    ];
    let mut list = Vec::new();
    for (seg, field, status) in places {
        let Some(loc) = seg.and_then(|s| location(cx, s.field(field).first())) else {
            continue;
        };
        list.push(
            json!({"location": {"reference": loc.reference(), "display": loc.body["name"]},
                         "status": status}),
        );
        add_once(out, loc);
    }
    list
}

/// What PV1 and PV2 say of the visit beyond its number, class, status and times (IG
/// PV1[Encounter], PV2[Encounter]): admission type (PV1-4) as `type`, hospital service (PV1-10)
/// as `serviceType`, admit source (PV1-14) and discharge disposition (PV1-36), admit reason
/// (PV2-3) as `reasonCode`, expected admission and discharge (PV2-8, PV2-9) as R5's planned
/// start and end (cross-version extensions). Codes without a system are of the v2 table the
/// field names.
pub fn details(cx: &Context, pv1: &Segment, e: &mut Map<String, Value>) {
    let coded = |seg: &Segment, field: usize, table: &str| {
        let mut cc = codeable(seg.field(field).first())?;
        for c in cc["coding"].as_array_mut().into_iter().flatten() {
            if c.get("system").is_none() {
                c["system"] = json!(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
            }
        }
        Some(cc)
    };
    if let Some(t) = coded(pv1, 4, "0007") {
        e.insert(
            "type".into(),
            json!([codes::standardise("AdmissionType", t)]),
        );
    }
    if let Some(s) = coded(pv1, 10, "0069") {
        e.insert(
            "serviceType".into(),
            codes::standardise("HospitalService", s),
        );
    }
    let mut stay = Map::new();
    if let Some(s) = coded(pv1, 14, "0023") {
        stay.insert("admitSource".into(), s);
    }
    if let Some(d) = coded(pv1, 36, "0112") {
        stay.insert("dischargeDisposition".into(), d);
    }
    let facility = &cx.header.sending_facility;
    if let Some(pre) = identifier(pv1.field(5).first(), cx.systems, facility, cx.zone) {
        stay.insert("preAdmissionIdentifier".into(), pre);
    }
    if let Some(r) = coded(pv1, 13, "0092") {
        stay.insert("reAdmission".into(), r);
    }
    for (field, table, element) in [
        (15, "0009", "specialArrangement"),
        (16, "0099", "specialCourtesy"),
        (38, "0114", "dietPreference"),
    ] {
        let all: Vec<Value> = pv1
            .field(field)
            .repetitions()
            .filter_map(codeable)
            .map(|mut cc| {
                for c in cc["coding"].as_array_mut().into_iter().flatten() {
                    if c.get("system").is_none() {
                        c["system"] =
                            json!(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
                    }
                }
                cc
            })
            .collect();
        put(&mut stay, element, Value::Array(all));
    }
    put(e, "hospitalization", Value::Object(stay));
    // the alternate visit id (PV1-50) is an identifier of the visit too
    if let Some(alt) = identifier(pv1.field(50).first(), cx.systems, facility, cx.zone)
        && let Some(Value::Array(ids)) = e.get_mut("identifier")
    {
        ids.push(alt);
    }
    let Some(pv2) = cx.msg.first("PV2") else {
        return;
    };
    if let Some(r) = codeable(pv2.field(3).first()) {
        e.insert("reasonCode".into(), json!([r]));
    }
    // the actual length of the stay so far (PV2-11), in days
    if let Ok(days) = pv2.value(11).trim().parse::<serde_json::Number>() {
        e.insert(
            "length".into(),
            json!({"value": days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}),
        );
    }
    if let Some(p) = coded(pv2, 25, "0217") {
        e.insert("priority".into(), p);
    }
    let mut planned = Vec::new();
    for (field, name, what) in [
        (8, "PV2-8", "plannedStartDate"),
        (9, "PV2-9", "plannedEndDate"),
    ] {
        if let Some(at) = cx.date_time(pv2.value(field), name) {
            planned.push(json!({
                "url": format!("http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.{what}"),
                "valueDateTime": at
            }));
        }
    }
    // mode of arrival (PV2-38), as the core extension
    if let Some(mode) = coded(pv2, 38, "0430")
        && let Some(coding) = mode["coding"].get(0)
    {
        planned.push(
            json!({"url": "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival",
                            "valueCoding": coding}),
        );
    }
    put(e, "extension", Value::Array(planned));
}
