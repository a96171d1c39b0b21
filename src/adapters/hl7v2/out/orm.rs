//! FHIR to HL7v2 orders: a ServiceRequest's change written as ORM^O01 (ORC and OBR, after PID
//! and PV1), the inbound order maps turned round: the order control code told from the change
//! (a new order NW, a cancellation CA, a hold HD, a release RL, another change XO), the order
//! status (ORC-5) from the request's, placer and filler numbers, the service as CWE, the
//! requester as ORC-12 and OBR-16, the time asked for as OBR-7 and the priority as OBR-27.5.

use super::adt::{Envelope, dtm, items, msh, pid, pv1, text};
use super::oru::{cwe, ei};
use super::write::{Rep, Seg, message, rep};
use serde_json::Value;

/// ORC-1 for a ServiceRequest's change from `previous` (`None`: created) to `current`.
pub fn order_control(previous: Option<&Value>, current: &Value) -> &'static str {
    let (before, now) = (
        previous.map(|p| text(p, &["status"])),
        text(current, &["status"]),
    );
    match (before, now) {
        (None, "revoked" | "entered-in-error") => "CA",
        (None, _) => "NW",
        (Some(b), n) if b == n => "XO",
        (_, "revoked" | "entered-in-error") => "CA",
        (_, "on-hold") => "HD",
        (Some("on-hold"), "active") => "RL",
        (_, "completed") => "SC",
        _ => "XO",
    }
}

/// ORC-5 (table 0038) from ServiceRequest.status.
fn order_status(status: &str) -> &'static str {
    match status {
        "active" => "IP",
        "on-hold" => "HD",
        "revoked" => "CA",
        "completed" => "CM",
        "entered-in-error" => "ER",
        _ => "",
    }
}

/// A Practitioner as an XCN: id (NPI first), family, given.
fn xcn(p: &Value) -> Rep {
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

/// An ORM^O01 for `request`'s change (`previous`: its version before), of `patient`, asked by
/// `requester` (its Practitioner) in `encounter`.
pub fn orm(
    env: &Envelope,
    patient: &Value,
    encounter: Option<&Value>,
    (previous, request): (Option<&Value>, &Value),
    requester: Option<&Value>,
) -> String {
    let ids = &request["identifier"];
    let (placer, filler) = (ei(ids, "PLAC"), ei(ids, "FILL"));
    let asked = requester.map(xcn).into_iter().collect::<Vec<_>>();
    let when = match text(request, &["occurrenceDateTime"]) {
        "" => text(&request["occurrencePeriod"], &["start"]),
        t => t,
    };
    let priority = match text(request, &["priority"]) {
        "stat" => "S",
        "asap" => "A",
        "urgent" => "A",
        "routine" => "R",
        _ => "",
    };
    let mut segments = vec![msh(env, &["ORM", "O01", "ORM_O01"]), pid(patient)];
    if let Some(e) = encounter {
        segments.push(pv1(e));
    }
    segments.push(
        Seg::new("ORC")
            .text(1, order_control(previous, request))
            .text(2, &placer)
            .text(3, &filler)
            .text(5, order_status(text(request, &["status"])))
            .text(9, &dtm(text(request, &["authoredOn"])))
            .reps(12, asked.clone()),
    );
    segments.push(
        Seg::new("OBR")
            .text(1, "1")
            .text(2, &placer)
            .text(3, &filler)
            .reps(4, vec![cwe(&request["code"])])
            .text(7, &dtm(when))
            .reps(16, asked)
            .comps(27, &["", "", "", "", priority]),
    );
    for (n, note) in items(&request["note"]).iter().enumerate() {
        segments.push(
            Seg::new("NTE")
                .text(1, &(n + 1).to_string())
                .text(3, text(note, &["text"])),
        );
    }
    message(&segments, &env.delimiters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_order_control_code_says_what_happened_to_the_order() {
        let active = json!({"status": "active"});
        let held = json!({"status": "on-hold"});
        let revoked = json!({"status": "revoked"});
        assert_eq!(order_control(None, &active), "NW");
        assert_eq!(order_control(Some(&active), &held), "HD");
        assert_eq!(order_control(Some(&held), &active), "RL");
        assert_eq!(order_control(Some(&active), &revoked), "CA");
        assert_eq!(order_control(Some(&active), &active), "XO");
        assert_eq!(
            order_control(Some(&active), &json!({"status": "completed"})),
            "SC"
        );
    }
}
