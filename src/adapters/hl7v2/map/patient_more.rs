//! The PID fields beyond identity, name, contact and death that senders fill and analysts look
//! for (IG PID[Patient] rows): birth time and place, mother's maiden name, race and ethnicity
//! (as US Core's extensions), language, religion, citizenship and nationality, multiple birth,
//! and the SSN and driver's licence of PID-19 and PID-20 as identifiers.

use super::super::datatypes::{codeable, put};
use super::super::message::Segment;
use super::Context;
use serde_json::{Map, Value, json};

const BIRTH_TIME: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthTime";
const MOTHERS_MAIDEN_NAME: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";
const RELIGION: &str = "http://hl7.org/fhir/StructureDefinition/patient-religion";
const BIRTH_PLACE: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
const US_CORE_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const US_CORE_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
const CITIZENSHIP: &str = "http://hl7.org/fhir/StructureDefinition/patient-citizenship";
const NATIONALITY: &str = "http://hl7.org/fhir/StructureDefinition/patient-nationality";
/// CDC Race and Ethnicity, the code system of HL7 tables 0005 and 0189 in US Core.
const CDC_REC: &str = "urn:oid:2.16.840.1.113883.6.238";

/// Add what `pid` says beyond the core of the Patient to `p` (which has its `birthDate`).
pub fn more(cx: &Context, pid: &Segment, p: &mut Map<String, Value>) {
    let mut extensions: Vec<Value> = Vec::new();
    // PID-7 with a time: the date stays `birthDate`, the moment is its birthTime extension
    let born = pid.value(7).trim();
    if born.len() > 8
        && p.contains_key("birthDate")
        && let Some(at) = cx.date_time(born, "PID-7")
        && at.contains('T')
    {
        p.insert(
            "_birthDate".into(),
            json!({"extension": [{"url": BIRTH_TIME, "valueDateTime": at}]}),
        );
    }
    let maiden = pid.field(6).first().sub(1, 1).trim().to_string();
    if !maiden.is_empty() && maiden != "\"\"" {
        extensions.push(json!({"url": MOTHERS_MAIDEN_NAME, "valueString": maiden}));
    }
    if let Some(race) = omb(pid, 10, US_CORE_RACE) {
        extensions.push(race);
    }
    if let Some(ethnicity) = omb(pid, 22, US_CORE_ETHNICITY) {
        extensions.push(ethnicity);
    }
    if let Some(religion) = codeable(pid.field(17).first()) {
        extensions.push(json!({"url": RELIGION, "valueCodeableConcept": religion}));
    }
    // citizenship (PID-26), tribal citizenship (PID-39, as the IG maps it) and nationality
    // (PID-28): the core extensions, each with its code
    for (field, url) in [(26, CITIZENSHIP), (39, CITIZENSHIP), (28, NATIONALITY)] {
        for code in pid.field(field).repetitions().filter_map(codeable) {
            extensions.push(json!({"url": url,
                                   "extension": [{"url": "code", "valueCodeableConcept": code}]}));
        }
    }
    let place = pid.value(23).trim();
    if !place.is_empty() && place != "\"\"" {
        extensions.push(json!({"url": BIRTH_PLACE, "valueAddress": {"text": place}}));
    }
    put(p, "extension", Value::Array(extensions));
    if let Some(language) = codeable(pid.field(15).first()) {
        p.insert("communication".into(), json!([{"language": language}]));
    }
    match (pid.value(24), pid.value(25).trim().parse::<u32>()) {
        (_, Ok(order)) => {
            p.insert("multipleBirthInteger".into(), json!(order));
        }
        ("Y", _) => {
            p.insert("multipleBirthBoolean".into(), json!(true));
        }
        ("N", _) => {
            p.insert("multipleBirthBoolean".into(), json!(false));
        }
        _ => {}
    }
    // PID-30 "N" with no date: alive, said so
    if pid.value(30) == "N" && !p.contains_key("deceasedDateTime") {
        p.insert("deceasedBoolean".into(), json!(false));
    }
    let ids = p
        .entry("identifier")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(ids) = ids {
        let ssn = pid.value(19).trim();
        if !ssn.is_empty() && ssn != "\"\"" {
            ids.push(json!({"type": v2_type("SS", "Social Security number"),
                            "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn}));
        }
        let dln = pid.field(20).first();
        let number = dln.get(1).trim();
        if !number.is_empty() && number != "\"\"" {
            let mut id = json!({"type": v2_type("DL", "Driver's license number"), "value": number});
            if !dln.get(2).trim().is_empty() {
                id["assigner"] = json!({"display": dln.get(2).trim()});
            }
            ids.push(id);
        }
    }
    if p.get("identifier")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        p.remove("identifier");
    }
}

/// Identifier type of HL7 table 0203.
fn v2_type(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                       "code": code, "display": display}]})
}

/// PID-10 or PID-22 as US Core's race or ethnicity extension: each repetition's code as an
/// `ombCategory` (CDC Race and Ethnicity codes), its text (else code) as `text`.
fn omb(pid: &Segment, field: usize, url: &str) -> Option<Value> {
    let mut parts = Vec::new();
    let mut texts = Vec::new();
    for rep in pid.field(field).repetitions() {
        let (code, display) = (rep.get(1).trim(), rep.get(2).trim());
        if code.is_empty() || code == "\"\"" {
            continue;
        }
        let mut coding = json!({"system": CDC_REC, "code": code});
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        parts.push(json!({"url": "ombCategory", "valueCoding": coding}));
        texts.push(if display.is_empty() { code } else { display });
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(json!({"url": "text", "valueString": texts.join(", ")}));
    Some(json!({"url": url, "extension": parts}))
}
