//! People in a role: the fields the IG maps to a PractitionerRole rather than a bare
//! Practitioner (OBR-32 to OBR-35, whose NDL also says when and where; OBX-25, the performing
//! laboratory's medical director), so that what the person did travels with them.
//!
//! Identity: a role is its practitioner and its code, so the same interpreter named by two
//! reports is one PractitionerRole.

use super::super::datatypes::put;
use super::super::message::Rep;
use super::{Context, Resource};
use serde_json::{Map, Value, json};

/// A role's code: (system, code).
pub type Code = (&'static str, &'static str);

/// NDL (name with date and location) -> its Practitioner and a PractitionerRole of `code`,
/// with NDL-2/3 (start and end) as the role's period.
pub fn from_ndl(cx: &Context, ndl: Rep, code: Option<Code>) -> Option<(Resource, Resource)> {
    // NDL-1 is a CNN whose subcomponents are an XCN's components, its authority flattened
    let cnn = |s: usize| ndl.sub(1, s).to_string();
    let xcn: Vec<Vec<String>> = vec![
        vec![cnn(1)],
        vec![cnn(2)],
        vec![cnn(3)],
        vec![cnn(4)],
        vec![cnn(5)],
        vec![cnn(6)],
        vec![cnn(7)],
        vec![cnn(8)],
        vec![cnn(9), cnn(10), cnn(11)],
    ];
    let practitioner = super::adt::practitioner(cx, Rep::of(&xcn))?;
    let mut period = Map::new();
    for (n, end) in [(2, "start"), (3, "end")] {
        if let Some(at) = cx.date_time(ndl.get(n), "NDL") {
            period.insert(end.into(), json!(at));
        }
    }
    let role = role(cx, &practitioner, code, Value::Object(period));
    Some((practitioner, role))
}

/// XCN -> its Practitioner and a PractitionerRole of `code`.
pub fn from_xcn(cx: &Context, xcn: Rep, code: Option<Code>) -> Option<(Resource, Resource)> {
    let practitioner = super::adt::practitioner(cx, xcn)?;
    let role = role(cx, &practitioner, code, Value::Null);
    Some((practitioner, role))
}

fn role(cx: &Context, practitioner: &Resource, code: Option<Code>, period: Value) -> Resource {
    let (system, value) = code.unwrap_or(("", ""));
    let id = cx.stable_id("PractitionerRole", &[&practitioner.id, system, value]);
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("PractitionerRole"));
    r.insert("id".into(), json!(id));
    r.insert(
        "practitioner".into(),
        json!({"reference": practitioner.reference()}),
    );
    if let Some((system, code)) = code {
        r.insert(
            "code".into(),
            json!([{"coding": [{"system": system, "code": code}]}]),
        );
    }
    put(&mut r, "period", period);
    Resource {
        rtype: "PractitionerRole",
        id,
        body: Value::Object(r),
    }
}

/// The roles of an NDL field, each repetition one person: the references to them, with both
/// resources pushed to `out` once.
pub fn all_from_ndl(
    cx: &Context,
    field: &super::super::message::Field,
    code: Option<Code>,
    out: &mut Vec<Resource>,
) -> Vec<Value> {
    let mut refs = Vec::new();
    for ndl in field.repetitions() {
        if let Some((p, r)) = from_ndl(cx, ndl, code) {
            refs.push(json!({"reference": r.reference()}));
            super::order::add_once(out, p);
            super::order::add_once(out, r);
        }
    }
    refs
}
