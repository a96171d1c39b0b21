//! ADT: PID -> Patient, PV1 -> Encounter (with its Location and Practitioners), AL1, DG1 and
//! NK1 (see `clinical`), PR1 (`procedure`), OBX (the patient's, as ORU's); the trigger event sets the Encounter's status (admit, transfer,
//! discharge, pre-admit, cancels).
//! IG: ADT_A01 and the PID, PV1, XCN and PL maps of the v2-to-FHIR IG.

use super::super::codes;
use super::super::datatypes::{append, codeable, identifier, location_name, put, said};
use super::super::message::{Rep, Segment};
use super::{Context, Resource, Unmapped, clinical, failed, unsupported};
use serde_json::{Map, Value, json};

const TRIGGERS: [&str; 13] = [
    "A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28", "A31",
];

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    if !TRIGGERS.contains(&trigger) {
        return Err(unsupported(
            "201",
            format!(
                "ADT trigger event '{trigger}' is not one this server takes ({}, A40)",
                TRIGGERS.join(", ")
            ),
        ));
    }
    let pid = cx
        .msg
        .first("PID")
        .ok_or_else(|| failed("PID", "100", "an ADT message needs a PID segment"))?;
    let mut patient = super::patient::patient(cx, pid)?;
    let patient_id = patient.id.clone();
    let carers = primary_care(cx, &mut patient);
    let mut out = vec![patient];
    out.extend(carers);
    out.extend(
        cx.msg
            .all("AL1")
            .filter_map(|s| clinical::allergy(cx, s, &patient_id)),
    );
    out.extend(
        cx.msg
            .all("NK1")
            .filter_map(|s| clinical::next_of_kin(cx, s, &patient_id)),
    );
    let patient = out[0].clone();
    super::coverage::all(cx, &patient, &mut out);
    // what the ADT system observed of the patient (height, weight)
    let observed: Vec<&Segment> = cx.msg.all("OBX").collect();
    let subject = json!({"reference": patient.reference()});
    out.extend(super::observation::of_the_patient(
        cx,
        &observed,
        &patient_id,
        &subject,
        false,
    )?);
    // A28 and A31 are about the person, not a visit
    if matches!(trigger, "A28" | "A31") {
        return Ok(out);
    }
    let Some(pv1) = cx.msg.first("PV1") else {
        return Err(failed(
            "PV1",
            "100",
            format!("ADT^{trigger} needs a PV1 segment (the visit)"),
        ));
    };
    let patient_ref = out[0].reference();
    out.extend(encounter(cx, trigger, pv1, &patient_ref));
    let encounter_id = out
        .iter()
        .find(|r| r.rtype == "Encounter")
        .map(|r| r.id.clone());
    for dg1 in cx.msg.all("DG1") {
        clinical::diagnosis(cx, dg1, &patient_id, encounter_id.as_deref(), &mut out);
    }
    for pr1 in cx.msg.all("PR1") {
        super::procedure::procedure(cx, pr1, &patient_id, encounter_id.as_deref(), &mut out);
    }
    Ok(out)
}

/// PV1 fields whose `""` deletes the Encounter element they feed (v2 null semantics, see
/// `nulls`): an element fed by several fields (the participants) goes as a whole.
const CLEARABLE: &[(usize, &str)] = &[
    (3, "location"),
    (4, "type"),
    (7, "participant"),
    (8, "participant"),
    (9, "participant"),
    (17, "participant"),
    (10, "serviceType"),
    (14, "hospitalization"),
    (36, "hospitalization"),
    (44, "period"),
    (45, "period"),
];

/// The Encounter's status after this trigger event.
fn status(trigger: &str, pv1: &Segment) -> &'static str {
    match trigger {
        "A03" => "finished",
        "A05" => "planned",
        "A11" => "cancelled",
        // an update says where the visit stands: discharged once PV1-45 is set
        "A08" if !pv1.value(45).is_empty() => "finished",
        _ => "in-progress",
    }
}

/// PV1-2 patient class -> Encounter.class: the IG's map (v3 ActCode, or table 0004's own
/// code where ActCode has none), else unknown.
fn class(pv1: &Segment) -> Value {
    match codes::target("PatientClass[EncounterClass]", pv1.get(2, 1)) {
        Some(t) => t.coding(),
        None => json!({"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                       "code": "UNK", "display": "unknown"}),
    }
}

/// PV1 -> Encounter, and the Location and Practitioners it points at.
fn encounter(cx: &Context, trigger: &str, pv1: &Segment, patient_ref: &str) -> Vec<Resource> {
    let facility = &cx.header.sending_facility;
    let visit = identifier(pv1.field(19).first(), cx.systems, facility, cx.zone);
    // without a visit number, the admission time names the visit; failing that, the message
    let id = match &visit {
        Some(v) => cx.stable_id(
            "Encounter",
            &[
                v["system"].as_str().unwrap_or_default(),
                v["value"].as_str().unwrap_or_default(),
            ],
        ),
        None if !pv1.value(44).is_empty() => {
            cx.stable_id("Encounter", &[patient_ref, pv1.value(44)])
        }
        // a new admission or registration is a new visit; any other event is about the
        // patient's open one
        None if !matches!(trigger, "A01" | "A04" | "A05") && cx.in_visit.is_some() => {
            cx.in_visit.clone().unwrap_or_default()
        }
        None => {
            let id = cx.stable_id(
                "Encounter",
                &[
                    facility,
                    &cx.header.sending_application,
                    &cx.header.control_id,
                ],
            );
            if !matches!(trigger, "A01" | "A04" | "A05") {
                let patient = patient_ref.trim_start_matches("Patient/").to_string();
                *cx.open_visit.borrow_mut() = Some(super::OpenVisit {
                    provisional: id.clone(),
                    patient,
                });
            }
            id
        }
    };
    for (field, element) in CLEARABLE {
        if pv1.value(*field).trim() == "\"\"" {
            cx.clear("Encounter", &id, element);
        }
    }
    let mut out = Vec::new();
    let mut e = Map::new();
    e.insert("resourceType".into(), json!("Encounter"));
    e.insert("id".into(), json!(id));
    if let Some(v) = visit {
        e.insert("identifier".into(), json!([v]));
    }
    e.insert("status".into(), json!(status(trigger, pv1)));
    e.insert("class".into(), class(pv1));
    e.insert("subject".into(), json!({"reference": patient_ref}));
    let mut period = Map::new();
    if let Some(start) = cx.date_time(pv1.value(44), "PV1-44") {
        period.insert("start".into(), json!(start));
    }
    if let Some(end) = cx.date_time(pv1.value(45), "PV1-45") {
        period.insert("end".into(), json!(end));
    }
    put(&mut e, "period", Value::Object(period));
    super::visit::details(cx, pv1, &mut e);
    // attending, referring, consulting, admitting
    let mut participants = Vec::new();
    for (field, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
        (52, "PART", "Participation"),
    ] {
        for xcn in pv1.field(field).repetitions() {
            if let Some(pr) = practitioner(cx, xcn) {
                participants.push(json!({
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                          "code": code, "display": display}]}],
                    "individual": {"reference": pr.reference()}
                }));
                if !out.iter().any(|r: &Resource| r.id == pr.id) {
                    out.push(pr);
                }
            }
        }
    }
    // the referral source (PV2-13) is a referrer too
    let referral = cx.msg.first("PV2").map(|pv2| pv2.field(13));
    for xcn in referral.into_iter().flat_map(|f| f.repetitions()) {
        if let Some(pr) = practitioner(cx, xcn) {
            participants.push(json!({
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                      "code": "REF", "display": "referrer"}]}],
                "individual": {"reference": pr.reference()}
            }));
            if !out.iter().any(|r: &Resource| r.id == pr.id) {
                out.push(pr);
            }
        }
    }
    put(&mut e, "participant", Value::Array(participants));
    let places = super::visit::locations(cx, pv1, &mut out);
    if let Some(to) = super::visit::destination(cx, pv1, &mut out) {
        let stay = e.entry("hospitalization").or_insert_with(|| json!({}));
        stay["destination"] = to;
    }
    put(&mut e, "location", Value::Array(places));
    out.push(Resource {
        rtype: "Encounter",
        id,
        body: Value::Object(e),
    });
    out
}

/// PD1-4, the patient's primary care providers (IG PD1[Patient]): each a Practitioner, named
/// as the Patient's `generalPractitioner`.
fn primary_care(cx: &Context, patient: &mut Resource) -> Vec<Resource> {
    let Some(pd1) = cx.msg.first("PD1") else {
        return Vec::new();
    };
    let mut carers: Vec<Resource> = pd1
        .field(4)
        .repetitions()
        .filter_map(|xcn| practitioner(cx, xcn))
        .collect();
    // the patient's primary facility (PD1-3) is a general practitioner too, as the IG has it
    carers.extend(
        pd1.field(3)
            .repetitions()
            .filter_map(|xon| super::observation::organization(cx, xon, None)),
    );
    let body = patient
        .body
        .as_object_mut()
        .expect("a Patient is an object");
    // handicap (PD1-6) and place of worship (PD1-14), as the core extensions
    let mut more = Vec::new();
    if let Some(d) = codeable(pd1.field(6).first()) {
        more.push(
            json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-disability",
                         "valueCodeableConcept": d}),
        );
    }
    if let Some(worship) = said(pd1.get(14, 1)) {
        more.push(
            json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-congregation",
                         "valueString": worship}),
        );
    }
    append(body, "extension", more);
    let refs: Vec<Value> = carers
        .iter()
        .map(|p| json!({"reference": p.reference()}))
        .collect();
    put(
        patient
            .body
            .as_object_mut()
            .expect("a Patient is an object"),
        "generalPractitioner",
        Value::Array(refs),
    );
    carers
}

/// XCN -> Practitioner, under the id of its identifier (or of its name, without one): the
/// identifier with its type (XCN-13); the name with middle names (XCN-4), suffix (XCN-5),
/// prefix (XCN-6), degree (XCN-7) and professional suffix (XCN-21).
pub(super) fn practitioner(cx: &Context, xcn: Rep) -> Option<Resource> {
    // `""` (delete) names no one
    let value = said(xcn.get(1)).unwrap_or_default();
    let family = said(xcn.sub(2, 1)).unwrap_or_default();
    if value.is_empty() && family.is_empty() {
        return None;
    }
    let system = cx.systems.for_authority(
        xcn.sub(9, 1),
        xcn.sub(9, 2),
        xcn.sub(9, 3),
        &cx.header.sending_facility,
    );
    let id = match value {
        "" => cx.stable_id("Practitioner", &["name", family, xcn.get(3)]),
        v => cx.stable_id("Practitioner", &[&system, v]),
    };
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Practitioner"));
    p.insert("id".into(), json!(id));
    if !value.is_empty() {
        let mut id = json!({"system": system, "value": value});
        let ty = xcn.get(13).trim();
        if !ty.is_empty() {
            id["type"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                            "code": ty}]});
        }
        p.insert("identifier".into(), json!([id]));
    }
    let texts = |parts: &[usize]| -> Value {
        parts
            .iter()
            .map(|&c| xcn.get(c).trim())
            .filter(|t| !t.is_empty() && *t != "\"\"")
            .map(|t| json!(t))
            .collect()
    };
    let mut n = Map::new();
    put(&mut n, "family", json!(family));
    put(&mut n, "given", texts(&[3, 4]));
    put(&mut n, "prefix", texts(&[6]));
    put(&mut n, "suffix", texts(&[5, 7, 21]));
    if !n.is_empty() {
        p.insert("name".into(), json!([n]));
    }
    Some(Resource {
        rtype: "Practitioner",
        id,
        body: Value::Object(p),
    })
}

/// PL -> Location (the bed, room or point of care the patient is in).
pub(super) fn location(cx: &Context, pl: Rep) -> Option<Resource> {
    let name = location_name(pl)?;
    let id = cx.stable_id("Location", &[&cx.header.sending_facility, &name]);
    let body = json!({
        "resourceType": "Location",
        "id": id,
        "status": "active",
        "name": name,
        "mode": "instance",
    });
    Some(Resource {
        rtype: "Location",
        id,
        body,
    })
}
