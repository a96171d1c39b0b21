//! FHIR to HL7v2 ADT (A01 admit, A02 transfer, A03 discharge, A04 register, A08 update, ...):
//! a Patient and, when there is one, its Encounter, written as MSH, EVN, PID and PV1 by the
//! v2-to-FHIR IG's maps turned round: identifiers with their assigning authority
//! (`identity::Systems::authority_of`), codes by the IG's tables (`codes::v2_code`), times in
//! v2's form with their offset.

use super::super::codes;
use super::super::identity::Systems;
use super::super::message::Delimiters;
use super::oru::obx;
use super::write::{Rep, Seg, message, rep};
use serde_json::Value;

/// Who sends, to whom, and the message's own facts (MSH).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub control_id: String,
    /// When the message is made (FHIR instant).
    pub at: String,
    pub version: String,
    pub delimiters: Delimiters,
}

/// A FHIR date, dateTime or instant as v2's DTM: digits to the precision given, with the
/// offset when the time has one (`2026-11-25T11:30:00+01:00` -> `20261125113000+0100`).
pub fn dtm(fhir: &str) -> String {
    let (stamp, offset) = match fhir.find(['Z', '+']).or_else(|| {
        // a minus after the date's own is an offset's
        fhir.get(10..).and_then(|t| t.find('-')).map(|i| i + 10)
    }) {
        Some(i) => (&fhir[..i], &fhir[i..]),
        None => (fhir, ""),
    };
    let mut out: String = stamp
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if let Some(fraction) = stamp.split_once('.').map(|(_, f)| f) {
        out.push('.');
        out.push_str(fraction);
    }
    match offset {
        "" => {}
        "Z" => out.push_str("+0000"),
        o => out.extend(o.chars().filter(|c| *c != ':')),
    }
    out
}

/// The string at `path` (keys, or indexes of arrays), else empty.
pub(super) fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*k],
        })
        .as_str()
        .unwrap_or("")
}

/// The items of an array, else none.
pub(super) fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// An Identifier as a CX: value, authority (HD as subcomponents), type code.
pub(super) fn cx(id: &Value) -> Rep {
    let (namespace, universal, kind) = Systems::get().authority_of(text(id, &["system"]));
    vec![
        vec![text(id, &["value"]).to_string()],
        vec![String::new()],
        vec![String::new()],
        vec![namespace, universal, kind],
        vec![text(id, &["type", "coding", "0", "code"]).to_string()],
    ]
}

/// A HumanName as an XPN: family, given, further given names, suffix, prefix, degree, use.
fn xpn(name: &Value) -> Rep {
    let given: Vec<&str> = items(&name["given"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let more = given.get(1..).map(|g| g.join(" ")).unwrap_or_default();
    let join = |k: &str| {
        items(&name[k])
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let name_type = match text(name, &["use"]) {
        "official" | "usual" => "L",
        "nickname" => "N",
        "maiden" => "M",
        "anonymous" => "S",
        _ => "",
    };
    rep(&[
        text(name, &["family"]),
        given.first().copied().unwrap_or(""),
        &more,
        &join("suffix"),
        &join("prefix"),
        "",
        name_type,
    ])
}

/// An Address as an XAD: lines, city, state, postal code, country, type.
fn xad(a: &Value) -> Rep {
    let kind = match text(a, &["use"]) {
        "home" => "H",
        "work" => "O",
        "temp" => "C",
        "old" => "BA",
        _ => "",
    };
    rep(&[
        text(a, &["line", "0"]),
        text(a, &["line", "1"]),
        text(a, &["city"]),
        text(a, &["state"]),
        text(a, &["postalCode"]),
        text(a, &["country"]),
        kind,
    ])
}

/// A ContactPoint as an XTN: (number), use, equipment, email.
fn xtn(t: &Value) -> Rep {
    let value = text(t, &["value"]);
    let use_ = match text(t, &["use"]) {
        "work" => "WPN",
        _ => "PRN",
    };
    match text(t, &["system"]) {
        "email" => rep(&["", "NET", "Internet", value]),
        "fax" => rep(&[value, use_, "FX"]),
        _ if text(t, &["use"]) == "mobile" => rep(&[value, "PRN", "CP"]),
        _ => rep(&[value, use_, "PH"]),
    }
}

/// A Practitioner as an XCN: id (NPI first), family, given.
pub(super) fn xcn(p: &Value) -> Rep {
    let id = items(&p["identifier"])
        .iter()
        .find(|i| i["system"] == "http://hl7.org/fhir/sid/us-npi")
        .or_else(|| items(&p["identifier"]).first())
        .map(|i| text(i, &["value"]))
        .unwrap_or("");
    let name = items(&p["name"]).first().cloned().unwrap_or_default();
    let given = items(&name["given"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or("");
    rep(&[id, text(&name, &["family"]), given])
}

/// PID from a Patient.
pub fn pid(patient: &Value) -> Seg {
    let sex = codes::v2_code(
        "AdministrativeSex",
        Some("http://hl7.org/fhir/administrative-gender"),
        text(patient, &["gender"]),
    )
    .unwrap_or("");
    let deceased = match &patient["deceasedDateTime"] {
        Value::String(at) => (dtm(at), "Y"),
        _ if patient["deceasedBoolean"] == true => (String::new(), "Y"),
        _ => (String::new(), ""),
    };
    Seg::new("PID")
        .text(1, "1")
        .reps(3, items(&patient["identifier"]).iter().map(cx).collect())
        .reps(5, items(&patient["name"]).iter().map(xpn).collect())
        .text(7, &dtm(text(patient, &["birthDate"])))
        .text(8, sex)
        .reps(11, items(&patient["address"]).iter().map(xad).collect())
        .reps(13, items(&patient["telecom"]).iter().map(xtn).collect())
        .text(29, &deceased.0)
        .text(30, deceased.1)
}

/// PV1 from an Encounter.
pub fn pv1(encounter: &Value) -> Seg {
    let class = codes::v2_code(
        "PatientClass[EncounterClass]",
        None,
        text(encounter, &["class", "code"]),
    )
    .unwrap_or("U");
    let location = items(&encounter["location"])
        .iter()
        .find(|l| l["status"] != "completed")
        .map(|l| text(l, &["location", "display"]))
        .unwrap_or("");
    let attending: Vec<Rep> = items(&encounter["participant"])
        .iter()
        .filter(|p| text(p, &["type", "0", "coding", "0", "code"]) == "ATND")
        .map(|p| {
            rep(&[
                text(p, &["individual", "identifier", "value"]),
                text(p, &["individual", "display"]),
            ])
        })
        .collect();
    Seg::new("PV1")
        .text(1, "1")
        .text(2, class)
        .comps(3, &[location])
        .reps(7, attending)
        .reps(
            19,
            items(&encounter["identifier"])
                .iter()
                .take(1)
                .map(cx)
                .collect(),
        )
        .text(44, &dtm(text(encounter, &["period", "start"])))
        .text(45, &dtm(text(encounter, &["period", "end"])))
}

/// The ADT event an Encounter's change is, told by what changed between its `previous` and
/// `current` versions (`None`: created; deleted): arriving for an inpatient stay is an
/// admission (A01), for anything else a registration (A04); a move of its current location a
/// transfer (A02); finishing a discharge (A03); cancelling or deleting an encounter under way
/// a cancelled admission (A11); finished again under way a cancelled discharge (A13); any
/// other change an update (A08). `None`: no ADT event (a planned encounter, say).
pub fn encounter_trigger(
    previous: Option<&Value>,
    current: Option<&Value>,
) -> Option<&'static str> {
    const UNDER_WAY: [&str; 4] = ["arrived", "triaged", "in-progress", "onleave"];
    const ENDED: [&str; 2] = ["cancelled", "entered-in-error"];
    fn status(e: Option<&Value>) -> &str {
        e.map(|e| text(e, &["status"])).unwrap_or("")
    }
    let inpatient = |e: &Value| matches!(text(e, &["class", "code"]), "IMP" | "ACUTE" | "NONAC");
    let place = |e: &Value| {
        items(&e["location"])
            .iter()
            .find(|l| l["status"] != "completed")
            .map(|l| l["location"].clone())
    };
    let (before, now) = (status(previous), status(current));
    let arrival = |e: &Value| if inpatient(e) { "A01" } else { "A04" };
    match (previous, current) {
        (_, None) => UNDER_WAY.contains(&before).then_some("A11"),
        (None, Some(c)) if UNDER_WAY.contains(&now) => Some(arrival(c)),
        (None, Some(_)) if now == "finished" => Some("A03"),
        (None, Some(_)) => None,
        (Some(_), Some(_)) if before != now && now == "finished" => Some("A03"),
        (Some(_), Some(_)) if before != now && ENDED.contains(&now) => {
            UNDER_WAY.contains(&before).then_some("A11")
        }
        (Some(_), Some(_)) if before == "finished" && UNDER_WAY.contains(&now) => Some("A13"),
        (Some(_), Some(c)) if !UNDER_WAY.contains(&before) && UNDER_WAY.contains(&now) => {
            Some(arrival(c))
        }
        (Some(p), Some(c)) if UNDER_WAY.contains(&now) && !inpatient(p) && inpatient(c) => {
            Some("A01")
        }
        (Some(p), Some(c)) if UNDER_WAY.contains(&now) && place(p) != place(c) => Some("A02"),
        (Some(_), Some(_)) if now == "planned" || ENDED.contains(&now) => None,
        (Some(_), Some(_)) => Some("A08"),
    }
}

/// The MSH of a message of `kind` (`ADT^A01^ADT_A01` as components).
pub fn msh(env: &Envelope, kind: &[&str]) -> Seg {
    Seg::new("MSH")
        .text(3, &env.sending_application)
        .text(4, &env.sending_facility)
        .text(5, &env.receiving_application)
        .text(6, &env.receiving_facility)
        .text(7, &dtm(&env.at))
        .comps(9, kind)
        .text(10, &env.control_id)
        .text(11, "P")
        .text(12, &env.version)
}

/// An ADT message of `trigger` for `patient` (and its `encounter`), with what was observed
/// of the patient (height, weight: `observed`) as OBX.
pub fn adt(
    env: &Envelope,
    trigger: &str,
    (patient, encounter): (&Value, Option<&Value>),
    observed: &[Value],
) -> String {
    let structure = match trigger {
        "A01" | "A04" | "A08" | "A13" => "ADT_A01",
        "A02" => "ADT_A02",
        "A03" => "ADT_A03",
        "A11" => "ADT_A09",
        "A28" | "A31" => "ADT_A05",
        _ => "ADT_A01",
    };
    let mut segments = vec![
        msh(env, &["ADT", trigger, structure]),
        Seg::new("EVN").text(1, trigger).text(2, &dtm(&env.at)),
        pid(patient),
    ];
    segments.push(match encounter {
        Some(e) => pv1(e),
        // PV1 is required: a patient without a visit is class N (not applicable)
        None => Seg::new("PV1").text(1, "1").text(2, "N"),
    });
    segments.extend(observed.iter().enumerate().map(|(n, o)| obx(n + 1, o)));
    message(&segments, &env.delimiters)
}

/// An ADT^A40 (merge patient, by identifier list): `survivor` as PID, the `prior` records
/// merged into it as MRG (their identifiers and names), one PID and MRG pair each.
pub fn merge(env: &Envelope, survivor: &Value, prior: &[Value]) -> String {
    let mut segments = vec![
        msh(env, &["ADT", "A40", "ADT_A39"]),
        Seg::new("EVN").text(1, "A40").text(2, &dtm(&env.at)),
    ];
    for p in prior {
        segments.push(pid(survivor));
        segments.push(
            Seg::new("MRG")
                .reps(1, items(&p["identifier"]).iter().map(cx).collect())
                .reps(7, items(&p["name"]).iter().take(1).map(xpn).collect()),
        );
    }
    message(&segments, &env.delimiters)
}

#[cfg(test)]
mod tests {
    use super::super::super::message::parse;
    use super::*;
    use serde_json::json;

    fn envelope() -> Envelope {
        Envelope {
            sending_application: "EMRSYNC".into(),
            sending_facility: "HUB".into(),
            receiving_application: "ED".into(),
            receiving_facility: "GOOD HEALTH".into(),
            control_id: "OUT-1".into(),
            at: "2026-11-25T12:00:00Z".into(),
            version: "2.5.1".into(),
            delimiters: Delimiters::default(),
        }
    }

    #[test]
    fn times_keep_their_precision_and_offset() {
        assert_eq!(dtm("1980-02-14"), "19800214");
        assert_eq!(dtm("2026-11"), "202611");
        assert_eq!(dtm("2026-11-25T11:30:00Z"), "20261125113000+0000");
        assert_eq!(
            dtm("2026-11-25T11:30:00.25-05:00"),
            "20261125113000.25-0500"
        );
        assert_eq!(dtm(""), "");
    }

    #[test]
    fn an_admission_is_written_as_the_inbound_side_reads_it() {
        let patient = json!({"resourceType": "Patient",
            "identifier": [
                {"system": "urn:oid:1.2.840.114350.1", "value": "MRN1",
                 "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
            "name": [{"use": "official", "family": "Everyman", "given": ["Adam", "Q"]}],
            "birthDate": "1980-02-14", "gender": "male",
            "address": [{"use": "home", "line": ["12 Main St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}],
            "telecom": [{"system": "phone", "value": "217-555-1234", "use": "home"},
                        {"system": "email", "value": "adam@example.org"}]});
        let encounter = json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "identifier": [{"system": "urn:oid:1.2.840.114350.1", "value": "V1"}],
            "location": [{"location": {"display": "4W-401-B"}, "status": "active"}],
            "period": {"start": "2026-11-25T11:30:00Z"}});
        let text = adt(&envelope(), "A01", (&patient, Some(&encounter)), &[]);
        let m = parse(&text).unwrap();
        let h = m.header();
        assert_eq!(
            (h.message_type.as_str(), h.trigger.as_str()),
            ("ADT", "A01")
        );
        let pid = m.first("PID").unwrap();
        let mrn = pid.field(3).first();
        assert_eq!(
            (mrn.get(1), mrn.sub(4, 2), mrn.sub(4, 3), mrn.get(5)),
            ("MRN1", "1.2.840.114350.1", "ISO", "MR")
        );
        let ssn = pid.field(3).repetitions().nth(1).unwrap();
        assert_eq!((ssn.get(1), ssn.get(4)), ("123-45-6789", "SSA"));
        assert_eq!(
            (pid.get(5, 1), pid.get(5, 2), pid.get(5, 3)),
            ("Everyman", "Adam", "Q")
        );
        assert_eq!((pid.value(7), pid.value(8)), ("19800214", "M"));
        assert_eq!(
            (pid.get(11, 3), pid.get(11, 5), pid.get(11, 7)),
            ("Springfield", "62701", "H")
        );
        let email = pid.field(13).repetitions().nth(1).unwrap();
        assert_eq!(email.get(4), "adam@example.org");
        let pv1 = m.first("PV1").unwrap();
        assert_eq!(
            (pv1.value(2), pv1.value(3), pv1.value(19)),
            ("I", "4W-401-B", "V1")
        );
        assert_eq!(pv1.value(44), "20261125113000+0000");
    }

    #[test]
    fn an_encounters_change_is_told_as_its_adt_event() {
        let enc = |status: &str, class: &str, bed: &str| {
            json!({"status": status, "class": {"code": class},
                   "location": [{"location": {"display": bed}, "status": "active"}]})
        };
        let ed = enc("arrived", "EMER", "ED-1");
        let admitted = enc("in-progress", "IMP", "4W-1");
        let moved = enc("in-progress", "IMP", "4W-2");
        let done = enc("finished", "IMP", "4W-2");
        let t = |p: Option<&Value>, c: Option<&Value>| encounter_trigger(p, c);
        assert_eq!(t(None, Some(&ed)), Some("A04"));
        assert_eq!(t(None, Some(&admitted)), Some("A01"));
        assert_eq!(t(Some(&ed), Some(&admitted)), Some("A01"));
        assert_eq!(t(Some(&admitted), Some(&moved)), Some("A02"));
        assert_eq!(t(Some(&moved), Some(&done)), Some("A03"));
        assert_eq!(t(Some(&done), Some(&moved)), Some("A13"));
        assert_eq!(
            t(Some(&moved), Some(&enc("cancelled", "IMP", "4W-2"))),
            Some("A11")
        );
        assert_eq!(t(Some(&moved), None), Some("A11"));
        let mut renamed = moved.clone();
        renamed["period"] = json!({"start": "2026-12-06"});
        assert_eq!(t(Some(&moved), Some(&renamed)), Some("A08"));
        assert_eq!(t(None, Some(&enc("planned", "IMP", ""))), None);
    }
}
