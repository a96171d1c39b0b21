//! PR1 -> Procedure (IG PR1[Procedure]): the procedures an ADT message reports for the visit,
//! with the Practitioners who did them.
//!
//! Identity: the procedure's own id (PR1-19) when the sender gives one, else the patient, the
//! code and the time: an update restates the same Procedure.

use super::super::datatypes::{codeable, put};
use super::super::message::Segment;
use super::adt::{location, practitioner};
use super::order::add_once;
use super::{Context, Resource};
use serde_json::{Map, Value, json};

/// The Procedure of `pr1`, and the Practitioners and Location it names; nothing (with a
/// warning) when it says no procedure.
pub fn procedure(
    cx: &Context,
    pr1: &Segment,
    patient_id: &str,
    encounter_id: Option<&str>,
    out: &mut Vec<Resource>,
) {
    // the description (PR1-4) is the code's text when the code carries none
    let description = pr1.value(4).trim();
    let code = match codeable(pr1.field(3).first()) {
        Some(mut c) if c.get("text").is_none() && !description.is_empty() => {
            c["text"] = json!(description);
            Some(c)
        }
        Some(c) => Some(c),
        None => (!description.is_empty()).then(|| json!({"text": description})),
    };
    let Some(mut code) = code else {
        cx.not_carried(
            "PR1-3",
            "a PR1 without a procedure code (PR1-3) or description (PR1-4); left out".into(),
        );
        return;
    };
    let own = pr1.field(19).first();
    let id = match own.get(1).trim() {
        "" => cx.stable_id(
            "Procedure",
            &[patient_id, pr1.get(3, 1), pr1.get(3, 3), pr1.value(5)],
        ),
        v => cx.stable_id("Procedure", &["id", &super::order::system(cx, own), v]),
    };
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Procedure"));
    p.insert("id".into(), json!(id));
    if !own.get(1).trim().is_empty() {
        p.insert(
            "identifier".into(),
            json!([{"system": super::order::system(cx, own), "value": own.get(1).trim()}]),
        );
    }
    p.insert("status".into(), json!("completed"));
    if let Some(c) = codeable(pr1.field(6).first()) {
        p.insert("category".into(), c);
    }
    modified(&mut code, pr1);
    p.insert("code".into(), code);
    p.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{patient_id}")}),
    );
    if let Some(e) = encounter_id {
        p.insert(
            "encounter".into(),
            json!({"reference": format!("Encounter/{e}")}),
        );
    }
    performed(cx, pr1, &mut p);
    // anesthesiologist (PR1-8), surgeon (PR1-11), other practitioners (PR1-12), with the
    // IG's SNOMED CT functions
    let mut performers = Vec::new();
    for (field, function) in [
        (8, Some(("88189002", "Anesthesiologist"))),
        (11, Some(("304292004", "Surgeon"))),
        (12, None),
    ] {
        for xcn in pr1.field(field).repetitions() {
            let Some(pr) = practitioner(cx, xcn) else {
                continue;
            };
            let mut performer = json!({"actor": {"reference": pr.reference()}});
            if let Some((code, display)) = function {
                performer["function"] = json!({"coding": [{"system": "http://snomed.info/sct",
                                                           "code": code, "display": display}]});
            }
            performers.push(performer);
            add_once(out, pr);
        }
    }
    put(&mut p, "performer", Value::Array(performers));
    let reasons: Vec<Value> = pr1.field(15).repetitions().filter_map(codeable).collect();
    put(&mut p, "reasonCode", Value::Array(reasons));
    // the procedure this one is part of (PR1-25), by the id its own PR1-19 gave it
    let parent = pr1.field(25).first();
    if let Some(v) = super::super::datatypes::said(parent.get(1)) {
        let system = super::order::system(cx, parent);
        let target = cx.stable_id("Procedure", &["id", &system, v]);
        p.insert(
            "partOf".into(),
            json!([{"reference": format!("Procedure/{target}"), "type": "Procedure",
                    "identifier": {"system": system, "value": v}}]),
        );
    }
    if let Some(loc) = location(cx, pr1.field(23).first()) {
        p.insert("location".into(), json!({"reference": loc.reference()}));
        add_once(out, loc);
    }
    out.push(Resource {
        rtype: "Procedure",
        id,
        body: Value::Object(p),
    });
}

/// The procedure code modifiers (PR1-16) joined to the code with `:`, as the IG and CPT's
/// guidance write a modified code (`27447:50`).
fn modified(code: &mut Value, pr1: &Segment) {
    let modifiers: Vec<&str> = pr1
        .field(16)
        .repetitions()
        .filter_map(|m| super::super::datatypes::said(m.get(1)))
        .collect();
    if modifiers.is_empty() {
        return;
    }
    if let Some(coding) = code
        .get_mut("coding")
        .and_then(|c| c.get_mut(0))
        .filter(|c| c.get("code").is_some())
    {
        let joined = format!(
            "{}:{}",
            coding["code"].as_str().unwrap_or_default(),
            modifiers.join(":")
        );
        coding["code"] = json!(joined);
    }
}

/// The longest procedure length (PR1-7) taken as one: a year, in minutes.
const MAX_MINUTES: i64 = 366 * 24 * 60;

/// When: PR1-5, as a period ending PR1-7 minutes later when the sender gives the minutes.
fn performed(cx: &Context, pr1: &Segment, p: &mut Map<String, Value>) {
    let Some(at) = cx.date_time(pr1.value(5), "PR1-5") else {
        return;
    };
    // a procedure of more than a year is no procedure's length: said, and left out
    let minutes = pr1.value(7).trim().parse::<i64>().ok().filter(|m| *m > 0);
    if let Some(m) = minutes.filter(|m| *m > MAX_MINUTES) {
        cx.not_carried(
            "PR1-7",
            format!("PR1-7 '{m}' minutes is longer than a year; the end left out"),
        );
    }
    let end = minutes
        .filter(|m| *m <= MAX_MINUTES)
        .and_then(|m| super::super::datatypes::shifted(&at, m));
    match end {
        Some(end) => {
            p.insert("performedPeriod".into(), json!({"start": at, "end": end}));
        }
        None => {
            p.insert("performedDateTime".into(), json!(at));
        }
    }
}
