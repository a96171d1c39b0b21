//! IN1 (insurance) -> a Coverage of the patient, paid by the insurer's Organization.
//! IG: IN1[Coverage] and IN1[Organization].
//!
//! Identity: the Coverage is the patient's plan (IN1-2) with that insurer (IN1-3) and policy
//! number (IN1-36); the Organization is the insurer's identifier (IN1-3), else its name, so
//! that one insurer named by many patients' messages is one Organization.

use super::super::datatypes::{address, each, identifier, name, put, telecom};
use super::super::message::Segment;
use super::order::add_once;
use super::{Context, Resource};
use serde_json::{Map, Value, json};

/// The Coverages the message's IN1 segments state, with their insurers, added to `out`.
pub fn all(cx: &Context, patient: &Resource, out: &mut Vec<Resource>) {
    for in1 in cx.msg.all("IN1") {
        for r in coverage(cx, in1, patient) {
            add_once(out, r);
        }
    }
}

/// The Coverage an IN1 states, and its payor; nothing without an insurer to pay.
fn coverage(cx: &Context, in1: &Segment, patient: &Resource) -> Vec<Resource> {
    let Some(payor) = insurer(cx, in1) else {
        tracing::info!(control_id = %cx.header.control_id, "an IN1 without an insurer (IN1-3, IN1-4) left out");
        return Vec::new();
    };
    let policy = in1.value(36).trim();
    let id = cx.stable_id(
        "Coverage",
        &[&patient.id, &payor.id, in1.get(2, 1).trim(), policy],
    );
    let mut c = Map::new();
    c.insert("resourceType".into(), json!("Coverage"));
    c.insert("id".into(), json!(id));
    // the health plan's id (IN1-2) names the coverage too, under its coding system
    let plan = in1.field(2).first();
    let plan_id = super::super::datatypes::said(plan.get(1)).map(|v| {
        let mut id = Map::new();
        put(
            &mut id,
            "system",
            json!(super::super::datatypes::coding_system(plan.get(3))),
        );
        id.insert("value".into(), json!(v));
        Value::Object(id)
    });
    if !policy.is_empty() {
        c.insert("identifier".into(), json!([{"value": policy}]));
        c.insert("subscriberId".into(), json!(policy));
    }
    super::super::datatypes::append(&mut c, "identifier", plan_id);
    // the insured's id with the payer (IN1-49): R4's subscriberId, and whole (with its
    // system) in the IG's extension
    let facility = &cx.header.sending_facility;
    if let Some(insured) = identifier(in1.field(49).first(), cx.systems, facility, cx.zone) {
        c.insert("subscriberId".into(), insured["value"].clone());
        c.insert(
            "extension".into(),
            json!([{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-subscriberId",
                    "valueIdentifier": insured}]),
        );
    }
    c.insert("status".into(), json!("active"));
    let plan_type = in1.get(15, 1).trim();
    if !plan_type.is_empty() {
        c.insert(
            "type".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0086", "code": plan_type}]}),
        );
    }
    c.insert(
        "beneficiary".into(),
        json!({"reference": patient.reference()}),
    );
    let mut more = Vec::new();
    // the employer whose group the insured is in (IN1-11, with its id IN1-10): the holder
    if let Some(holder) = employer(cx, in1) {
        c.insert(
            "policyHolder".into(),
            json!({"reference": holder.reference()}),
        );
        more.push(holder);
    }
    // the insured (IN1-16): the patient itself (IN1-17 SEL), else a RelatedPerson by name
    match in1.get(17, 1).trim() {
        "SEL" => {
            c.insert(
                "subscriber".into(),
                json!({"reference": patient.reference()}),
            );
        }
        _ => {
            if let Some(insured) = insured(cx, in1, patient) {
                c.insert(
                    "subscriber".into(),
                    json!({"reference": insured.reference()}),
                );
                more.push(insured);
            }
        }
    }
    if let Some(rel) = relationship(in1.get(17, 1)) {
        c.insert(
            "relationship".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": rel}]}),
        );
    }
    let mut period = Map::new();
    if let Some(d) = cx.date(in1.value(12), "IN1-12") {
        period.insert("start".into(), json!(d));
    }
    if let Some(d) = cx.date(in1.value(13), "IN1-13") {
        period.insert("end".into(), json!(d));
    }
    put(&mut c, "period", Value::Object(period));
    c.insert("payor".into(), json!([{"reference": payor.reference()}]));
    let mut classes = Vec::new();
    for (code, value, name) in [
        ("plan", in1.get(2, 1), in1.get(2, 2)),
        ("group", in1.value(8), in1.value(9)),
    ] {
        if value.trim().is_empty() {
            continue;
        }
        let mut class = Map::new();
        class.insert(
            "type".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": code}]}),
        );
        class.insert("value".into(), json!(value.trim()));
        put(&mut class, "name", json!(name.trim()));
        classes.push(Value::Object(class));
    }
    put(&mut c, "class", Value::Array(classes));
    if let Ok(order) = in1.value(1).trim().parse::<u32>()
        && order > 0
    {
        c.insert("order".into(), json!(order));
    }
    more.insert(0, payor);
    more.push(Resource {
        rtype: "Coverage",
        id,
        body: Value::Object(c),
    });
    more
}

/// IN1-11 (the insured's group employer, XON) with IN1-10 (its id, CX) -> an Organization.
fn employer(cx: &Context, in1: &Segment) -> Option<Resource> {
    let facility = &cx.header.sending_facility;
    let own_id = identifier(in1.field(10).first(), cx.systems, facility, cx.zone);
    if let Some(mut org) = super::observation::organization(cx, in1.field(11).first(), None) {
        super::super::datatypes::append(
            org.body.as_object_mut().expect("an object"),
            "identifier",
            own_id,
        );
        return Some(org);
    }
    let own_id = own_id?;
    let id = cx.stable_id(
        "Organization",
        &[
            own_id["system"].as_str().unwrap_or_default(),
            own_id["value"].as_str().unwrap_or_default(),
        ],
    );
    Some(Resource {
        rtype: "Organization",
        id: id.clone(),
        body: json!({"resourceType": "Organization", "id": id, "identifier": [own_id]}),
    })
}

/// The insured when not the patient (IN1-16 name, IN1-17 relationship, IN1-18 birth date,
/// IN1-19 address) -> a RelatedPerson of the patient; `None` without a name.
fn insured(cx: &Context, in1: &Segment, patient: &Resource) -> Option<Resource> {
    let names = each(in1.field(16), |r| name(r, cx.zone));
    let first = names.as_array()?.first()?.clone();
    let id = cx.stable_id(
        "RelatedPerson",
        &[&patient.id, "insured", &first.to_string()],
    );
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("RelatedPerson"));
    p.insert("id".into(), json!(id));
    p.insert("patient".into(), json!({"reference": patient.reference()}));
    let rel = in1.field(17).first();
    if let Some(code) = super::super::datatypes::said(rel.get(1)) {
        p.insert(
            "relationship".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0063", "code": code}]}]),
        );
    }
    p.insert("name".into(), names);
    if let Some(d) = cx.date(in1.value(18), "IN1-18") {
        p.insert("birthDate".into(), json!(d));
    }
    put(&mut p, "address", each(in1.field(19), address));
    Some(Resource {
        rtype: "RelatedPerson",
        id,
        body: Value::Object(p),
    })
}

/// IN1-3 (company id) and IN1-4 (company name) -> the insurer's Organization.
fn insurer(cx: &Context, in1: &Segment) -> Option<Resource> {
    let ids: Vec<Value> = in1
        .field(3)
        .repetitions()
        .filter_map(|r| identifier(r, cx.systems, &cx.header.sending_facility, cx.zone))
        .collect();
    let name = in1.get(4, 1).trim();
    let id = match ids.first() {
        Some(i) => cx.stable_id(
            "Organization",
            &[
                i["system"].as_str().unwrap_or_default(),
                i["value"].as_str().unwrap_or_default(),
            ],
        ),
        None if !name.is_empty() => cx.stable_id("Organization", &["name", name]),
        None => return None,
    };
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Organization"));
    o.insert("id".into(), json!(id));
    put(&mut o, "identifier", Value::Array(ids));
    o.insert("active".into(), json!(true));
    o.insert(
        "type".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "ins", "display": "Insurance Company"}]}]),
    );
    put(&mut o, "name", json!(name));
    put(
        &mut o,
        "telecom",
        Value::Array(
            in1.field(7)
                .repetitions()
                .filter_map(|t| telecom(t, "work"))
                .collect(),
        ),
    );
    put(&mut o, "address", each(in1.field(5), address));
    Some(Resource {
        rtype: "Organization",
        id,
        body: Value::Object(o),
    })
}

/// IN1-17 (insured's relationship to the patient, HL7 table 0063) -> subscriber-relationship.
fn relationship(code: &str) -> Option<&'static str> {
    match code.trim() {
        "SEL" => Some("self"),
        "SPO" | "DOM" => Some("spouse"),
        "CHD" | "FCH" | "SCH" | "ADP" => Some("child"),
        "PAR" | "MTH" | "FTH" => Some("parent"),
        "" => None,
        _ => Some("other"),
    }
}
