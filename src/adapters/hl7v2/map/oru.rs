//! ORU^R01 (results): each OBR -> a DiagnosticReport, each of its OBX -> an Observation
//! (category laboratory), for the patient of PID. IG: ORU_R01, OBR[DiagnosticReport],
//! OBX[Observation] and the value-type maps.
//!
//! Identity: a report is its order's filler number (OBR-3; the placer number OBR-2 without
//! one), an observation is its report plus OBX-3 and OBX-4 (the test and sub-id), so that a
//! corrected result (OBX-11 `C`) updates the Observation it corrects.

use super::super::codes;
use super::super::datatypes::{codeable, instant, put};
use super::super::message::Segment;
use super::observation::{lines, observation, of_the_patient};
use super::{Context, Resource, Unmapped, failed, roles, unsupported};
use serde_json::{Map, Value, json};
pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    if trigger != "R01" {
        return Err(unsupported(
            "201",
            format!("ORU trigger event '{trigger}' is not one this server takes (R01)"),
        ));
    }
    let pid = cx
        .msg
        .first("PID")
        .ok_or_else(|| failed("PID", "100", "an ORU^R01 needs a PID segment"))?;
    let patient = super::patient::patient(cx, pid)?;
    let subject = json!({"reference": patient.reference()});
    let mut out = vec![patient];
    // each OBR with the OBX segments that follow it (until the next OBR); OBX before any OBR
    // are observations of the patient (v2.8's PATIENT_OBSERVATION group), in no report
    // (and the SPM segments after an OBR's results are its specimens)
    let mut about_patient: Vec<&Segment> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut orc: Option<&Segment> = None;
    for seg in &cx.msg.segments {
        match (seg.id.as_str(), groups.last_mut()) {
            ("ORC", _) => orc = Some(seg),
            ("OBR", _) => groups.push(Group {
                obr: seg,
                orc: orc.take(),
                obx: Vec::new(),
                spm: Vec::new(),
            }),
            ("OBX", Some(g)) if g.spm.is_empty() => g.obx.push(seg),
            ("OBX", None) => about_patient.push(seg),
            ("SPM", Some(g)) => g.spm.push(seg),
            _ => {}
        }
    }
    if groups.is_empty() {
        return Err(failed("OBR", "100", "an ORU^R01 needs an OBR segment"));
    }
    let patient_id = out[0].id.clone();
    out.extend(of_the_patient(
        cx,
        &about_patient,
        &patient_id,
        &subject,
        true,
    )?);
    for (n, group) in groups.iter().enumerate() {
        out.extend(report(cx, n + 1, group, &subject)?);
    }
    Ok(out)
}

/// An OBR with the ORC before it, its results and its specimens.
struct Group<'a> {
    obr: &'a Segment,
    orc: Option<&'a Segment>,
    obx: Vec<&'a Segment>,
    spm: Vec<&'a Segment>,
}

/// The order a report belongs to: filler number, else placer number, else this message.
fn order_key(cx: &Context, n: usize, obr: &Segment) -> Vec<String> {
    for field in [3, 2] {
        let ei = obr.field(field).first();
        if !ei.get(1).trim().is_empty() {
            let authority = [ei.get(2), ei.get(3)]
                .into_iter()
                .find(|a| !a.is_empty())
                .unwrap_or(&cx.header.sending_facility);
            return vec![authority.to_string(), ei.get(1).trim().to_string()];
        }
    }
    vec![
        cx.header.sending_facility.clone(),
        cx.header.control_id.clone(),
        n.to_string(),
    ]
}

fn report(
    cx: &Context,
    n: usize,
    group: &Group,
    subject: &Value,
) -> Result<Vec<Resource>, Unmapped> {
    let (obr, obx) = (group.obr, &group.obx);
    let key = order_key(cx, n, obr);
    let keys: Vec<&str> = key.iter().map(String::as_str).collect();
    let id = cx.stable_id("DiagnosticReport", &keys);
    let code = codeable(obr.field(4).first()).ok_or_else(|| {
        failed(
            "OBR-4",
            "101",
            "OBR-4 (universal service identifier) is empty",
        )
    })?;
    let effective = cx.date_time(obr.value(7), "OBR-7");
    let mut out: Vec<Resource> = group
        .spm
        .iter()
        .filter_map(|spm| super::specimen::specimen(cx, &keys, spm, subject))
        .collect();
    let specimens: Vec<Value> = out
        .iter()
        .map(|s| json!({"reference": s.reference()}))
        .collect();
    let mut results = Vec::new();
    // an attached report (OBX of type ED) is the report as it was presented, not a result
    let mut presented = Vec::new();
    for ed in obx.iter().filter(|o| o.value(2) == "ED") {
        let mut a = Map::new();
        super::document::encapsulated(&mut a, ed.field(5).first())?;
        if a.contains_key("data") {
            presented.push(Value::Object(a));
        }
    }
    let obx: Vec<&Segment> = obx.iter().copied().filter(|o| o.value(2) != "ED").collect();
    for group in lines(&obx) {
        let (o, performers) = observation(
            cx,
            &keys,
            Some((obr, &code)),
            &group,
            effective.as_deref(),
            subject,
        )?;
        for p in performers {
            super::order::add_once(&mut out, p);
        }
        results.push(json!({"reference": o.reference()}));
        let mut o = o;
        // the report's specimen, unless the OBX names its own (OBX-33)
        if let (Some(body), Some(first)) = (o.body.as_object_mut(), specimens.first()) {
            body.entry("specimen").or_insert_with(|| first.clone());
        }
        out.push(o);
    }
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("DiagnosticReport"));
    r.insert("id".into(), json!(id));
    let filler = obr.field(3).first();
    if !filler.get(1).trim().is_empty() {
        r.insert(
            "identifier".into(),
            json!([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}]},
                    "system": format!("{}order/{}", "http://emrsync.org/hl7v2/", super::super::datatypes::uri_part(&key[0])),
                    "value": filler.get(1).trim()}]),
        );
    }
    placed(cx, group, &mut r);
    r.insert("status".into(), json!(report_status(obr.value(25))));
    // the diagnostic service section (OBR-24), else laboratory
    let section = match obr.get(24, 1).trim() {
        "" => "LAB",
        s => s,
    };
    r.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section}]}]),
    );
    r.insert("code".into(), code);
    r.insert("subject".into(), subject.clone());
    // a period when OBR-8 (end) is there, else the time
    match (effective, cx.date_time(obr.value(8), "OBR-8")) {
        (Some(start), Some(end)) => {
            r.insert(
                "effectivePeriod".into(),
                json!({"start": start, "end": end}),
            );
        }
        (None, Some(end)) => {
            r.insert("effectivePeriod".into(), json!({"end": end}));
        }
        (Some(at), None) => {
            r.insert("effectiveDateTime".into(), json!(at));
        }
        (None, None) => {}
    }
    put(&mut r, "specimen", Value::Array(specimens));
    people(cx, obr, &mut r, &mut out);
    status_reason(group.orc, &mut r);
    if let Some(at) = cx.date_time(obr.value(22), "OBR-22") {
        r.insert("issued".into(), json!(instant(&at)));
    }
    put(&mut r, "result", Value::Array(results));
    put(&mut r, "presentedForm", Value::Array(presented));
    out.push(Resource {
        rtype: "DiagnosticReport",
        id,
        body: Value::Object(r),
    });
    Ok(out)
}

/// The order a report answers: its placer number (OBR-2, else ORC-2) as an identifier, and
/// the ServiceRequest that an ORM/OML with that number makes (under the same stable id) as
/// `basedOn`, named by reference and by identifier.
fn placed(cx: &Context, group: &Group, r: &mut Map<String, Value>) {
    // the placer group number (ORC-4): an identifier of the report too
    if let Some(grp) = group.orc.map(|o| o.field(4).first())
        && !grp.get(1).trim().is_empty()
    {
        super::super::datatypes::append(
            r,
            "identifier",
            [
                json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PGN"}]},
                    "system": super::order::system(cx, grp), "value": grp.get(1).trim()}),
            ],
        );
    }
    let placer = [Some(group.obr), group.orc]
        .into_iter()
        .flatten()
        .map(|s| s.field(2).first())
        .find(|ei| !ei.get(1).trim().is_empty());
    let Some(ei) = placer else {
        return;
    };
    let system = super::order::system(cx, ei);
    let value = ei.get(1).trim();
    let identifier = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "PLAC", "display": "Placer Identifier"}]},
        "system": system, "value": value,
    });
    let order = cx.stable_id("ServiceRequest", &["placer", &system, value]);
    if let Some(Value::Array(ids)) = r.get_mut("identifier") {
        ids.insert(0, identifier.clone());
    } else {
        r.insert("identifier".into(), json!([identifier]));
    }
    r.insert(
        "basedOn".into(),
        json!([{"reference": format!("ServiceRequest/{order}"), "type": "ServiceRequest",
                "identifier": identifier}]),
    );
}

/// Who made the report (IG OBR[DiagnosticReport]): the principal result interpreter (OBR-32)
/// as `resultsInterpreter`, the technician (OBR-34) and the transcriptionist (OBR-35) as
/// performers with their function; each a PractitionerRole written with the report.
fn people(cx: &Context, obr: &Segment, r: &mut Map<String, Value>, out: &mut Vec<Resource>) {
    let interpreters = roles::all_from_ndl(cx, obr.field(32), None, out);
    put(r, "resultsInterpreter", Value::Array(interpreters));
    let mut performers = Vec::new();
    for (field, function) in [(34, "SPRF"), (35, "TRANS")] {
        for mut who in roles::all_from_ndl(cx, obr.field(field), None, out) {
            who["extension"] = json!([{
                "url": "http://hl7.org/fhir/StructureDefinition/event-performerFunction",
                "valueCodeableConcept": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": function}]}}]);
            performers.push(who);
        }
    }
    put(r, "performer", Value::Array(performers));
}

/// ORC-16 (order control code reason) -> the event-statusReason extension.
fn status_reason(orc: Option<&Segment>, r: &mut Map<String, Value>) {
    if let Some(reason) = orc.and_then(|o| codeable(o.field(16).first())) {
        super::super::datatypes::append(
            r,
            "extension",
            [
                json!({"url": "http://hl7.org/fhir/StructureDefinition/event-statusReason",
                    "valueCodeableConcept": reason}),
            ],
        );
    }
}

/// OBR-25 (HL7 table 0123) -> DiagnosticReport.status, by the IG's map; else final.
fn report_status(code: &str) -> &'static str {
    codes::code("ResultStatus[Non-Queries]", code).unwrap_or("final")
}
