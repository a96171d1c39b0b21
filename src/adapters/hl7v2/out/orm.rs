//! FHIR to HL7v2 orders: a ServiceRequest's change written as ORM^O01 (ORC and OBR, after PID
//! and PV1), the inbound order maps turned round: the order control code told from the change
//! (a new order NW, a cancellation CA, a hold HD, a release RL, another change XO), the order
//! status (ORC-5) from the request's, placer and filler numbers, the service as CWE, the
//! requester as ORC-12 and OBR-16, the time asked for as OBR-7 and the priority as OBR-27.5.

use super::adt::{Envelope, dtm, items, msh, pid, pv1, text, xcn};
use super::oru::{cwe, ei};
use super::pharmacy::priority;
use super::write::{Seg, message};
use serde_json::Value;

/// ORC-1 for an order's change (a ServiceRequest's or a MedicationRequest's) from `previous`
/// (`None`: created) to `current`.
pub fn order_control(previous: Option<&Value>, current: &Value) -> &'static str {
    let (before, now) = (
        previous.map(|p| text(p, &["status"])),
        text(current, &["status"]),
    );
    match (before, now) {
        (None, "revoked" | "cancelled" | "entered-in-error") => "CA",
        (None, "stopped") => "DC",
        (None, _) => "NW",
        (Some(b), n) if b == n => "XO",
        (_, "revoked" | "cancelled" | "entered-in-error") => "CA",
        (_, "stopped") => "DC",
        (_, "on-hold") => "HD",
        (Some("on-hold"), "active") => "RL",
        (_, "completed") => "SC",
        _ => "XO",
    }
}

/// ORC-5 (table 0038) from ServiceRequest.status or MedicationRequest.status.
fn order_status(status: &str) -> &'static str {
    match status {
        "active" => "IP",
        "on-hold" => "HD",
        "revoked" | "cancelled" => "CA",
        "stopped" => "DC",
        "completed" => "CM",
        "entered-in-error" => "ER",
        _ => "",
    }
}

/// One order of a message: its version before the change (`None`: created), its version
/// now, and the Practitioner who asked for it.
pub struct Order {
    pub previous: Option<Value>,
    pub current: Value,
    pub requester: Option<Value>,
}

/// ORC of an order's change: its control code and status, placer and filler numbers, when it
/// was written and who asked for it.
pub(super) fn orc(o: &Order) -> Seg {
    let (request, ids) = (&o.current, &o.current["identifier"]);
    Seg::new("ORC")
        .text(1, order_control(o.previous.as_ref(), request))
        .text(2, &ei(ids, "PLAC"))
        .text(3, &ei(ids, "FILL"))
        .text(5, order_status(text(request, &["status"])))
        .text(9, &dtm(text(request, &["authoredOn"])))
        .reps(12, o.requester.iter().map(xcn).collect())
}

/// NTE segments of a resource's notes.
pub(super) fn notes(resource: &Value) -> Vec<Seg> {
    items(&resource["note"])
        .iter()
        .enumerate()
        .map(|(n, note)| {
            Seg::new("NTE")
                .text(1, &(n + 1).to_string())
                .text(3, text(note, &["text"]))
        })
        .collect()
}

/// An order message of `kind` (ORM^O01, or OML^O21 for a target on v2.5 and later, where
/// ORM is withdrawn; the segments it carries here are the same) for `orders`' changes, of
/// `patient` in `encounter`: an ORC, OBR and NTE group per order.
pub fn orm(
    env: &Envelope,
    kind: &[&str],
    (patient, encounter): (&Value, Option<&Value>),
    orders: &[Order],
) -> String {
    let mut segments = vec![msh(env, kind), pid(patient)];
    if let Some(e) = encounter {
        segments.push(pv1(e));
    }
    for (n, o) in orders.iter().enumerate() {
        let (request, ids) = (&o.current, &o.current["identifier"]);
        let when = match text(request, &["occurrenceDateTime"]) {
            "" => text(&request["occurrencePeriod"], &["start"]),
            t => t,
        };
        segments.push(orc(o));
        segments.push(
            Seg::new("OBR")
                .text(1, &(n + 1).to_string())
                .text(2, &ei(ids, "PLAC"))
                .text(3, &ei(ids, "FILL"))
                .reps(4, vec![cwe(&request["code"])])
                .text(7, &dtm(when))
                .reps(16, o.requester.iter().map(xcn).collect())
                .comps(27, &["", "", "", "", priority(request)]),
        );
        segments.extend(notes(request));
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
