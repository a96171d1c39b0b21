//! FHIR to HL7v2 ORU^R01: a DiagnosticReport and its Observations written as ORC, OBR and one
//! OBX per result, after the patient's PID (and PV1 when the report names its encounter), by
//! the inbound maps turned round (IG ORU_R01, OBR[DiagnosticReport], OBX[Observation]): codes
//! as CWE with their v2 coding system names, values by type (NM with units, CWE, ST/TX, DTM),
//! reference range, interpretation, and the statuses by the IG's tables.

use super::super::codes;
use super::super::datatypes::coding_system_name;
use super::adt::{Envelope, dtm, items, msh, pid, pv1, text};
use super::write::{Rep, Seg, message, rep};
use serde_json::Value;

/// A CodeableConcept as a CWE: the first coding, the second as the alternate, the text.
pub fn cwe(cc: &Value) -> Rep {
    let codings = items(&cc["coding"]);
    let one = |i: usize| -> [String; 3] {
        codings.get(i).map_or_else(Default::default, |c| {
            [
                text(c, &["code"]).to_string(),
                text(c, &["display"]).to_string(),
                coding_system_name(text(c, &["system"])),
            ]
        })
    };
    let ([a, b, c], [d, e, f]) = (one(0), one(1));
    let original = match text(cc, &["text"]) {
        t if t == b => "",
        t => t,
    };
    rep(&[&a, &b, &c, &d, &e, &f, "", "", original])
}

/// An identifier of `kind` (PLAC, FILL) as an EI: its value (the authority is the system's).
pub(super) fn ei(identifiers: &Value, kind: &str) -> String {
    items(identifiers)
        .iter()
        .find(|i| {
            items(&i["type"]["coding"])
                .iter()
                .any(|c| c["code"] == kind)
        })
        .map(|i| text(i, &["value"]).to_string())
        .unwrap_or_default()
}

/// A Quantity's unit as OBX-6's CWE: the code in its system, the unit text.
pub(super) fn units(q: &Value) -> Rep {
    let code = match text(q, &["code"]) {
        "" => text(q, &["unit"]),
        c => c,
    };
    if code.is_empty() {
        return Vec::new();
    }
    let system = coding_system_name(text(q, &["system"]));
    rep(&[code, text(q, &["unit"]), &system])
}

/// OBX-2 and OBX-5 from an Observation's value[x].
fn value(o: &Value) -> (&'static str, Vec<Rep>) {
    let plain = |s: String| vec![vec![vec![s]]];
    if let Some(q) = o.get("valueQuantity") {
        let n = q["value"]
            .as_f64()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let comparator = text(q, &["comparator"]);
        return match comparator {
            "" => ("NM", plain(n)),
            c => ("SN", vec![rep(&[c, &n])]),
        };
    }
    if let Some(cc) = o.get("valueCodeableConcept") {
        return ("CWE", vec![cwe(cc)]);
    }
    if let Some(s) = o["valueString"].as_str() {
        let kind = if s.len() > 199 || s.contains('\n') {
            "TX"
        } else {
            "ST"
        };
        return (kind, plain(s.to_string()));
    }
    if let Some(at) = o["valueDateTime"].as_str() {
        return ("DTM", plain(dtm(at)));
    }
    if let Some(i) = o["valueInteger"].as_i64() {
        return ("NM", plain(i.to_string()));
    }
    if let Some(b) = o["valueBoolean"].as_bool() {
        return ("ST", plain(if b { "Y" } else { "N" }.into()));
    }
    ("", Vec::new())
}

/// OBX-7 from the first reference range: its text, else low-high.
fn range(o: &Value) -> String {
    let Some(r) = items(&o["referenceRange"]).first() else {
        return String::new();
    };
    if let Some(t) = r["text"].as_str() {
        return t.to_string();
    }
    let n = |k: &str| r[k]["value"].as_f64().map(|v| v.to_string());
    match (n("low"), n("high")) {
        (Some(l), Some(h)) => format!("{l}-{h}"),
        (Some(l), None) => format!(">{l}"),
        (None, Some(h)) => format!("<{h}"),
        (None, None) => String::new(),
    }
}

/// One OBX (set id `n`) from an Observation.
pub fn obx(n: usize, o: &Value) -> Seg {
    let (kind, values) = value(o);
    let status = codes::v2_code(
        "ObservationResultStatusCodesInterpretation",
        None,
        text(o, &["status"]),
    )
    .unwrap_or("F");
    let flags: Vec<Rep> = items(&o["interpretation"])
        .iter()
        .filter_map(|i| items(&i["coding"]).first())
        .map(|c| rep(&[text(c, &["code"])]))
        .collect();
    let at = match text(o, &["effectiveDateTime"]) {
        "" => text(o, &["issued"]),
        t => t,
    };
    Seg::new("OBX")
        .text(1, &n.to_string())
        .text(2, kind)
        .reps(3, vec![cwe(&o["code"])])
        .reps(5, values)
        .reps(6, o.get("valueQuantity").map(units).into_iter().collect())
        .text(7, &range(o))
        .reps(8, flags)
        .text(11, status)
        .text(14, &dtm(at))
}

/// An ORU^R01 for `reports`, each with its observations (in the report's order), of
/// `patient`: one ORC, OBR and its OBX per report.
pub fn oru(
    env: &Envelope,
    patient: &Value,
    encounter: Option<&Value>,
    reports: &[(Value, Vec<Value>)],
) -> String {
    let mut segments = vec![msh(env, &["ORU", "R01", "ORU_R01"]), pid(patient)];
    if let Some(e) = encounter {
        segments.push(pv1(e));
    }
    for (n, (report, observations)) in reports.iter().enumerate() {
        let (placer, filler) = (
            ei(&report["identifier"], "PLAC"),
            ei(&report["identifier"], "FILL"),
        );
        let (start, end) = match report.get("effectivePeriod") {
            Some(p) => (text(p, &["start"]), text(p, &["end"])),
            None => (text(report, &["effectiveDateTime"]), ""),
        };
        let status = codes::v2_code("ResultStatus[Non-Queries]", None, text(report, &["status"]))
            .unwrap_or("F");
        let section = items(&report["category"])
            .iter()
            .flat_map(|c| items(&c["coding"]))
            .find(|c| c["system"] == "http://terminology.hl7.org/CodeSystem/v2-0074")
            .map(|c| text(c, &["code"]))
            .unwrap_or("");
        segments.push(
            Seg::new("ORC")
                .text(1, "RE")
                .text(2, &placer)
                .text(3, &filler),
        );
        segments.push(
            Seg::new("OBR")
                .text(1, &(n + 1).to_string())
                .text(2, &placer)
                .text(3, &filler)
                .reps(4, vec![cwe(&report["code"])])
                .text(7, &dtm(start))
                .text(8, &dtm(end))
                .text(22, &dtm(text(report, &["issued"])))
                .text(24, section)
                .text(25, status),
        );
        for (i, o) in observations.iter().enumerate() {
            segments.push(obx(i + 1, o));
        }
    }
    message(&segments, &env.delimiters)
}

#[cfg(test)]
mod tests {
    use super::super::super::message::{Delimiters, parse};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_is_written_as_the_inbound_side_reads_it() {
        let env = Envelope {
            sending_application: "EMRSYNC".into(),
            sending_facility: "HUB".into(),
            receiving_application: "AMB".into(),
            receiving_facility: "CLINIC".into(),
            control_id: "ES9".into(),
            at: "2026-12-06T10:00:00Z".into(),
            version: "2.5.1".into(),
            delimiters: Delimiters::default(),
        };
        let patient = json!({"identifier": [{"system": "urn:oid:1.2.3", "value": "M1"}],
                             "name": [{"family": "Doe", "given": ["Jo"]}]});
        let report = json!({"resourceType": "DiagnosticReport", "status": "final",
            "identifier": [
                {"type": {"coding": [{"code": "PLAC"}]}, "value": "ORD1"},
                {"type": {"coding": [{"code": "FILL"}]}, "value": "LAB9"}],
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CH"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "Comprehensive metabolic panel"}]},
            "effectiveDateTime": "2026-12-06T08:00:00Z"});
        let glucose = json!({"status": "corrected",
            "code": {"coding": [{"system": "http://emrsync.org/hl7v2/local-code-system/99LAB", "code": "GLU", "display": "Glucose"},
                                {"system": "http://loinc.org", "code": "2345-7"}]},
            "valueQuantity": {"value": 182, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            "referenceRange": [{"low": {"value": 70}, "high": {"value": 99}}],
            "interpretation": [{"coding": [{"code": "H"}]}],
            "effectiveDateTime": "2026-12-06T08:00:00Z"});
        let note = json!({"status": "final", "code": {"text": "Comment"},
                          "valueString": "Fasting | per patient ^ note"});
        let text = oru(&env, &patient, None, &[(report, vec![glucose, note])]);
        let m = parse(&text).unwrap();
        assert_eq!(
            (
                m.header().message_type.as_str(),
                m.header().trigger.as_str()
            ),
            ("ORU", "R01")
        );
        let obr = m.first("OBR").unwrap();
        assert_eq!(
            (obr.value(2), obr.value(3), obr.get(4, 1), obr.get(4, 3)),
            ("ORD1", "LAB9", "24323-8", "LN")
        );
        assert_eq!((obr.value(24), obr.value(25)), ("CH", "F"));
        let obx: Vec<_> = m.all("OBX").collect();
        assert_eq!(
            (
                obx[0].value(2),
                obx[0].get(3, 1),
                obx[0].get(3, 3),
                obx[0].get(3, 4)
            ),
            ("NM", "GLU", "99LAB", "2345-7")
        );
        assert_eq!(
            (obx[0].value(5), obx[0].get(6, 1), obx[0].get(6, 3)),
            ("182", "mg/dL", "UCUM")
        );
        assert_eq!(
            (obx[0].value(7), obx[0].value(8), obx[0].value(11)),
            ("70-99", "H", "C")
        );
        assert_eq!(
            (obx[1].value(2), obx[1].value(5)),
            ("ST", "Fasting | per patient ^ note")
        );
    }
}
