//! Which HL7v2 message a queued change is, and the resources it needs: a merge is an A40;
//! reports or results an ORU; orders an ORM (or OML); medication orders an RDE; vaccinations
//! a VXU; an appointment's change its SIU event; a document's its MDM event; an encounter's
//! its ADT event; a patient's alone an A28 or A08. The first kind a message carries decides,
//! in that order (an admission's Patient and Encounter are one ADT; a VXU's Patient and
//! Immunizations one VXU).

use super::config::Results;
use super::render::{Rendered, Rendering, Versions};
use crate::adapters::hl7v2::out::adt::{self, Envelope};
use crate::adapters::hl7v2::out::orm::{self, Order};
use crate::adapters::hl7v2::out::vaccination::{self, Given};
use crate::adapters::hl7v2::out::{documents, pharmacy, scheduling};
use crate::store::StoreError;
use crate::store::db::DbConnection;
use serde_json::Value;

/// How a target wants orders of services: ORM^O01 (to v2.4) or OML^O21 (v2.5 on).
pub type OrderKind<'a> = &'a [&'a str];

type Found = Result<Option<Value>, StoreError>;

/// The resource `value[key]` refers to (`key` a path such as `requester` or `context.encounter.0`).
fn referred(conn: &mut DbConnection, v: &Versions, value: &Value, path: &[&str]) -> Found {
    let at = path.iter().fold(value, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    });
    match at["reference"].as_str() {
        Some(r) => v.resolve(conn, r),
        None => Ok(None),
    }
}

/// Links of `kind` a Patient has now and had not before.
fn new_links(previous: Option<&Value>, current: &Value, kind: &str) -> Vec<String> {
    let of = |p: Option<&Value>| -> Vec<String> {
        p.and_then(|p| p["link"].as_array())
            .into_iter()
            .flatten()
            .filter(|l| l["type"] == kind)
            .filter_map(|l| l["other"]["reference"].as_str().map(str::to_string))
            .collect()
    };
    let before = of(previous);
    of(Some(current))
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect()
}

fn message(kind: String, text: String) -> Rendering {
    Ok(Ok(Rendered::Message { kind, text }))
}

/// The message `v`'s changes are, of `patient`, for a target sending orders as `orders`.
pub(super) fn hl7v2(
    conn: &mut DbConnection,
    v: &Versions,
    (env, orders, results): (&Envelope, OrderKind, Results),
    patient: &Value,
) -> Rendering {
    if let Some(c) = v.of("Patient").next() {
        let (previous, current) = (v.at(conn, c, v.before(c))?, v.at(conn, c, c.version)?);
        if let Some(current) = current {
            if let Some(into) = new_links(previous.as_ref(), &current, "replaced-by").first() {
                return Ok(Ok(Rendered::Nothing(format!(
                    "merged into {into}: the A40 of that patient says it"
                ))));
            }
            let mut prior = Vec::new();
            for r in new_links(previous.as_ref(), &current, "replaces") {
                if let Some(p) = v.resolve(conn, &r)? {
                    prior.push(p);
                }
            }
            if !prior.is_empty() {
                return message("ADT^A40".into(), adt::merge(env, patient, &prior));
            }
        }
    }
    // results: reports, or observations alone (an ADT's height and weight go with the ADT)
    let about_the_visit = v.of("Encounter").next().is_some() || v.of("Patient").next().is_some();
    if v.of("DiagnosticReport").next().is_some()
        || (v.of("Observation").next().is_some() && !about_the_visit)
    {
        return super::render::results(conn, v, (env, results), patient);
    }
    if v.of("ServiceRequest").next().is_some() {
        let (list, encounter) = order_list(conn, v, "ServiceRequest")?;
        if list.is_empty() {
            return Ok(Ok(Rendered::Nothing("the order was deleted".into())));
        }
        let text = orm::orm(env, orders, (patient, encounter.as_ref()), &list);
        return message(orders[..2].join("^"), text);
    }
    if v.of("MedicationRequest").next().is_some() {
        let (list, encounter) = order_list(conn, v, "MedicationRequest")?;
        if list.is_empty() {
            return Ok(Ok(Rendered::Nothing("the order was deleted".into())));
        }
        let text = pharmacy::rde(env, (patient, encounter.as_ref()), &list);
        return message("RDE^O11".into(), text);
    }
    if v.of("Immunization").next().is_some() {
        return vaccinations(conn, v, env, patient);
    }
    if let Some(c) = v.of("Appointment").next() {
        let (previous, current) = (v.at(conn, c, v.before(c))?, v.at(conn, c, c.version)?);
        let Some(a) = current else {
            return Ok(Ok(Rendered::Nothing("the appointment was deleted".into())));
        };
        let trigger = scheduling::trigger(previous.as_ref(), &a);
        let mut taking = Vec::new();
        for p in a["participant"].as_array().into_iter().flatten() {
            if p["actor"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("Patient/"))
            {
                continue;
            }
            taking.push((p.clone(), referred(conn, v, p, &["actor"])?));
        }
        let text = scheduling::siu(env, trigger, (patient, None), &a, &taking);
        return message(format!("SIU^{trigger}"), text);
    }
    if let Some(c) = v.of("DocumentReference").next() {
        let (previous, current) = (v.at(conn, c, v.before(c))?, v.at(conn, c, c.version)?);
        let Some(d) = current else {
            return Ok(Ok(Rendered::Nothing("the document was deleted".into())));
        };
        let trigger = documents::trigger(previous.as_ref(), &d);
        let encounter = match referred(conn, v, &d, &["context", "encounter", "0"])? {
            Some(e) => Some(e),
            None => visit(conn, v)?,
        };
        let parent = referred(conn, v, &d, &["relatesTo", "0", "target"])?;
        let author = referred(conn, v, &d, &["author", "0"])?;
        let authenticator = referred(conn, v, &d, &["authenticator"])?;
        let text = documents::mdm(
            env,
            trigger,
            (patient, encounter.as_ref()),
            (&d, parent.as_ref()),
            (author.as_ref(), authenticator.as_ref()),
        );
        return message(format!("MDM^{trigger}"), text);
    }
    if let Some(c) = v.of("Encounter").next() {
        let (previous, current) = (v.at(conn, c, v.before(c))?, v.at(conn, c, c.version)?);
        match adt::encounter_trigger(previous.as_ref(), current.as_ref()) {
            Some(trigger) => {
                let encounter = current.or(previous);
                let observed = observations(conn, v)?;
                let text = adt::adt(env, trigger, (patient, encounter.as_ref()), &observed);
                return message(format!("ADT^{trigger}"), text);
            }
            // the patient's own change is still told (below)
            None if v.of("Patient").next().is_some() => {}
            None => {
                return Ok(Ok(Rendered::Nothing(
                    "the encounter's change is no ADT event (planned, or cancelled before it began)"
                        .into(),
                )));
            }
        }
    }
    let trigger = match v.of("Patient").next() {
        Some(c) if c.action != "delete" && v.before(c) == 0 => "A28",
        Some(c) if c.action != "delete" => "A08",
        _ => {
            let kinds: Vec<&str> = v.changes.iter().map(|c| c.rtype.as_str()).collect();
            return Ok(Err(format!(
                "no HL7v2 message of this server says a change of {} yet",
                kinds.join(", ")
            )));
        }
    };
    message(
        format!("ADT^{trigger}"),
        adt::adt(env, trigger, (patient, None), &observations(conn, v)?),
    )
}

/// The Observations the message carries (deleted ones left out).
fn observations(conn: &mut DbConnection, v: &Versions) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    for c in v.of("Observation") {
        out.extend(v.at(conn, c, c.version)?);
    }
    Ok(out)
}

/// The Encounter the message carries, as it is now: the visit of a message's PV1.
pub(super) fn visit(conn: &mut DbConnection, v: &Versions) -> Found {
    match v.of("Encounter").next() {
        Some(c) => v.at(conn, c, c.version),
        None => Ok(None),
    }
}

/// The orders of `rtype` the message carries (deleted ones left out), each with its version
/// before and its requester, and the encounter of the first.
fn order_list(
    conn: &mut DbConnection,
    v: &Versions,
    rtype: &str,
) -> Result<(Vec<Order>, Option<Value>), StoreError> {
    let mut list = Vec::new();
    let mut encounter = None;
    for c in v.of(rtype) {
        let Some(current) = v.at(conn, c, c.version)? else {
            continue;
        };
        if encounter.is_none() {
            encounter = match referred(conn, v, &current, &["encounter"])? {
                Some(e) => Some(e),
                None => visit(conn, v)?,
            };
        }
        list.push(Order {
            previous: v.at(conn, c, v.before(c))?,
            requester: referred(conn, v, &current, &["requester"])?,
            current,
        });
    }
    Ok((list, encounter))
}

/// A VXU of the vaccinations the message carries, with who gave and ordered each.
fn vaccinations(
    conn: &mut DbConnection,
    v: &Versions,
    env: &Envelope,
    patient: &Value,
) -> Rendering {
    let mut given = Vec::new();
    for c in v.of("Immunization") {
        let Some(immunization) = v.at(conn, c, c.version)? else {
            continue;
        };
        let (mut given_by, mut ordered_by) = (Vec::new(), None);
        for p in immunization["performer"].as_array().into_iter().flatten() {
            let function = p["function"]["coding"][0]["code"].as_str().unwrap_or("AP");
            if let Some(who) = referred(conn, v, p, &["actor"])? {
                match function {
                    "OP" => ordered_by = Some(who),
                    _ => given_by.push(who),
                }
            }
        }
        given.push(Given {
            updated: v.before(c) > 0,
            immunization,
            given_by,
            ordered_by,
        });
    }
    if given.is_empty() {
        return Ok(Ok(Rendered::Nothing(
            "the vaccinations it carries were deleted".into(),
        )));
    }
    message("VXU^V04".into(), vaccination::vxu(env, patient, &given))
}
