//! PID -> Patient, shared by every message that names a patient (ADT, ORU, ...): the IG's
//! PID map, under a stable id from the first medical record number (else the first identifier).

use super::super::codes;
use super::super::datatypes::{address, codeable, each, identifier, name, put, said, telecom};
use super::super::message::Segment;
use super::{Context, Resource, Unmapped, failed};
use serde_json::{Map, Value, json};

/// The PID fields whose `""` deletes a Patient element.
const CLEARABLE: &[(usize, &str)] = &[
    (5, "name"),
    (7, "birthDate"),
    (8, "gender"),
    (11, "address"),
    (13, "telecom"),
    (14, "telecom"),
    (16, "maritalStatus"),
    (29, "deceased"),
    (15, "communication"),
    (24, "multipleBirth"),
];

/// PID -> Patient, under the id of its first medical record number (or first identifier).
pub fn patient(cx: &Context, pid: &Segment) -> Result<Resource, Unmapped> {
    // PID-3, then the older external (PID-2) and alternate (PID-4) ids some senders still fill
    let ids = identifiers(cx, pid, &[3, 2, 4]);
    let id = patient_id(cx, &ids).ok_or_else(|| {
        failed(
            "PID-3",
            "101",
            "PID-3 (patient identifier list) has no identifier, nor PID-2 or PID-4: the patient cannot be identified",
        )
    })?;
    // `""` deletes what the field maps to (an empty field says nothing: see `nulls`)
    for (field, element) in CLEARABLE {
        if pid.value(*field).trim() == "\"\"" {
            cx.clear("Patient", &id, element);
        }
    }
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    p.insert("id".into(), json!(id));
    put(&mut p, "identifier", Value::Array(ids));
    // the names (PID-5), then the aliases (PID-9)
    let names: Vec<Value> = [5, 9]
        .into_iter()
        .flat_map(|f| pid.field(f).repetitions())
        .filter_map(|r| name(r, cx.zone))
        .collect();
    put(&mut p, "name", Value::Array(names));
    let mut telecoms: Vec<Value> = pid
        .field(13)
        .repetitions()
        .filter_map(|r| telecom(r, "home"))
        .collect();
    telecoms.extend(
        pid.field(14)
            .repetitions()
            .filter_map(|r| telecom(r, "work")),
    );
    // v2.7's telecommunication information (PID-40), with its own use
    telecoms.extend(pid.field(40).repetitions().filter_map(|r| telecom(r, "")));
    put(&mut p, "telecom", Value::Array(telecoms));
    let gender = codes::code("AdministrativeSex", pid.get(8, 1)).unwrap_or_default();
    put(&mut p, "gender", json!(gender));
    if let Some(d) = cx.date(pid.value(7), "PID-7") {
        p.insert("birthDate".into(), json!(d));
    }
    match (cx.date_time(pid.value(29), "PID-29"), pid.value(30)) {
        (Some(at), _) => {
            p.insert("deceasedDateTime".into(), json!(at));
        }
        (None, "Y") => {
            p.insert("deceasedBoolean".into(), json!(true));
        }
        _ => {}
    }
    put(&mut p, "address", each(pid.field(11), address));
    county(pid, &mut p);
    // the IG's standard coding (v3 MaritalStatus, or the null flavour for U), the sender's too
    if let Some(marital) = codeable(pid.field(16).first()) {
        p.insert(
            "maritalStatus".into(),
            codes::standardise("MaritalStatus", marital),
        );
    }
    super::patient_more::more(cx, pid, &mut p);
    Ok(Resource {
        rtype: "Patient",
        id,
        body: Value::Object(p),
    })
}

/// The identifiers (CX) of a segment's `fields`, in order.
pub fn identifiers(cx: &Context, seg: &Segment, fields: &[usize]) -> Vec<Value> {
    let facility = &cx.header.sending_facility;
    fields
        .iter()
        .flat_map(|&f| seg.field(f).repetitions())
        .filter_map(|r| identifier(r, cx.systems, facility, cx.zone))
        .collect()
}

/// The Patient id these identifiers give: that of the first medical record number (MR), else
/// of the first identifier.
pub fn patient_id(cx: &Context, ids: &[Value]) -> Option<String> {
    let key = ids
        .iter()
        .find(|i| i["type"]["coding"][0]["code"] == "MR")
        .or(ids.first())?;
    Some(cx.stable_id(
        "Patient",
        &[
            key["system"].as_str().unwrap_or_default(),
            key["value"].as_str().unwrap_or_default(),
        ],
    ))
}

/// The patient of a message that must name one (PID), the allergies (AL1) and insurance (IN1)
/// it states: the Patient, and the list of resources to write that begins with it.
pub fn with_allergies(cx: &Context) -> Result<(Resource, Vec<Resource>), Unmapped> {
    let pid = cx.msg.first("PID").ok_or_else(|| {
        failed(
            "PID",
            "100",
            format!(
                "a {}^{} needs a PID segment (the patient)",
                cx.header.message_type, cx.header.trigger
            ),
        )
    })?;
    let patient = patient(cx, pid)?;
    let mut out = vec![patient.clone()];
    out.extend(
        cx.msg
            .all("AL1")
            .filter_map(|s| super::clinical::allergy(cx, s, &patient.id)),
    );
    super::coverage::all(cx, &patient, &mut out);
    Ok((patient, out))
}

/// The county (PID-12), as the IG places it: the district of the one address that names none;
/// else an address of its own (no address sent, several, or one naming another district).
fn county(pid: &Segment, p: &mut Map<String, Value>) {
    let Some(county) = said(pid.value(12)).map(str::trim) else {
        return;
    };
    let addresses = p.entry("address").or_insert_with(|| json!([]));
    let Some(addresses) = addresses.as_array_mut() else {
        return;
    };
    match addresses.as_mut_slice() {
        [one] if one.get("district").is_none() => one["district"] = json!(county),
        all if all.iter().any(|a| a["district"] == county) => {}
        _ => addresses.push(json!({"district": county})),
    }
}
