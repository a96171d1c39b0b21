//! The patient-level segments an ADT message carries besides PID and PV1: AL1 ->
//! AllergyIntolerance, DG1 -> Condition (an encounter diagnosis), NK1 -> RelatedPerson.
//! IG: the AL1, DG1 and NK1 segment maps. Each is identified by its patient and its code (or
//! name), so a later message restating it updates it.

use super::super::codes;
use super::super::datatypes::{
    address, append, codeable, each, identifier, name, period, put, said, telecom,
};
use super::super::message::Segment;
use super::{Context, Resource};
use serde_json::{Map, Value, json};

/// AL1 -> AllergyIntolerance; `None` without an allergen.
pub fn allergy(cx: &Context, al1: &Segment, patient_id: &str) -> Option<Resource> {
    let code = codeable(al1.field(3).first())?;
    let key = al1.get(3, 1).trim();
    let key = if key.is_empty() { al1.get(3, 2) } else { key };
    let id = cx.stable_id("AllergyIntolerance", &[patient_id, key]);
    let mut a = Map::new();
    a.insert("resourceType".into(), json!("AllergyIntolerance"));
    a.insert("id".into(), json!(id));
    a.insert(
        "clinicalStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                           "code": "active"}]}),
    );
    if let Some(category) = codes::code("AllergenType[AllergyIntoleranceCategory]", al1.get(2, 1)) {
        a.insert("category".into(), json!([category]));
    }
    let severity = al1.get(4, 1);
    if let Some(c) = codes::code("AllergySeverity[AllergyIntolerance.criticality]", severity) {
        a.insert("criticality".into(), json!(c));
    }
    a.insert("code".into(), code);
    a.insert(
        "patient".into(),
        json!({"reference": format!("Patient/{patient_id}")}),
    );
    // the identification date, as the IG maps it: when the allergy began to be known
    if let Some(d) = cx.date_time(al1.value(6), "AL1-6") {
        a.insert("onsetDateTime".into(), json!(d));
    }
    let manifestations: Vec<Value> = al1
        .field(5)
        .repetitions()
        .map(|r| r.get(1).trim().to_string())
        .filter(|t| !t.is_empty())
        .map(|t| json!({"text": t}))
        .collect();
    if !manifestations.is_empty() {
        let mut reaction = Map::new();
        reaction.insert("manifestation".into(), Value::Array(manifestations));
        let severity = codes::code(
            "AllergySeverity[AllergyIntolerance.reaction.severity]",
            severity,
        );
        put(
            &mut reaction,
            "severity",
            json!(severity.unwrap_or_default()),
        );
        a.insert("reaction".into(), json!([reaction]));
    }
    Some(Resource {
        rtype: "AllergyIntolerance",
        id,
        body: Value::Object(a),
    })
}

/// DG1 -> Condition, a diagnosis of the visit `encounter` (when there is one), added to
/// `out` with the clinician who made it (DG1-16, its asserter); the Condition, for its
/// reference.
pub fn diagnosis(
    cx: &Context,
    dg1: &Segment,
    patient_id: &str,
    encounter: Option<&str>,
    out: &mut Vec<Resource>,
) -> Option<Resource> {
    let mut code = codeable(dg1.field(3).first());
    // DG1-4, the description, from versions before CWE carried the text: the code's text
    let description = dg1.value(4).trim();
    match &mut code {
        None if !description.is_empty() => code = Some(json!({"text": description})),
        Some(c) if c.get("text").is_none() && !description.is_empty() => {
            c["text"] = json!(description);
        }
        _ => {}
    }
    let code = code?;
    let key = match dg1.get(3, 1).trim() {
        "" => dg1.value(4).trim(),
        c => c,
    };
    let id = cx.stable_id("Condition", &[encounter.unwrap_or(patient_id), key]);
    let mut c = Map::new();
    c.insert("resourceType".into(), json!("Condition"));
    c.insert("id".into(), json!(id));
    c.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}]),
    );
    c.insert("code".into(), code);
    c.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{patient_id}")}),
    );
    if let Some(e) = encounter {
        c.insert(
            "encounter".into(),
            json!({"reference": format!("Encounter/{e}")}),
        );
    }
    // as the IG maps them: the diagnosis time (DG1-5) is the onset, the attestation (DG1-19)
    // the recorded date
    if let Some(d) = cx.date_time(dg1.value(5), "DG1-5") {
        c.insert("onsetDateTime".into(), json!(d));
    }
    if let Some(d) = cx.date_time(dg1.value(19), "DG1-19") {
        c.insert("recordedDate".into(), json!(d));
    }
    // the sender's id of the diagnosis (DG1-20)
    let own = dg1.field(20).first();
    if !own.get(1).trim().is_empty() {
        c.insert(
            "identifier".into(),
            json!([{"system": super::order::system(cx, own), "value": own.get(1).trim()}]),
        );
    }
    if let Some(pr) = super::adt::practitioner(cx, dg1.field(16).first()) {
        c.insert("asserter".into(), json!({"reference": pr.reference()}));
        super::order::add_once(out, pr);
    }
    // the diagnosis this one is due to (DG1-22, the parent's DG1-20 id), by identifier
    let parent = dg1.field(22).first();
    if let Some(v) = super::super::datatypes::said(parent.get(1)) {
        c.insert(
            "extension".into(),
            json!([{"url": "http://hl7.org/fhir/StructureDefinition/condition-dueTo",
                    "valueReference": {"type": "Condition", "identifier": {
                        "system": super::order::system(cx, parent), "value": v}}}]),
        );
    }
    // DG1-21 D: the diagnosis was entered in error
    if dg1.value(21) == "D" {
        c.insert(
            "verificationStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                               "code": "entered-in-error"}]}),
        );
    }
    let condition = Resource {
        rtype: "Condition",
        id,
        body: Value::Object(c),
    };
    super::order::add_once(out, condition.clone());
    Some(condition)
}

/// NK1 -> RelatedPerson; `None` without a name.
pub fn next_of_kin(cx: &Context, nk1: &Segment, patient_id: &str) -> Option<Resource> {
    let names = each(nk1.field(2), |r| name(r, cx.zone));
    let first_name = names.as_array().and_then(|n| n.first())?.clone();
    let label = format!(
        "{}|{}",
        first_name["family"].as_str().unwrap_or(""),
        first_name["given"][0].as_str().unwrap_or("")
    );
    let id = cx.stable_id("RelatedPerson", &[patient_id, &label]);
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("RelatedPerson"));
    r.insert("id".into(), json!(id));
    r.insert(
        "patient".into(),
        json!({"reference": format!("Patient/{patient_id}")}),
    );
    if let Some(rel) = codeable(nk1.field(3).first()) {
        r.insert(
            "relationship".into(),
            json!([codes::standardise("Relationship", rel)]),
        );
    }
    r.insert("name".into(), names);
    let mut telecoms: Vec<Value> = nk1
        .field(5)
        .repetitions()
        .filter_map(|t| telecom(t, "home"))
        .collect();
    telecoms.extend(
        nk1.field(6)
            .repetitions()
            .filter_map(|t| telecom(t, "work")),
    );
    put(&mut r, "telecom", Value::Array(telecoms));
    put(&mut r, "address", each(nk1.field(4), address));
    kin_more(cx, nk1, &mut r);
    Some(Resource {
        rtype: "RelatedPerson",
        id,
        body: Value::Object(r),
    })
}

/// What NK1 says of the person beyond name, relationship, address and telecoms (IG
/// NK1[RelatedPerson]): the contact role (NK1-7) as a second relationship, the period
/// (NK1-8, NK1-9), identifiers (NK1-12, NK1-33, NK1-37 the SSN), sex (NK1-15), birth date
/// (NK1-16), language (NK1-20), and the contact person's name, telecoms and address (NK1-30 to
/// NK1-32, NK1-40, NK1-41) added to the person's own.
fn kin_more(cx: &Context, nk1: &Segment, r: &mut Map<String, Value>) {
    append(r, "relationship", codeable(nk1.field(7).first()));
    put(r, "period", period(nk1.value(8), nk1.value(9), cx.zone));
    let facility = &cx.header.sending_facility;
    let mut ids: Vec<Value> = [12, 33]
        .into_iter()
        .flat_map(|f| nk1.field(f).repetitions())
        .filter_map(|cx_| identifier(cx_, cx.systems, facility, cx.zone))
        .collect();
    if let Some(ssn) = said(nk1.value(37)) {
        ids.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
                        "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn}));
    }
    put(r, "identifier", Value::Array(ids));
    if let Some(g) = codes::code("AdministrativeSex", nk1.get(15, 1)) {
        r.insert("gender".into(), json!(g));
    }
    if let Some(d) = cx.date(nk1.value(16), "NK1-16") {
        r.insert("birthDate".into(), json!(d));
    }
    if let Some(language) = codeable(nk1.field(20).first()) {
        r.insert("communication".into(), json!([{"language": language}]));
    }
    let list = |v: Value| v.as_array().cloned().unwrap_or_default();
    append(r, "name", list(each(nk1.field(30), |n| name(n, cx.zone))));
    append(
        r,
        "telecom",
        [31, 40, 41]
            .into_iter()
            .flat_map(|f| nk1.field(f).repetitions())
            .filter_map(|t| telecom(t, "")),
    );
    append(r, "address", list(each(nk1.field(32), address)));
}
