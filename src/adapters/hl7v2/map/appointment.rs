//! SIU (scheduling): S12 new, S13 rescheduled, S14 modified, S15 cancelled, S17 deleted, S26
//! no-show -> the Appointment SCH describes, for the patient of PID, with its services (AIS),
//! people (AIP -> Practitioner) and places (AIL -> Location). IG: SIU_S12, SCH[Appointment].
//!
//! Identity: the filler's appointment id (SCH-2, which the scheduling system keeps for the
//! appointment's life), else the placer's (SCH-1).

use super::super::datatypes::{codeable, date_time, instant, minutes, put, shifted};
use super::super::message::Segment;
use super::order::add_once;
use super::{Context, Resource, Unmapped, adt, failed, unsupported};
use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{Map, Value, json};

const TRIGGERS: [&str; 6] = ["S12", "S13", "S14", "S15", "S17", "S26"];

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    if !TRIGGERS.contains(&trigger) {
        return Err(unsupported(
            "201",
            format!(
                "SIU trigger event '{trigger}' is not one this server takes ({})",
                TRIGGERS.join(", ")
            ),
        ));
    }
    let sch = cx
        .msg
        .first("SCH")
        .ok_or_else(|| failed("SCH", "100", "an SIU message needs an SCH segment"))?;
    let (patient, mut out) = super::patient::with_allergies(cx)?;
    let (key_field, key) = [(2, sch.field(2).first()), (1, sch.field(1).first())]
        .into_iter()
        .find(|(_, ei)| !ei.get(1).trim().is_empty())
        .ok_or_else(|| {
            failed(
                "SCH-2",
                "101",
                "neither SCH-2 (filler appointment id) nor SCH-1 (placer's) is given",
            )
        })?;
    let system = cx.systems.for_authority(
        key.get(2),
        key.get(3),
        key.get(4),
        &cx.header.sending_facility,
    );
    let id = cx.stable_id(
        "Appointment",
        &[&key_field.to_string(), &system, key.get(1).trim()],
    );
    let mut a = Map::new();
    a.insert("resourceType".into(), json!("Appointment"));
    a.insert("id".into(), json!(id));
    let identifiers: Vec<Value> = [(1, "PLAC", "Placer Identifier"), (2, "FILL", "Filler Identifier")]
        .into_iter()
        .filter(|(n, _, _)| !sch.get(*n, 1).trim().is_empty())
        .map(|(n, code, display)| {
            let ei = sch.field(n).first();
            json!({
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                     "code": code, "display": display}]},
                "system": cx.systems.for_authority(ei.get(2), ei.get(3), ei.get(4), &cx.header.sending_facility),
                "value": ei.get(1).trim(),
            })
        })
        .collect();
    put(&mut a, "identifier", Value::Array(identifiers));
    let status = status(cx, sch, trigger);
    a.insert("status".into(), json!(status));
    if let Some(t) = codeable(sch.field(8).first()) {
        a.insert("appointmentType".into(), t);
    }
    let services: Vec<Value> = cx
        .msg
        .all("AIS")
        .filter_map(|ais| codeable(ais.field(3).first()))
        .collect();
    put(&mut a, "serviceType", Value::Array(services));
    if let Some(reason) = codeable(sch.field(7).first()) {
        a.insert("reasonCode".into(), json!([reason]));
    }
    let times = when(cx, sch);
    let starts = times.map(|(s, _)| s.to_rfc3339_opts(SecondsFormat::Secs, true));
    match times {
        Some((start, end)) => {
            let minutes = (end - start).num_minutes();
            a.insert(
                "start".into(),
                json!(start.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            a.insert(
                "end".into(),
                json!(end.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            if minutes > 0 {
                a.insert("minutesDuration".into(), json!(minutes));
            }
        }
        // only a proposed, cancelled or wait-listed appointment may lack its time
        None if !matches!(
            status,
            "proposed" | "cancelled" | "waitlist" | "entered-in-error"
        ) =>
        {
            return Err(failed(
                "TQ1-7",
                "101",
                "the appointment's start and end are not given (TQ1-7/8, SCH-11, or AIS-4 with a duration)",
            ));
        }
        None => {}
    }
    let comment: Vec<String> = notes_after(cx, "SCH");
    put(&mut a, "comment", json!(comment.join("\n")));
    let taking_part = if matches!(status, "proposed" | "pending" | "waitlist") {
        "needs-action"
    } else {
        "accepted"
    };
    let mut participants = vec![json!({"actor": {"reference": patient.reference()},
                                       "required": "required", "status": taking_part})];
    for aip in cx.msg.all("AIP") {
        if let Some(pr) = adt::practitioner(cx, aip.field(3).first()) {
            let mut p = Map::new();
            if let Some(role) = codeable(aip.field(4).first()) {
                p.insert("type".into(), json!([role]));
            }
            p.insert("actor".into(), json!({"reference": pr.reference()}));
            let own = taking_part_status(aip.get(12, 1));
            p.insert("status".into(), json!(own.unwrap_or(taking_part)));
            put(
                &mut p,
                "period",
                taking_part_when(cx, aip, 6, starts.as_deref()),
            );
            participants.push(Value::Object(p));
            add_once(&mut out, pr);
        }
    }
    for ail in cx.msg.all("AIL") {
        if let Some(loc) = adt::location(cx, ail.field(3).first()) {
            let own = taking_part_status(ail.get(12, 1)).unwrap_or(taking_part);
            let mut p = json!({"actor": {"reference": loc.reference()}, "status": own});
            if let Some(when) = taking_part_when(cx, ail, 6, starts.as_deref()).as_object() {
                p["period"] = Value::Object(when.clone());
            }
            participants.push(p);
            add_once(&mut out, loc);
        }
    }
    // a general resource (AIG: a room, a device, a team), named by its id and text
    for aig in cx.msg.all("AIG") {
        let resource = aig.field(3).first();
        let (code, text) = (resource.get(1).trim(), resource.get(2).trim());
        if code.is_empty() && text.is_empty() {
            continue;
        }
        let mut actor = Map::new();
        if !code.is_empty() {
            actor.insert(
                "identifier".into(),
                json!({"system": cx.systems.for_authority(resource.get(3), "", "", &cx.header.sending_facility),
                       "value": code}),
            );
        }
        put(&mut actor, "display", json!(text));
        let mut p = Map::new();
        if let Some(kind) = codeable(aig.field(4).first()) {
            p.insert("type".into(), json!([kind]));
        }
        p.insert("actor".into(), Value::Object(actor));
        let own = taking_part_status(aig.get(14, 1));
        p.insert("status".into(), json!(own.unwrap_or(taking_part)));
        put(
            &mut p,
            "period",
            taking_part_when(cx, aig, 8, starts.as_deref()),
        );
        participants.push(Value::Object(p));
    }
    // the contacts at the placer (SCH-12) and the filler (SCH-16), and who entered it (SCH-20)
    for (field, kind) in [
        (12, json!({"text": "placer contact"})),
        (16, json!({"text": "filler contact"})),
        (
            20,
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "enterer", "display": "Enterer"}]}),
        ),
    ] {
        if let Some(pr) = adt::practitioner(cx, sch.field(field).first()) {
            participants.push(
                json!({"type": [kind], "actor": {"reference": pr.reference()},
                                     "status": "accepted"}),
            );
            add_once(&mut out, pr);
        }
    }
    // the order the appointment is for (SCH-26 placer's number, else SCH-27 filler's): the
    // ServiceRequest an ORM/OML with that number makes
    if let Some(order) = [26, 27]
        .into_iter()
        .map(|f| sch.field(f).first())
        .find(|ei| !ei.get(1).trim().is_empty())
    {
        let kind = if sch.get(26, 1).trim().is_empty() {
            "filler"
        } else {
            "placer"
        };
        let target = cx.stable_id(
            "ServiceRequest",
            &[kind, &super::order::system(cx, order), order.get(1).trim()],
        );
        a.insert(
            "basedOn".into(),
            json!([{"reference": format!("ServiceRequest/{target}")}]),
        );
    }
    a.insert("participant".into(), Value::Array(participants));
    out.push(Resource {
        rtype: "Appointment",
        id,
        body: Value::Object(a),
    });
    Ok(out)
}

/// SCH-25 (filler status, HL7 table 0278) when given, else the first service's (AIS-10), else
/// what the trigger says.
fn status(cx: &Context, sch: &Segment, trigger: &str) -> &'static str {
    let said = [
        Some(sch.get(25, 1)),
        cx.msg.first("AIS").map(|a| a.get(10, 1)),
    ]
    .into_iter()
    .flatten()
    .find(|c| !c.trim().is_empty())
    .unwrap_or_default();
    match said.trim().to_ascii_lowercase().as_str() {
        "booked" | "overbook" | "blocked" => return "booked",
        "cancelled" => return "cancelled",
        "deleted" => return "entered-in-error",
        "complete" => return "fulfilled",
        "noshow" => return "noshow",
        "pending" => return "pending",
        "waitlist" => return "waitlist",
        "started" => return "arrived",
        _ => {}
    }
    match trigger {
        "S15" => "cancelled",
        "S17" => "entered-in-error",
        "S26" => "noshow",
        _ => "booked",
    }
}

/// Start and end: TQ1-7 and TQ1-8 (v2.5 on), else SCH-11's start and end, else the first
/// AIS's start plus its duration; an end may also come from a start and SCH-9's duration.
fn when(cx: &Context, sch: &Segment) -> Option<(DateTime<FixedOffset>, DateTime<FixedOffset>)> {
    let at = |s: &str| {
        let t = date_time(s, cx.zone)?;
        DateTime::parse_from_rfc3339(&instant(&t)).ok()
    };
    let tq1 = cx.msg.first("TQ1");
    let ais = cx.msg.first("AIS");
    let start = tq1
        .and_then(|t| at(t.value(7)))
        .or_else(|| at(sch.get(11, 4)))
        .or_else(|| ais.and_then(|s| at(s.value(4))))?;
    let end = tq1
        .and_then(|t| at(t.value(8)))
        .or_else(|| at(sch.get(11, 5)))
        .or_else(|| {
            let minutes = ais
                .and_then(|s| minutes(s.value(7), s.get(8, 1)))
                .or_else(|| minutes(sch.value(9), sch.get(10, 1)))?;
            // checked: a sender's duration may run past any calendar
            start.checked_add_signed(chrono::TimeDelta::try_minutes(minutes)?)
        })?;
    (end >= start).then_some((start, end))
}

/// When a resource of an AIP, AIL or AIG segment takes part: its start (field `at`), else the
/// appointment's start (`base`) moved by its offset (the next field, in the units of the one
/// after), and its duration (the field after those, in the units of the next) as a period. An
/// end past the calendar (an absurd duration) is left out, the start kept.
fn taking_part_when(cx: &Context, seg: &Segment, at: usize, base: Option<&str>) -> Value {
    let offset = || minutes(seg.value(at + 1), seg.get(at + 2, 1));
    let start = date_time(seg.value(at), cx.zone).or_else(|| shifted(&instant(base?), offset()?));
    let Some(start) = start else {
        return Value::Null;
    };
    let end =
        minutes(seg.value(at + 3), seg.get(at + 4, 1)).and_then(|m| shifted(&instant(&start), m));
    match end {
        Some(end) => json!({"start": start, "end": end}),
        None => json!({"start": start}),
    }
}

/// A resource's filler status (AIP-12, AIL-12, AIG-14; HL7 table 0278) -> how it takes part.
fn taking_part_status(code: &str) -> Option<&'static str> {
    match code.trim().to_ascii_lowercase().as_str() {
        "booked" | "started" | "complete" | "overbook" | "blocked" => Some("accepted"),
        "pending" => Some("tentative"),
        "waitlist" => Some("needs-action"),
        "cancelled" | "discontinued" | "deleted" | "noshow" => Some("declined"),
        _ => None,
    }
}

/// The text of the NTE segments right after the first `id` segment.
fn notes_after(cx: &Context, id: &str) -> Vec<String> {
    cx.msg
        .segments
        .iter()
        .skip_while(|s| s.id != id)
        .skip(1)
        .filter(|s| s.id != "TQ1")
        .take_while(|s| s.id == "NTE")
        .map(|n| n.value(3).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::map;
    use crate::adapters::hl7v2::message::parse;

    fn siu(sch: &str) -> String {
        format!(
            "MSH|^~\\&|S|F|R|RF|20240101||SIU^S12|1|P|2.5\rSCH|{sch}\rPID|1||M1^^^F^MR||Doe^Jo\r"
        )
    }

    #[test]
    fn an_absurd_duration_is_an_error_not_a_panic() {
        // start in SCH-11, no end, a duration far past any calendar (and one that is no number)
        for duration in ["999999999999|min", "inf|min", "1e300|h"] {
            let text = siu(&format!("P1|F1|||||||{duration}|^^^20240101100000"));
            let mapped = map(&parse(&text).unwrap(), b"", Default::default());
            assert!(mapped.is_err(), "{duration}: {mapped:?}");
        }
        // a sensible one gives the end
        let text = siu("P1|F1|||||||30|min|^^^20240101100000");
        let a = map(&parse(&text).unwrap(), b"", Default::default())
            .unwrap()
            .resources
            .pop()
            .unwrap();
        assert_eq!(a.body["end"], "2024-01-01T10:30:00Z");
        assert_eq!(a.body["minutesDuration"], 30);
    }
}
