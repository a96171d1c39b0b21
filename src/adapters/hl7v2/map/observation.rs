//! OBX -> Observation (IG OBX[Observation], NTE[Observation]): a result of a report (ORU) or
//! of the patient (ORU's patient observations, ADT's height and weight), its value by its type
//! (OBX-2), units, reference range, flags, status, notes and what else the OBX says of it.
//!
//! Identity: the report (or the patient) and the test code with its sub-id (OBX-4), else the
//! set id: a corrected result restates the same Observation.

use super::super::codes;
use super::super::datatypes::{codeable, coding_system, date_time, each, put, said};
use super::super::message::{Field, Rep, Segment};
use super::super::zone::Zone;
use super::{Context, Resource, Unmapped, failed};
use serde_json::{Map, Value, json};

/// OBX segments about the patient, in no report (ORU's patient observations, ADT's height
/// and weight): one Observation each (text lines joined). `lab` ones (ORU's) are of the
/// laboratory, and a value that cannot be read refuses the message, as a result's must; the
/// others (ADT's) are left out with a warning, and the visit goes on.
pub fn of_the_patient(
    cx: &Context,
    obx: &[&Segment],
    patient_id: &str,
    subject: &Value,
    lab: bool,
) -> Result<Vec<Resource>, Unmapped> {
    let key = [cx.header.sending_facility.as_str(), "patient", patient_id];
    let mut out = Vec::new();
    for group in lines(obx) {
        // an attached document without a test code is a document, not an observation (MDM)
        if group[0].get(3, 1).is_empty() && matches!(group[0].value(2), "ED" | "RP") {
            tracing::info!(control_id = %cx.header.control_id, "an OBX of type ED/RP without OBX-3 left out");
            continue;
        }
        let mut o = match observation(cx, &key, None, &group, None, subject) {
            Ok((o, performers)) => {
                for p in performers {
                    super::order::add_once(&mut out, p);
                }
                o
            }
            Err(super::Unmapped::Failed(p) | super::Unmapped::Unsupported(p)) if !lab => {
                cx.not_carried(&p.location, format!("{}; the observation left out", p.text));
                continue;
            }
            Err(e) => return Err(e),
        };
        if !lab && let Some(body) = o.body.as_object_mut() {
            body.remove("category");
        }
        out.push(o);
    }
    Ok(out)
}

/// The NTE segments right after an observation's last OBX: its notes (IG NTE[Observation]),
/// each with its time (NTE-6).
fn notes_after(cx: &Context, group: &[&Segment]) -> Vec<Value> {
    let Some(last) = group.last() else {
        return Vec::new();
    };
    let segments = &cx.msg.segments;
    let Some(at) = segments.iter().position(|s| std::ptr::eq(s, *last)) else {
        return Vec::new();
    };
    segments[at + 1..]
        .iter()
        .take_while(|s| s.id == "NTE")
        .filter_map(|nte| super::order::note(cx, nte))
        .collect()
}

/// OBX segments that make one Observation: text lines (TX, FT, ST) of one test and sub-id in a
/// row are one text, as senders split long results; any other OBX stands alone.
pub fn lines<'a>(obx: &[&'a Segment]) -> Vec<Vec<&'a Segment>> {
    let mut out: Vec<Vec<&Segment>> = Vec::new();
    let is_text = |s: &Segment| matches!(s.value(2), "TX" | "FT" | "ST");
    for &s in obx {
        if let Some(last) = out.last_mut() {
            let prev = last[0];
            if is_text(prev)
                && is_text(s)
                && prev.get(3, 1) == s.get(3, 1)
                && prev.value(4) == s.value(4)
            {
                last.push(s);
                continue;
            }
        }
        out.push(vec![s]);
    }
    out
}

/// One Observation from its OBX segment(s), with the Practitioners and Organization that
/// performed it; `order` is its OBR and that OBR's test, when it belongs to a report.
pub fn observation(
    cx: &Context,
    report: &[&str],
    order: Option<(&Segment, &Value)>,
    group: &[&Segment],
    effective: Option<&str>,
    subject: &Value,
) -> Result<(Resource, Vec<Resource>), Unmapped> {
    let obx = group[0];
    // without OBX-3 (text lines of a report) the observation is the report's test
    let code = match (codeable(obx.field(3).first()), order) {
        (Some(c), _) => c,
        (None, Some((_, report_code))) => report_code.clone(),
        (None, None) => {
            return Err(failed(
                "OBX-3",
                "101",
                "OBX-3 (observation identifier) is empty",
            ));
        }
    };
    let test = match (obx.get(3, 1), order) {
        ("", Some((obr, _))) => obr.get(4, 1),
        (c, _) => c,
    };
    let set_id = obx.value(1);
    let mut key: Vec<&str> = report.to_vec();
    key.extend([test, obx.value(4)]);
    if test.is_empty() {
        key.push(set_id);
    }
    let id = cx.stable_id("Observation", &key);
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(id));
    o.insert("status".into(), json!(observation_status(obx.value(11))));
    o.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory", "display": "Laboratory"}]}]),
    );
    o.insert("code".into(), code);
    o.insert("subject".into(), subject.clone());
    if let Some(at) = cx
        .date_time(obx.value(14), "OBX-14")
        .as_deref()
        .or(effective)
    {
        o.insert("effectiveDateTime".into(), json!(at));
    }
    // a value's error names the OBX it is in (the third OBX, not the first)
    value(&mut o, group, cx.zone).map_err(|e| super::in_occurrence(e, cx.msg.occurrence(obx)))?;
    if let Some(range) = reference_range(obx) {
        o.insert("referenceRange".into(), json!([range]));
    }
    let flags: Vec<Value> = obx
        .field(8)
        .repetitions()
        .filter(|r| !r.get(1).is_empty())
        .map(|r| {
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                               "code": r.get(1)}]})
        })
        .collect();
    put(&mut o, "interpretation", Value::Array(flags));
    put(&mut o, "note", Value::Array(notes_after(cx, group)));
    let performers = details(cx, obx, &mut o);
    let observation = Resource {
        rtype: "Observation",
        id,
        body: Value::Object(o),
    };
    Ok((observation, performers))
}

/// What an OBX says of its observation beyond the value (IG OBX[Observation]): the nature of
/// the abnormal test (OBX-10) and the time of the analysis (OBX-19) as the core extensions,
/// the method (OBX-17), the body site (OBX-20), the filler's id of the observation (OBX-21), and
/// who performed it: the responsible observer (OBX-16) and the performing organization
/// (OBX-23, with its address OBX-24), returned to be written with it.
fn details(cx: &Context, obx: &Segment, o: &mut Map<String, Value>) -> Vec<Resource> {
    let mut extensions = Vec::new();
    for nature in obx.field(10).repetitions() {
        let code = nature.get(1).trim();
        if !code.is_empty() && code != "\"\"" {
            extensions.push(json!({
                "url": "http://hl7.org/fhir/StructureDefinition/observation-nature-of-abnormal-test",
                "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0080", "code": code}]}
            }));
        }
    }
    if let Some(at) = cx.date_time(obx.value(19), "OBX-19") {
        extensions.push(json!({
            "url": "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time",
            "valueDateTime": at
        }));
    }
    // the observation's sub-type (OBX-30: a result, an answer to an ask-at-order-entry
    // question...), which a FHIR Observation has no element for
    if let Some(sub) = said(obx.value(30)) {
        extensions.push(json!({
            "url": "http://hl7.org/fhir/StructureDefinition/observation-structure-type",
            "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0936", "code": sub}]}
        }));
    }
    put(o, "extension", Value::Array(extensions));
    if let Some(m) = codeable(obx.field(17).first()) {
        o.insert("method".into(), m);
    }
    if let Some(b) = codeable(obx.field(20).first()) {
        o.insert("bodySite".into(), b);
    }
    let own = obx.field(21).first();
    if !own.get(1).trim().is_empty() {
        o.insert(
            "identifier".into(),
            json!([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}]},
                    "system": super::order::system(cx, own), "value": own.get(1).trim()}]),
        );
    }
    // the equipment that measured it (OBX-18), named by its id
    if let Some(device) = said(obx.get(18, 1)) {
        o.insert(
            "device".into(),
            json!({"type": "Device", "identifier": {
                "system": super::order::system(cx, obx.field(18).first()), "value": device}}),
        );
    }
    let mut performers = Vec::new();
    for xcn in obx.field(16).repetitions() {
        if let Some(p) = super::adt::practitioner(cx, xcn) {
            performers.push(p);
        }
    }
    if let Some(lab) = performing_organization(cx, obx) {
        performers.push(lab);
    }
    if let Some(producer) = producer(cx, obx.field(15).first()) {
        performers.push(producer);
    }
    let mut refs: Vec<Value> = performers
        .iter()
        .map(|p| json!({"reference": p.reference()}))
        .collect();
    // the performing laboratory's medical director (OBX-25), in that role
    let director = ("http://terminology.hl7.org/CodeSystem/v2-0912", "MDIR");
    if let Some((p, role)) = super::roles::from_xcn(cx, obx.field(25).first(), Some(director)) {
        refs.push(json!({"reference": role.reference()}));
        performers.extend([p, role]);
    }
    put(o, "performer", Value::Array(refs));
    related_specimens(cx, obx, o);
    performers
}

/// OBX-15 (producer's id, a CWE naming the producing service) -> an Organization by that id.
fn producer(cx: &Context, cwe: Rep) -> Option<Resource> {
    let code = said(cwe.get(1))?;
    let system = super::super::datatypes::coding_system(cwe.get(3));
    let id = cx.stable_id("Organization", &[&system, code]);
    let mut org = Map::new();
    org.insert("resourceType".into(), json!("Organization"));
    org.insert("id".into(), json!(id));
    org.insert(
        "identifier".into(),
        json!([{"system": system, "value": code}]),
    );
    put(
        &mut org,
        "name",
        json!(said(cwe.get(2)).unwrap_or_default()),
    );
    Some(Resource {
        rtype: "Organization",
        id,
        body: Value::Object(org),
    })
}

/// OBX-33 (the specimens the observation was made on, EIP: placer^filler) -> `specimen` by
/// identifier for one; for several (a value calculated from more than one specimen), the R5
/// cross-version extension per specimen, as the IG maps it.
fn related_specimens(cx: &Context, obx: &Segment, o: &mut Map<String, Value>) {
    let named: Vec<Value> = obx
        .field(33)
        .repetitions()
        .filter_map(|eip| {
            [(1, "PLAC"), (2, "FILL")]
                .into_iter()
                .find_map(|(c, code)| super::order::eip_reference(cx, eip, c, code, "Specimen"))
        })
        .collect();
    match named.len() {
        0 => {}
        1 => {
            o.insert("specimen".into(), named[0].clone());
        }
        _ => super::super::datatypes::append(
            o,
            "extension",
            named.into_iter().map(|r| {
                json!({"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.specimen",
                       "valueReference": r})
            }),
        ),
    }
}

/// OBX-23 (XON) with OBX-24's address: the laboratory that performed the test.
fn performing_organization(cx: &Context, obx: &Segment) -> Option<Resource> {
    organization(cx, obx.field(23).first(), Some(obx.field(24)))
}

/// XON (with an XAD field for its address) -> Organization, one per identifier (XON-10 under
/// XON-6), else per name.
pub(super) fn organization(cx: &Context, xon: Rep, addresses: Option<&Field>) -> Option<Resource> {
    let name = said(xon.get(1)).unwrap_or_default();
    let number = said(xon.get(10)).unwrap_or_default();
    if name.is_empty() && number.is_empty() {
        return None;
    }
    let system = cx.systems.for_authority(
        xon.sub(6, 1),
        xon.sub(6, 2),
        xon.sub(6, 3),
        &cx.header.sending_facility,
    );
    let id = match number {
        "" => cx.stable_id("Organization", &["name", name]),
        n => cx.stable_id("Organization", &[&system, n]),
    };
    let mut org = Map::new();
    org.insert("resourceType".into(), json!("Organization"));
    org.insert("id".into(), json!(id));
    if !number.is_empty() {
        org.insert(
            "identifier".into(),
            json!([{"system": system, "value": number}]),
        );
    }
    put(&mut org, "name", json!(name));
    if let Some(a) = addresses {
        put(
            &mut org,
            "address",
            each(a, super::super::datatypes::address),
        );
    }
    Some(Resource {
        rtype: "Organization",
        id,
        body: Value::Object(org),
    })
}

/// OBX-5 by its type (OBX-2) -> value[x].
fn value(o: &mut Map<String, Value>, group: &[&Segment], zone: Zone) -> Result<(), Unmapped> {
    let obx = group[0];
    let field = obx.field(5);
    // text may start on a later line (an empty first OBX of a report's text)
    if field.is_empty() && !matches!(obx.value(2), "TX" | "FT" | "ST") {
        return Ok(());
    }
    let v = field.first();
    match obx.value(2) {
        "NM" => {
            let q =
                quantity(v.get(1), obx.field(6).first()).ok_or_else(|| number_error(v.get(1)))?;
            o.insert("valueQuantity".into(), q);
        }
        "SN" => {
            let (comparator, n1, sep, n2) = sn_parts(v);
            let units = obx.field(6).first();
            match sep {
                ":" | "/" => {
                    o.insert(
                        "valueRatio".into(),
                        json!({"numerator": quantity(n1, units).ok_or_else(|| number_error(n1))?,
                               "denominator": {"value": decimal(n2).ok_or_else(|| number_error(n2))?}}),
                    );
                }
                "-" => {
                    o.insert(
                        "valueRange".into(),
                        json!({"low": quantity(n1, units).ok_or_else(|| number_error(n1))?,
                               "high": quantity(n2, units).ok_or_else(|| number_error(n2))?}),
                    );
                }
                _ => {
                    let mut q = quantity(n1, units).ok_or_else(|| number_error(n1))?;
                    if matches!(comparator, "<" | "<=" | ">=" | ">") {
                        q["comparator"] = json!(comparator);
                    }
                    o.insert("valueQuantity".into(), q);
                }
            }
        }
        "CE" | "CWE" | "CNE" | "CF" => {
            if let Some(cc) = codeable(v) {
                o.insert("valueCodeableConcept".into(), cc);
            }
        }
        // encapsulated data is the report's presented form (see `report`); a pointer to data
        // elsewhere is not a value
        "ED" | "RP" => {}
        "DT" | "DTM" | "TS" => match date_time(v.get(1), zone) {
            Some(at) => {
                o.insert("valueDateTime".into(), json!(at));
            }
            None => {
                return Err(failed(
                    "OBX-5",
                    "102",
                    format!("'{}' is not a date", v.get(1)),
                ));
            }
        },
        // text, possibly over several OBX and repetitions
        _ => {
            let text: Vec<String> = group
                .iter()
                .flat_map(|s| {
                    s.field(5)
                        .repetitions()
                        .map(|r| r.get(1).to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            let text = text.join("\n");
            if !text.trim().is_empty() {
                o.insert("valueString".into(), json!(text));
            }
        }
    }
    Ok(())
}

fn number_error(text: &str) -> Unmapped {
    failed("OBX-5", "102", format!("'{text}' is not a number"))
}

/// A decimal as FHIR writes it (JSON number), or `None`.
fn decimal(text: &str) -> Option<Value> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let ok = !t.is_empty()
        && t.parse::<f64>().is_ok_and(f64::is_finite)
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    ok.then(|| serde_json::from_str::<Value>(&normalise_decimal(t)).ok())
        .flatten()
}

/// `.5` -> `0.5`, `-.5` -> `-0.5`, `5.` -> `5` (JSON forms).
fn normalise_decimal(t: &str) -> String {
    let (sign, body) = t.strip_prefix('-').map(|b| ("-", b)).unwrap_or(("", t));
    let body = if body.starts_with('.') {
        format!("0{body}")
    } else {
        body.to_string()
    };
    let body = body.strip_suffix('.').map(str::to_string).unwrap_or(body);
    format!("{sign}{body}")
}

/// A number with OBX-6's units: UCUM when the units say so (or name no system and look like
/// UCUM); a unit of another system as that system's code (a local one is normalised to UCUM
/// on ingest by a map, `terminology::normalise`); else the unit as text.
pub(super) fn quantity(number: &str, units: Rep) -> Option<Value> {
    let mut q = Map::new();
    q.insert("value".into(), decimal(number)?);
    let (code, text, system) = (
        units.get(1).trim(),
        units.get(2).trim(),
        units.get(3).trim(),
    );
    if !code.is_empty() {
        q.insert(
            "unit".into(),
            json!(if text.is_empty() { code } else { text }),
        );
        if matches!(system, "UCUM" | "ANSI+" | "ISO+" | "") && !code.contains(' ') {
            q.insert("system".into(), json!("http://unitsofmeasure.org"));
            q.insert("code".into(), json!(code));
        } else if !matches!(system, "UCUM" | "ANSI+" | "ISO+" | "") {
            q.insert("system".into(), json!(coding_system(system)));
            q.insert("code".into(), json!(code));
        }
    }
    Some(Value::Object(q))
}

/// An SN's comparator, first number, separator and second number. Many labs write the whole
/// value in its first component (`<0.10`, `>=5`, `1-5`, `1:128`) where the standard splits it
/// into four: its meaning is clear, so it is read that way rather than refused.
fn sn_parts<'a>(v: Rep<'a>) -> (&'a str, &'a str, &'a str, &'a str) {
    let (c1, n1) = (v.get(1).trim(), v.get(2).trim());
    let split =
        n1.is_empty() && !c1.is_empty() && !matches!(c1, "<" | ">" | "<=" | ">=" | "=" | "<>");
    if !split {
        return (c1, n1, v.get(3).trim(), v.get(4).trim());
    }
    let comparator = ["<=", ">=", "<>", "<", ">", "="]
        .into_iter()
        .find(|c| c1.starts_with(c))
        .unwrap_or("");
    let rest = c1[comparator.len()..].trim_start();
    // a separator follows a digit or a point: a leading minus is the number's sign
    let at = rest.char_indices().skip(1).find(|&(i, c)| {
        matches!(c, '-' | ':' | '/' | '+')
            && rest[..i].ends_with(|p: char| p.is_ascii_digit() || p == '.')
    });
    match at {
        Some((i, sep)) => (
            comparator,
            rest[..i].trim(),
            &rest[i..i + sep.len_utf8()],
            rest[i + sep.len_utf8()..].trim(),
        ),
        None => (comparator, rest, "", ""),
    }
}

/// OBX-7 `low-high`, `<x`, `>x`, or text.
fn reference_range(obx: &Segment) -> Option<Value> {
    let text = obx.value(7).trim();
    if text.is_empty() {
        return None;
    }
    let units = obx.field(6).first();
    let bound = |n: &str| quantity(n, units);
    if let Some((lo, hi)) = text.split_once('-').filter(|(lo, _)| !lo.is_empty())
        && let (Some(l), Some(h)) = (bound(lo), bound(hi))
    {
        return Some(json!({"low": l, "high": h}));
    }
    if let Some(v) = text
        .strip_prefix('<')
        .and_then(|n| bound(n.trim_start_matches('=')))
    {
        return Some(json!({"high": v}));
    }
    if let Some(v) = text
        .strip_prefix('>')
        .and_then(|n| bound(n.trim_start_matches('=')))
    {
        return Some(json!({"low": v}));
    }
    Some(json!({"text": text}))
}

/// OBX-11 (HL7 table 0085) -> Observation.status, by the IG's map (`codes`); a status it
/// does not map (or none) is final, as v2 reads a result without one.
fn observation_status(code: &str) -> &'static str {
    codes::code("ObservationResultStatusCodesInterpretation", code).unwrap_or("final")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_in_json_form() {
        assert_eq!(decimal("7.25"), Some(json!(7.25)));
        assert_eq!(decimal(".5"), Some(json!(0.5)));
        assert_eq!(decimal("-.5"), Some(json!(-0.5)));
        assert_eq!(decimal("+12"), Some(json!(12)));
        assert_eq!(decimal("12."), Some(json!(12)));
        assert_eq!(decimal("1e5"), None);
        assert_eq!(decimal("high"), None);
        assert_eq!(decimal(""), None);
    }

    fn sn(text: &str) -> [String; 4] {
        let raw = format!("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\rOBX|1|SN|||{text}");
        let msg = crate::adapters::hl7v2::message::parse(&raw).unwrap();
        let obx = msg.first("OBX").unwrap();
        let (a, b, c, d) = sn_parts(obx.field(5).first());
        [a, b, c, d].map(str::to_string)
    }

    #[test]
    fn an_sn_written_in_one_component_is_read_as_meant() {
        assert_eq!(sn("<^0.10"), ["<", "0.10", "", ""]);
        assert_eq!(sn("<0.10"), ["<", "0.10", "", ""]);
        assert_eq!(sn(">= 5"), [">=", "5", "", ""]);
        assert_eq!(sn("1-5"), ["", "1", "-", "5"]);
        assert_eq!(sn("1:128"), ["", "1", ":", "128"]);
        assert_eq!(sn("-2.5"), ["", "-2.5", "", ""]);
        assert_eq!(sn("^-2^-^3"), ["", "-2", "-", "3"]);
    }
}
