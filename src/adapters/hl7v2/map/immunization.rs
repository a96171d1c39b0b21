//! VXU^V04 (a vaccination record) -> an Immunization per RXA, for the patient of PID, with
//! its administering and ordering providers; the OBX after an RXA that state its funding
//! source and program eligibility fill those elements. IG: VXU_V04, RXA[Immunization],
//! RXR[Immunization].
//!
//! Identity: the order's placer (else filler) number when an ORC gives one; otherwise the
//! patient, the vaccine and the date given, so that the same record sent again (immunization
//! registries resend whole histories) updates one Immunization. Registries often put several
//! RXA under orders that share one number: then each is the order number with its vaccine and
//! date given, so that no vaccination overwrites another.

use super::super::datatypes::{codeable, date_time, put};
use super::super::message::Segment;
use super::observation::quantity;
use super::order::{self, Item};
use super::{Context, Resource, Unmapped, adt, failed, unsupported};
use serde_json::{Map, Value, json};

/// LOINC codes of the OBX that describe the vaccination itself (CDC's IIS guide).
const FUNDING_SOURCE: &str = "30963-3";
const ELIGIBILITY: &str = "64994-7";

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    if trigger != "V04" {
        return Err(unsupported(
            "201",
            format!("VXU trigger event '{trigger}' is not one this server takes (V04)"),
        ));
    }
    let (patient, mut out) = super::patient::with_allergies(cx)?;
    // a history-only message (no RXA) states the patient alone
    let items = order::items(cx, "RXA");
    let orders: Vec<Option<String>> = items
        .iter()
        .map(|item| {
            item.names_order()
                .then(|| order::order_id(cx, "Immunization", item, None, None, &[]))
        })
        .collect();
    for (n, item) in items.iter().enumerate() {
        let shared = orders.iter().filter(|o| **o == orders[n]).count() > 1;
        let order = orders[n].as_deref().map(|id| (id, shared));
        let i = immunization(cx, item, &patient, order, &mut out)?;
        out.push(i);
    }
    Ok(out)
}

fn immunization(
    cx: &Context,
    item: &Item,
    patient: &Resource,
    // the id its order gives, and whether another RXA of the message has the same
    order: Option<(&str, bool)>,
    out: &mut Vec<Resource>,
) -> Result<Resource, Unmapped> {
    let rxa = item.main;
    let vaccine = codeable(rxa.field(5).first()).ok_or_else(|| {
        failed(
            "RXA-5",
            "101",
            "RXA-5 (administered code) is empty: which vaccine is not said",
        )
    })?;
    let given = date_time(rxa.value(3), cx.zone).ok_or_else(|| {
        failed(
            "RXA-3",
            "101",
            "RXA-3 (date given) is empty or not a date/time",
        )
    })?;
    let id = match order {
        Some((id, false)) => id.to_string(),
        Some((id, true)) => cx.stable_id("Immunization", &[id, rxa.get(5, 1), &given]),
        None => cx.stable_id("Immunization", &[&patient.id, rxa.get(5, 1), &given]),
    };
    let mut i = Map::new();
    i.insert("resourceType".into(), json!("Immunization"));
    i.insert("id".into(), json!(id));
    put(
        &mut i,
        "identifier",
        Value::Array(order::identifiers(cx, item, None, None)),
    );
    // partly given is still given (the IG's isSubpotent says how much)
    let status = order::administered(rxa, "completed");
    i.insert("status".into(), json!(status));
    if status == "not-done"
        && let Some(reason) = codeable(rxa.field(18).first())
    {
        i.insert("statusReason".into(), reason);
    }
    // the indication (RXA-19), when the record was entered (RXA-22, else the order's ORC-9),
    // and where it was given (RXA-27, the place; v2.6 on)
    let reasons: Vec<Value> = rxa.field(19).repetitions().filter_map(codeable).collect();
    put(&mut i, "reasonCode", Value::Array(reasons));
    if let Some(at) = cx
        .date_time(rxa.value(22), "RXA-22")
        .or_else(|| item.orc.and_then(|o| cx.date_time(o.value(9), "ORC-9")))
    {
        i.insert("recorded".into(), json!(at));
    }
    if let Some(place) = administered_at(cx, rxa) {
        i.insert("location".into(), json!({"reference": place.reference()}));
        order::add_once(out, place);
    }
    i.insert("vaccineCode".into(), vaccine);
    i.insert("patient".into(), json!({"reference": patient.reference()}));
    i.insert("occurrenceDateTime".into(), json!(given));
    // RXA-9: 00 is a new record of an administration; 01-08 are historical, from a source
    match rxa.get(9, 1) {
        "00" => {
            i.insert("primarySource".into(), json!(true));
        }
        "" => {}
        _ => {
            i.insert("primarySource".into(), json!(false));
            if let Some(origin) = codeable(rxa.field(9).first()) {
                i.insert("reportOrigin".into(), origin);
            }
        }
    }
    if !rxa.get(17, 2).trim().is_empty() || !rxa.get(17, 1).trim().is_empty() {
        let name = [rxa.get(17, 2), rxa.get(17, 1)]
            .into_iter()
            .map(str::trim)
            .find(|t| !t.is_empty())
            .unwrap_or_default();
        i.insert("manufacturer".into(), json!({"display": name}));
    }
    put(&mut i, "lotNumber", json!(rxa.value(15).trim()));
    if let Some(d) = cx.date(rxa.value(16), "RXA-16") {
        i.insert("expirationDate".into(), json!(d));
    }
    if let Some(rxr) = item.first("RXR") {
        if let Some(site) = codeable(rxr.field(2).first()) {
            i.insert("site".into(), site);
        }
        if let Some(route) = codeable(rxr.field(1).first()) {
            i.insert("route".into(), route);
        }
    }
    // 999 is the IIS guide's "amount unknown"
    if rxa.value(6).trim() != "999"
        && let Some(dose) = quantity(rxa.value(6), rxa.field(7).first())
    {
        i.insert("doseQuantity".into(), dose);
    }
    let mut performers = Vec::new();
    let ordering = item.orc.map(|o| o.field(12).first());
    for (xcn, code, display) in rxa
        .field(10)
        .repetitions()
        .map(|x| (x, "AP", "Administering Provider"))
        .chain(ordering.map(|x| (x, "OP", "Ordering Provider")))
    {
        if let Some(pr) = adt::practitioner(cx, xcn) {
            performers.push(json!({
                "function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443",
                                         "code": code, "display": display}]},
                "actor": {"reference": pr.reference()}
            }));
            order::add_once(out, pr);
        }
    }
    put(&mut i, "performer", Value::Array(performers));
    let about = |code: &str| {
        item.all("OBX")
            .filter(move |o: &&Segment| o.get(3, 1) == code)
            .filter_map(|o| codeable(o.field(5).first()))
            .collect::<Vec<_>>()
    };
    put(
        &mut i,
        "programEligibility",
        Value::Array(about(ELIGIBILITY)),
    );
    if let Some(source) = about(FUNDING_SOURCE).into_iter().next() {
        i.insert("fundingSource".into(), source);
    }
    Ok(Resource {
        rtype: "Immunization",
        id,
        body: Value::Object(i),
    })
}

/// Where it was given: the place (RXA-27) with its address (RXA-28), or a Location of the
/// address alone when only that is sent.
fn administered_at(cx: &Context, rxa: &Segment) -> Option<Resource> {
    let address = super::super::datatypes::address(rxa.field(28).first());
    let mut place = super::adt::location(cx, rxa.field(27).first());
    match (&mut place, address) {
        (Some(p), Some(a)) => p.body["address"] = a,
        (None, Some(a)) => {
            let text = a.to_string();
            let id = cx.stable_id("Location", &[&cx.header.sending_facility, "address", &text]);
            place = Some(Resource {
                rtype: "Location",
                id: id.clone(),
                body: json!({"resourceType": "Location", "id": id, "status": "active",
                             "mode": "instance", "address": a}),
            });
        }
        _ => {}
    }
    place
}
