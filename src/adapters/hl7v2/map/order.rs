//! What the order messages share (ORM, OML, RDE, RAS, VXU): the order items a message holds,
//! each with the common order segment (ORC) it comes under, the order's business identity, and
//! its status from the order control code (ORC-1) and order status (ORC-5).
//! IG: the ORC segment map and the OrderControlCode and OrderStatus concept maps.

use super::super::datatypes::{identifier, instant, minutes, put, said, shifted};
use super::super::message::{Rep, Segment};
use super::{Context, Resource, adt};
use serde_json::{Map, Value, json};

/// One item of an order message: its main segment (OBR, RXE, RXA...), the ORC it comes
/// under (if any), the segments between the two (an RDE's TQ1, RXO and RXR), and those that
/// follow it up to the next item (NTE, RXR, OBX, TQ1...).
pub struct Item<'a> {
    pub orc: Option<&'a Segment>,
    pub main: &'a Segment,
    before: Vec<&'a Segment>,
    details: Vec<&'a Segment>,
}

impl<'a> Item<'a> {
    /// The segments `id` after the main segment.
    pub fn all(&self, id: &'a str) -> impl Iterator<Item = &'a Segment> + '_ {
        self.details.iter().copied().filter(move |s| s.id == id)
    }

    /// The first segment `id` after the main segment, else between the ORC and it.
    pub fn first(&self, id: &str) -> Option<&'a Segment> {
        let after = self.details.iter().copied().find(|s| s.id == id);
        after.or_else(|| self.before.iter().copied().find(|s| s.id == id))
    }

    /// Whether the ORC names the order (a placer or filler number): there is an order to
    /// point at, and to key by.
    pub fn names_order(&self) -> bool {
        self.orc
            .is_some_and(|o| !o.get(2, 1).trim().is_empty() || !o.get(3, 1).trim().is_empty())
    }

    /// ORC field `n`, else the main segment's field `alt` (an OBR repeats the order numbers).
    fn ei(&self, n: usize, alt: Option<usize>) -> Option<Rep<'a>> {
        let from_orc = self.orc.map(|o| o.field(n).first());
        if let Some(r) = from_orc.filter(|r| !r.get(1).trim().is_empty()) {
            return Some(r);
        }
        alt.map(|a| self.main.field(a).first())
            .filter(|r| !r.get(1).trim().is_empty())
    }
}

/// The items of a message whose main segment is `main`, in order. Segments before the first
/// ORC or item (the patient's) belong to none.
pub fn items<'a>(cx: &Context<'a>, main: &str) -> Vec<Item<'a>> {
    let mut out: Vec<Item> = Vec::new();
    let mut orc: Option<&Segment> = None;
    let mut before: Vec<&Segment> = Vec::new();
    let mut open = false;
    for seg in &cx.msg.segments {
        match seg.id.as_str() {
            "ORC" => {
                orc = Some(seg);
                before.clear();
                open = false;
            }
            id if id == main => {
                out.push(Item {
                    orc,
                    main: seg,
                    before: std::mem::take(&mut before),
                    details: Vec::new(),
                });
                open = true;
            }
            // a new patient (a message of several) ends the item and its order
            "PID" => {
                (orc, open) = (None, false);
                before.clear();
            }
            _ if open => out.last_mut().expect("open").details.push(seg),
            _ if orc.is_some() => before.push(seg),
            _ => {}
        }
    }
    out
}

/// The order's identifiers: placer (ORC-2, else the main segment's `placer` field) and
/// filler (ORC-3, else `filler`) order numbers, typed PLAC and FILL.
pub fn identifiers(
    cx: &Context,
    item: &Item,
    placer: Option<usize>,
    filler: Option<usize>,
) -> Vec<Value> {
    // and the placer group number (ORC-4), which groups the orders placed together, and the
    // filler's (ORC-38)
    let mut ids: Vec<Value> = [
        (2, placer, "PLAC", "Placer Identifier"),
        (3, filler, "FILL", "Filler Identifier"),
        (4, None, "PGN", "Placer Group Number"),
        (38, None, "FGN", "Filler Group Number"),
    ]
    .into_iter()
    .filter_map(|(n, alt, code, display)| {
        let ei = item.ei(n, alt)?;
        Some(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                 "code": code, "display": display}]},
            "system": system(cx, ei),
            "value": ei.get(1).trim(),
        }))
    })
    .collect();
    // the alternate placer order number, a CX (OBR-53, else ORC-33): the number another
    // placer system knows the order by
    let from_obr = (item.main.id == "OBR").then(|| item.main.field(53));
    let alternate = from_obr
        .into_iter()
        .chain(item.orc.map(|o| o.field(33)))
        .find(|f| !f.is_empty());
    for cx_rep in alternate.into_iter().flat_map(|f| f.repetitions()) {
        let facility = &cx.header.sending_facility;
        if let Some(mut id) = identifier(cx_rep, cx.systems, facility, cx.zone) {
            id["type"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                            "code": "PLAC", "display": "Placer Identifier"}]});
            ids.push(id);
        }
    }
    ids
}

/// An order number's system: its assigning authority (EI-2 namespace, EI-3 universal id),
/// else the sending facility.
pub fn system(cx: &Context, ei: Rep) -> String {
    cx.systems
        .for_authority(ei.get(2), ei.get(3), ei.get(4), &cx.header.sending_facility)
}

/// Half of an EIP (component `c`: 1 the placer's number, 2 the filler's, each an EI in
/// subcomponents) as a logical reference to the `rtype` it names, by identifier typed `code`
/// (PLAC, FILL); `None` when that half is empty.
pub fn eip_reference(cx: &Context, eip: Rep, c: usize, code: &str, rtype: &str) -> Option<Value> {
    let value = said(eip.sub(c, 1))?.trim();
    let system = cx.systems.for_authority(
        eip.sub(c, 2),
        eip.sub(c, 3),
        eip.sub(c, 4),
        &cx.header.sending_facility,
    );
    Some(json!({"type": rtype, "identifier": {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]},
        "system": system, "value": value}}))
}

/// The stable id of the `rtype` this item makes: by its placer order number (which the
/// ordering system keeps from the first message to the last), else its filler number, else
/// `fallback` (the message and the item's place in it).
pub fn order_id(
    cx: &Context,
    rtype: &str,
    item: &Item,
    placer: Option<usize>,
    filler: Option<usize>,
    fallback: &[&str],
) -> String {
    for (n, alt, kind) in [(2, placer, "placer"), (3, filler, "filler")] {
        if let Some(ei) = item.ei(n, alt) {
            return cx.stable_id(rtype, &[kind, &system(cx, ei), ei.get(1).trim()]);
        }
    }
    let mut key = vec![
        cx.header.sending_facility.as_str(),
        cx.header.sending_application.as_str(),
        cx.header.control_id.as_str(),
    ];
    key.extend_from_slice(fallback);
    cx.stable_id(rtype, &key)
}

/// Where an order stands, in ServiceRequest's terms (MedicationRequest's differ, see
/// `medication_status`): a cancel or hold in ORC-1 says it; otherwise ORC-5, the status the
/// filler reports; otherwise the order is active.
pub fn request_status(orc: Option<&Segment>) -> &'static str {
    let Some(orc) = orc else {
        return "active";
    };
    // The IG maps a CA (cancel request) to active: the request to cancel awaits the filler's
    // answer. Here no filler answers a placer through the hub, so a cancel (or discontinue)
    // ends the order when it arrives: revoked, as the filler's own CA in ORC-5 says.
    match orc.value(1) {
        "CA" | "DC" | "OC" | "CR" | "OD" | "DR" => return "revoked",
        "HD" | "OH" => return "on-hold",
        _ => {}
    }
    match orc.value(5) {
        "CM" => "completed",
        "CA" | "DC" | "RP" => "revoked",
        "HD" => "on-hold",
        "ER" => "entered-in-error",
        _ => "active",
    }
}

/// The same for a MedicationRequest: a discontinued order is stopped, a cancelled one
/// cancelled.
pub fn medication_status(orc: Option<&Segment>) -> &'static str {
    let discontinued = orc.is_some_and(|o| o.value(1) == "DC" || o.value(5) == "DC");
    match request_status(orc) {
        "revoked" if discontinued => "stopped",
        "revoked" => "cancelled",
        other => other,
    }
}

/// What an administration (RXA) came to: RXA-21 (action code) D is an error; RXA-20
/// (completion status, table 0322) RE or NA is not done, PA (partly given) is `partial`.
pub fn administered(rxa: &Segment, partial: &'static str) -> &'static str {
    if rxa.value(21) == "D" {
        return "entered-in-error";
    }
    match rxa.value(20) {
        "RE" | "NA" => "not-done",
        "PA" => partial,
        _ => "completed",
    }
}

/// TQ1 -> Timing (IG TQ1[MedicationRequest], TQ1[ServiceRequest]): the repeat pattern's code
/// (TQ1-3) as text, the start and end (TQ1-7, TQ1-8) as its bounds, else the service
/// duration (TQ1-6) as a bounding duration, the times of day (TQ1-4), the length of each
/// occurrence (TQ1-13) and the total occurrences (TQ1-14) as its count; `Null` when it says
/// none of these.
pub fn timing(cx: &Context, tq1: &Segment) -> Value {
    let mut timing = Map::new();
    if let Some(pattern) = said(tq1.get(3, 1)) {
        timing.insert("code".into(), json!({"text": pattern}));
    }
    let mut repeat = Map::new();
    let mut bounds = Map::new();
    for (field, name, end) in [(7, "TQ1-7", "start"), (8, "TQ1-8", "end")] {
        if let Some(at) = cx.date_time(tq1.value(field), name) {
            bounds.insert(end.into(), json!(at));
        }
    }
    // the service duration (TQ1-6): the bounds' length, or the end (or start) it implies
    let length = tq1.field(6).first();
    let length_minutes = || minutes(length.get(1), length.sub(2, 1));
    match (bounds.get("start").cloned(), bounds.get("end").cloned()) {
        (None, None) => put(&mut repeat, "boundsDuration", duration(length)),
        (Some(start), None) => {
            let end = length_minutes().and_then(|m| shifted(&instant(start.as_str()?), m));
            put(&mut bounds, "end", json!(end));
        }
        (None, Some(end)) => {
            let start = length_minutes().and_then(|m| shifted(&instant(end.as_str()?), -m));
            put(&mut bounds, "start", json!(start));
        }
        (Some(_), Some(_)) => {}
    }
    put(&mut repeat, "boundsPeriod", Value::Object(bounds));
    // the offset from the related event (TQ1-5: relative time), in minutes
    let relative = tq1.field(5).first();
    if let Some(m) = minutes(relative.get(1), relative.sub(2, 1)) {
        repeat.insert("offset".into(), json!(m));
    }
    if let Ok(n) = tq1.value(14).trim().parse::<u32>()
        && n > 0
    {
        repeat.insert("count".into(), json!(n));
    }
    if let Some(d) = duration(tq1.field(13).first()).as_object() {
        repeat.insert("duration".into(), d["value"].clone());
        repeat.insert("durationUnit".into(), d["code"].clone());
    }
    let times: Vec<Value> = tq1
        .field(4)
        .repetitions()
        .filter_map(|t| time_of_day(t.get(1)))
        .map(Value::String)
        .collect();
    put(&mut repeat, "timeOfDay", Value::Array(times));
    put(&mut timing, "repeat", Value::Object(repeat));
    Value::Object(timing)
}

/// A CQ of time (`30^min`) -> a Duration in UCUM's units of time, or `Null`.
fn duration(cq: Rep) -> Value {
    let unit = match cq.sub(2, 1).trim().to_ascii_lowercase().as_str() {
        "s" | "sec" => "s",
        "min" | "m" | "" => "min",
        "h" | "hr" => "h",
        "d" | "day" => "d",
        "wk" | "w" => "wk",
        "mo" => "mo",
        "a" | "y" | "yr" => "a",
        _ => return Value::Null,
    };
    match cq.get(1).trim().parse::<serde_json::Number>() {
        Ok(n) => {
            json!({"value": n, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
        }
        Err(_) => Value::Null,
    }
}

/// A v2 TM (`HHMM[SS]`) -> FHIR time (`HH:MM:SS`), or `None`.
fn time_of_day(tm: &str) -> Option<String> {
    let digits: String = tm.trim().chars().take_while(char::is_ascii_digit).collect();
    let (h, m, s) = match digits.len() {
        4 => (&digits[..2], &digits[2..4], "00"),
        6.. => (&digits[..2], &digits[2..4], &digits[4..6]),
        _ => return None,
    };
    let ok = h < "24" && m < "60" && s < "60";
    ok.then(|| format!("{h}:{m}:{s}"))
}

/// A v2 priority (TQ1-9, TQ-6: table 0485) -> a FHIR request priority.
pub fn priority(code: &str) -> Option<&'static str> {
    match code {
        "S" => Some("stat"),
        "A" | "P" | "C" => Some("asap"),
        "R" | "T" => Some("routine"),
        _ => None,
    }
}

/// ORC-12 (ordering provider), else an OBR's own (OBR-16) -> the requester, and the
/// Practitioner to write.
pub fn requester(cx: &Context, item: &Item) -> Option<Resource> {
    let obr = (item.main.id == "OBR").then_some(item.main);
    item.orc
        .and_then(|o| adt::practitioner(cx, o.field(12).first()))
        .or_else(|| adt::practitioner(cx, obr?.field(16).first()))
}

/// The NTE segments of an item -> Annotations.
pub fn notes(cx: &Context, item: &Item) -> Vec<Value> {
    item.all("NTE").filter_map(|n| note(cx, n)).collect()
}

/// An NTE -> an Annotation (IG NTE[...]): its comment's lines (NTE-3), who entered it (NTE-5,
/// by name) and when (NTE-6); `None` without a comment.
pub fn note(cx: &Context, nte: &Segment) -> Option<Value> {
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
    let by = nte.field(5).first();
    let name: Vec<&str> = [by.get(3), by.sub(2, 1)]
        .into_iter()
        .filter_map(said)
        .collect();
    match (name.is_empty(), said(by.get(1))) {
        (false, _) => note["authorString"] = json!(name.join(" ")),
        (true, Some(id)) => note["authorString"] = json!(id),
        (true, None) => {}
    }
    if let Some(at) = cx.date_time(nte.value(6), "NTE-6") {
        note["time"] = json!(at);
    }
    Some(note)
}

/// Push `r` unless a resource with its id is already there (one practitioner ordering two
/// tests is one Practitioner).
pub fn add_once(out: &mut Vec<Resource>, r: Resource) {
    if !out.iter().any(|o| o.rtype == r.rtype && o.id == r.id) {
        out.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::hl7v2::message::parse;

    fn seg(text: &str) -> Segment {
        let msg = parse(&format!(
            "MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.5\r{text}"
        ))
        .unwrap();
        msg.segments[1].clone()
    }

    #[test]
    fn cancels_and_holds_in_orc_1_win_over_orc_5() {
        assert_eq!(request_status(Some(&seg("ORC|NW|1"))), "active");
        assert_eq!(request_status(Some(&seg("ORC|CA|1|||IP"))), "revoked");
        assert_eq!(request_status(Some(&seg("ORC|HD|1"))), "on-hold");
        assert_eq!(request_status(Some(&seg("ORC|SC|1|||CM"))), "completed");
        assert_eq!(request_status(None), "active");
        assert_eq!(medication_status(Some(&seg("ORC|DC|1"))), "stopped");
        assert_eq!(medication_status(Some(&seg("ORC|CA|1"))), "cancelled");
    }
}
