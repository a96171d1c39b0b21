//! ORU^R01 (results): each OBR -> a DiagnosticReport, each of its OBX -> an Observation
//! (category laboratory), for the patient of PID. IG: ORU_R01, OBR[DiagnosticReport],
//! OBX[Observation] and the value-type maps.
//!
//! Identity: a report is its order's filler number (OBR-3; the placer number OBR-2 without
//! one), an observation is its report plus OBX-3 and OBX-4 (the test and sub-id), so that a
//! corrected result (OBX-11 `C`) updates the Observation it corrects.

use super::super::codes;
use super::super::datatypes::{codeable, date_time, instant, put};
use super::super::message::{Rep, Segment};
use super::super::zone::Zone;
use super::{Context, Resource, Unmapped, failed, unsupported};
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

/// OBX segments about the patient, in no report (ORU's patient observations, ADT's height
/// and weight): one Observation each (text lines joined). `lab` ones (ORU's) are of the
/// laboratory, and a value that cannot be read refuses the message, as a result's must; the
/// others (ADT's) are left out with a warning, and the visit goes on.
pub(super) fn of_the_patient(
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
            Ok(o) => o,
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
        let o = observation(
            cx,
            &keys,
            Some((obr, &code)),
            &group,
            effective.as_deref(),
            subject,
        )?;
        results.push(json!({"reference": o.reference()}));
        let mut o = o;
        if let (Some(body), Some(first)) = (o.body.as_object_mut(), specimens.first()) {
            body.insert("specimen".into(), first.clone());
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
        .filter_map(|nte| {
            let text: Vec<&str> = nte
                .field(3)
                .repetitions()
                .map(|r| r.get(1).trim())
                .filter(|t| !t.is_empty())
                .collect();
            if text.is_empty() {
                return None;
            }
            let mut note = json!({"text": text.join("\n")});
            if let Some(at) = cx.date_time(nte.value(6), "NTE-6") {
                note["time"] = json!(at);
            }
            Some(note)
        })
        .collect()
}

/// OBX segments that make one Observation: text lines (TX, FT, ST) of one test and sub-id in a
/// row are one text, as senders split long results; any other OBX stands alone.
fn lines<'a>(obx: &[&'a Segment]) -> Vec<Vec<&'a Segment>> {
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

/// One Observation from its OBX segment(s); `order` is its OBR and that OBR's test, when it
/// belongs to a report.
fn observation(
    cx: &Context,
    report: &[&str],
    order: Option<(&Segment, &Value)>,
    group: &[&Segment],
    effective: Option<&str>,
    subject: &Value,
) -> Result<Resource, Unmapped> {
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
    Ok(Resource {
        rtype: "Observation",
        id,
        body: Value::Object(o),
    })
}

/// OBX-5 by its type (OBX-2) -> value[x].
fn value(o: &mut Map<String, Value>, group: &[&Segment], zone: Zone) -> Result<(), Unmapped> {
    let obx = group[0];
    let field = obx.field(5);
    if field.is_empty() {
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
/// UCUM), else the unit as text.
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
        }
    }
    Some(Value::Object(q))
}

/// OBX-7 `low-high`, `<x`, `>x`, or text.
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

/// OBR-25 (HL7 table 0123) -> DiagnosticReport.status, by the IG's map; else final.
fn report_status(code: &str) -> &'static str {
    codes::code("ResultStatus[Non-Queries]", code).unwrap_or("final")
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
