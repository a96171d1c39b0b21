//! FHIR to HL7v2 scheduling: an Appointment's change written as SIU (S12 booked, S13
//! rescheduled, S14 modified, S15 cancelled, S17 deleted, S26 no-show), the inbound map
//! (`map::appointment`) turned round: placer and filler appointment ids, reason, type, duration,
//! start and end and the filler's status in SCH; the times again in TQ1; the comment as NTE;
//! after PID (and PV1), one resource group of the services (AIS), places (AIL) and people
//! (AIP) taking part. IG: SIU_S12, SCH[Appointment].

use super::adt::{Envelope, dtm, items, msh, pid, pv1, text, xcn};
use super::oru::{cwe, ei};
use super::write::{Seg, message, rep};
use serde_json::Value;

/// The SIU event an Appointment's change is, from its `previous` version (`None`: created).
pub fn trigger(previous: Option<&Value>, current: &Value) -> &'static str {
    let status = |a: &Value| text(a, &["status"]).to_string();
    let now = status(current);
    if previous.is_none_or(|p| status(p) != now) {
        match now.as_str() {
            "cancelled" => return "S15",
            "entered-in-error" => return "S17",
            "noshow" => return "S26",
            _ => {}
        }
    }
    match previous {
        None => "S12",
        Some(p) if p["start"] != current["start"] || p["end"] != current["end"] => "S13",
        Some(_) => "S14",
    }
}

/// SCH-25 (table 0278) from Appointment.status.
fn filler_status(status: &str) -> &'static str {
    match status {
        "booked" => "Booked",
        "cancelled" => "Cancelled",
        "entered-in-error" => "Deleted",
        "fulfilled" => "Complete",
        "noshow" => "Noshow",
        "pending" | "proposed" => "Pending",
        "waitlist" => "Waitlist",
        "arrived" | "checked-in" => "Started",
        _ => "",
    }
}

/// AIP/AIL-12 (table 0278) from a participant's status.
fn taking_part(status: &str) -> &'static str {
    match status {
        "accepted" => "Booked",
        "tentative" => "Pending",
        "needs-action" => "Waitlist",
        "declined" => "Cancelled",
        _ => "",
    }
}

/// What takes part in an appointment besides the patient, each with the resource its actor
/// refers to (a Practitioner, a Location) when that is known.
pub type Taking<'a> = &'a [(Value, Option<Value>)];

/// An SIU message of `trigger` for `appointment`, of `patient` (and `encounter`).
pub fn siu(
    env: &Envelope,
    trigger: &str,
    (patient, encounter): (&Value, Option<&Value>),
    appointment: &Value,
    taking: Taking,
) -> String {
    let a = appointment;
    let ids = &a["identifier"];
    let (start, end) = (dtm(text(a, &["start"])), dtm(text(a, &["end"])));
    let minutes = match &a["minutesDuration"] {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let mut segments = vec![
        msh(env, &["SIU", trigger, "SIU_S12"]),
        Seg::new("SCH")
            .text(1, &ei(ids, "PLAC"))
            .text(2, &ei(ids, "FILL"))
            .reps(7, items(&a["reasonCode"]).iter().take(1).map(cwe).collect())
            .reps(8, vec![cwe(&a["appointmentType"])])
            .text(9, &minutes)
            .comps(10, &[if minutes.is_empty() { "" } else { "min" }])
            .comps(11, &["", "", "", &start, &end])
            .comps(25, &[filler_status(text(a, &["status"]))]),
    ];
    if !start.is_empty() {
        segments.push(Seg::new("TQ1").text(1, "1").text(7, &start).text(8, &end));
    }
    if let Some(comment) = a["comment"].as_str() {
        segments.push(Seg::new("NTE").text(1, "1").text(3, comment));
    }
    segments.push(pid(patient));
    if let Some(e) = encounter {
        segments.push(pv1(e));
    }
    segments.push(Seg::new("RGS").text(1, "1").text(2, "A"));
    for (n, service) in items(&a["serviceType"]).iter().enumerate() {
        segments.push(
            Seg::new("AIS")
                .text(1, &(n + 1).to_string())
                .text(2, "A")
                .reps(3, vec![cwe(service)])
                .text(4, &start),
        );
    }
    let (mut places, mut people) = (Vec::new(), Vec::new());
    for (p, resource) in taking {
        let kind = text(p, &["actor", "reference"])
            .split('/')
            .next()
            .unwrap_or("");
        let role = items(&p["type"]).iter().take(1).map(cwe).collect();
        let status = taking_part(text(p, &["status"]));
        match (kind, resource) {
            ("Location", place) => {
                let name = place
                    .as_ref()
                    .map(|l| text(l, &["name"]))
                    .filter(|n| !n.is_empty())
                    .unwrap_or(text(p, &["actor", "display"]));
                places.push(
                    Seg::new("AIL")
                        .text(1, &(places.len() + 1).to_string())
                        .text(2, "A")
                        .reps(3, vec![rep(&[name])])
                        .reps(4, role)
                        .comps(12, &[status]),
                );
            }
            ("Practitioner" | "PractitionerRole", Some(who)) => people.push(
                Seg::new("AIP")
                    .text(1, &(people.len() + 1).to_string())
                    .text(2, "A")
                    .reps(3, vec![xcn(who)])
                    .reps(4, role)
                    .comps(12, &[status]),
            ),
            _ => {}
        }
    }
    segments.extend(places);
    segments.extend(people);
    message(&segments, &env.delimiters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_appointments_change_is_told_as_its_siu_event() {
        let booked = json!({"status": "booked", "start": "2026-12-07T09:00:00Z"});
        let moved = json!({"status": "booked", "start": "2026-12-08T09:00:00Z"});
        let noted = json!({"status": "booked", "start": "2026-12-07T09:00:00Z", "comment": "x"});
        let cancelled = json!({"status": "cancelled", "start": "2026-12-07T09:00:00Z"});
        assert_eq!(trigger(None, &booked), "S12");
        assert_eq!(trigger(Some(&booked), &moved), "S13");
        assert_eq!(trigger(Some(&booked), &noted), "S14");
        assert_eq!(trigger(Some(&booked), &cancelled), "S15");
        assert_eq!(trigger(Some(&cancelled), &cancelled), "S14");
        assert_eq!(trigger(Some(&booked), &json!({"status": "noshow"})), "S26");
    }
}
