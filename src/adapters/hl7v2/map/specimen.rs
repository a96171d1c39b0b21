//! SPM -> Specimen (IG SPM[Specimen]): the specimen a report's results were measured on,
//! referenced from the DiagnosticReport and its Observations.
//!
//! Identity: the report's key and the specimen's own id (SPM-2, filler's else placer's), else
//! its set id (SPM-1): a corrected result restates the same Specimen.

use super::super::datatypes::{codeable, cq_quantity, identifier, period, put, said};
use super::super::message::{Rep, Segment};
use super::{Context, Resource};
use serde_json::{Map, Value, json};

pub fn specimen(cx: &Context, report: &[&str], spm: &Segment, subject: &Value) -> Option<Resource> {
    let ids = spm.field(2).first();
    // EIP: the placer's id (SPM-2.1) and the filler's (SPM-2.2), each an EI in subcomponents
    let placer = ids.sub(1, 1).trim();
    let filler = ids.sub(2, 1).trim();
    let own = [filler, placer, spm.value(1).trim()]
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or("1");
    let mut key = report.to_vec();
    key.push(own);
    let id = cx.stable_id("Specimen", &key);
    let mut s = Map::new();
    s.insert("resourceType".into(), json!("Specimen"));
    s.insert("id".into(), json!(id));
    let mut identifiers: Vec<Value> = [(placer, ids, 1, "PLAC"), (filler, ids, 2, "FILL")]
        .into_iter()
        .filter(|(v, ..)| !v.is_empty())
        .map(|(v, ei, c, code)| {
            json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]},
                   "system": cx.systems.for_authority(ei.sub(c, 2), ei.sub(c, 3), ei.sub(c, 4), &cx.header.sending_facility),
                   "value": v})
        })
        .collect();
    let facility = &cx.header.sending_facility;
    identifiers.extend(
        spm.field(31)
            .repetitions()
            .filter_map(|r| identifier(r, cx.systems, facility, cx.zone)),
    );
    // the shipment it travelled in (SPM-32): an identifier under the shipper's authority
    identifiers.extend(spm.field(32).repetitions().filter_map(|ei| {
        let value = said(ei.get(1))?;
        Some(
            json!({"system": cx.systems.for_authority(ei.get(2), ei.get(3), ei.get(4), facility),
                    "value": value}),
        )
    }));
    put(&mut s, "identifier", Value::Array(identifiers));
    // the specimens this one was taken from (SPM-3: placer's^filler's), by identifier
    let parents: Vec<Value> = spm
        .field(3)
        .repetitions()
        .filter_map(|eip| {
            [(2, "FILL"), (1, "PLAC")]
                .into_iter()
                .find_map(|(c, code)| super::order::eip_reference(cx, eip, c, code, "Specimen"))
        })
        .collect();
    put(&mut s, "parent", Value::Array(parents));
    if let Some(accession) = identifier(spm.field(30).first(), cx.systems, facility, cx.zone) {
        s.insert("accessionIdentifier".into(), accession);
    }
    match spm.value(20) {
        "Y" => {
            s.insert("status".into(), json!("available"));
        }
        "N" => {
            s.insert("status".into(), json!("unavailable"));
        }
        _ => {}
    }
    if let Some(t) = codeable(spm.field(4).first()) {
        s.insert("type".into(), t);
    }
    s.insert("subject".into(), subject.clone());
    if let Some(at) = cx.date_time(spm.value(18), "SPM-18") {
        s.insert("receivedTime".into(), json!(at));
    }
    put(&mut s, "collection", collection(cx, spm));
    let conditions: Vec<Value> = spm.field(24).repetitions().filter_map(codeable).collect();
    put(&mut s, "condition", Value::Array(conditions));
    let mut container = Map::new();
    if let Some(t) = codeable(spm.field(27).first()) {
        container.insert("type".into(), t);
    }
    if let Some(a) = codeable(spm.field(6).first()) {
        container.insert("additiveCodeableConcept".into(), a);
    }
    if !container.is_empty() {
        s.insert("container".into(), json!([container]));
    }
    let notes: Vec<Value> = spm
        .field(14)
        .repetitions()
        .map(|r| r.get(1).trim())
        .filter(|t| !t.is_empty())
        .map(|t| json!({"text": t}))
        .collect();
    put(&mut s, "note", Value::Array(notes));
    Some(Resource {
        rtype: "Specimen",
        id,
        body: Value::Object(s),
    })
}

/// How the specimen was collected: when (SPM-17, a time or a range), how (SPM-7), where on
/// the body (SPM-8), how much (SPM-12).
fn collection(cx: &Context, spm: &Segment) -> Value {
    let mut c = Map::new();
    let range: Rep = spm.field(17).first();
    if range.get(2).trim().is_empty() {
        if let Some(at) = cx.date_time(range.get(1), "SPM-17") {
            c.insert("collectedDateTime".into(), json!(at));
        }
    } else {
        put(
            &mut c,
            "collectedPeriod",
            period(range.get(1), range.get(2), cx.zone),
        );
    }
    if let Some(m) = codeable(spm.field(7).first()) {
        c.insert("method".into(), m);
    }
    if let Some(b) = codeable(spm.field(8).first()) {
        c.insert("bodySite".into(), b);
    }
    if let Some(q) = cq_quantity(spm.field(12).first()) {
        c.insert("quantity".into(), q);
    }
    Value::Object(c)
}
