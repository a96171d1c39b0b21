//! v2-to-FHIR maps, one module per message family, guided by the HL7 v2-to-FHIR IG. A map is a
//! pure function of the message: it returns the resources to write (each under its stable
//! id, see `identity`), or why it cannot (an AE: the message waits in the exception queue),
//! or that the type is not one we take (an AR).

mod adt;
mod appointment;
mod clinical;
mod coverage;
mod document;
mod immunization;
mod medication;
mod merge;
mod observation;
mod order;
mod oru;
mod patient;
mod patient_more;
mod procedure;
mod roles;
mod service_request;
mod specimen;
mod visit;

use super::ack::Problem;
use super::datatypes;
use super::identity::{self, Systems};
use super::message::{Header, Message};
use super::zone::Zone;
use serde_json::Value;
use std::cell::RefCell;

/// One resource to write, whole (a PUT to its id).
pub use crate::ingest::restate::Stated as Resource;

/// What a message comes to: the resources to write, the patient merges to carry out, and
/// what the sender said that could not be carried over (answered AA with a warning ERR each,
/// and kept with the message in the archive: never dropped in silence).
#[derive(Debug, Default)]
pub struct Mapped {
    pub resources: Vec<Resource>,
    pub merges: Vec<Merge>,
    pub warnings: Vec<Problem>,
    /// Elements a message deleted with `""` ("Patient/id", element); see `nulls`.
    pub cleared: Vec<(String, &'static str)>,
    /// A visit the message names by no number: the patient's open one, which the store knows
    /// (see `ingest::open_visit`).
    pub open_visit: Option<OpenVisit>,
}

/// An ADT event about a visit that the sender gives no number (PV1-19) or admission time
/// (PV1-44) for, other than a new admission or registration: it is about the patient's open
/// visit. The map gives the Encounter a `provisional` id (this message's); when the store
/// knows the patient's open visit, ingest maps the message again in it (`map_in_visit`).
#[derive(Debug, Clone)]
pub struct OpenVisit {
    pub provisional: String,
    pub patient: String,
}

/// Patient `from` merged into patient `into` (ADT^A40); `identifiers` are `from`'s, as MRG-1
/// gives them.
#[derive(Debug, Clone)]
pub struct Merge {
    pub from: String,
    pub into: String,
    pub identifiers: Vec<Value>,
}

impl From<Vec<Resource>> for Mapped {
    fn from(resources: Vec<Resource>) -> Mapped {
        Mapped {
            resources,
            ..Mapped::default()
        }
    }
}

#[derive(Debug)]
pub enum Unmapped {
    /// A message type or trigger we do not take: AR.
    Unsupported(Problem),
    /// A message of a type we take that we cannot apply as it is: AE.
    Failed(Problem),
}

/// What every map needs besides the message.
pub struct Context<'a> {
    pub msg: &'a Message,
    pub header: Header,
    pub systems: &'static Systems,
    /// The zone of times that carry no offset (see `zone`).
    pub zone: Zone,
    /// Values the maps could not carry over, as they met them.
    warnings: RefCell<Vec<Problem>>,
    /// Elements deleted with `""`, as met (see `clear`).
    cleared: RefCell<Vec<(String, &'static str)>>,
    /// A visit named by no number (see `OpenVisit`).
    open_visit: RefCell<Option<OpenVisit>>,
    /// The id of the patient's open visit, when the message names its visit by no number and
    /// the store has one (see `OpenVisit`).
    in_visit: Option<String>,
    /// This installation's secret for resource ids (`identity::stable_id`).
    id_secret: &'a [u8],
}

impl Context<'_> {
    /// The id of the `rtype` whose business key is `key`, under this installation's secret.
    pub fn stable_id(&self, rtype: &str, key: &[&str]) -> String {
        identity::stable_id(self.id_secret, rtype, key)
    }

    /// Note that the message deleted `element` of `rtype/id` (its field was `""`).
    pub fn clear(&self, rtype: &str, id: &str, element: &'static str) {
        self.cleared
            .borrow_mut()
            .push((format!("{rtype}/{id}"), element));
    }

    /// Report a value of `field` (`PID-7`) that is there but could not be carried over.
    pub fn not_carried(&self, field: &str, text: String) {
        self.warnings.borrow_mut().push(Problem {
            location: field.into(),
            code: "102",
            text,
        });
    }

    /// A v2 date (DT) as FHIR's, or `None`; a value that is there but is no date is reported.
    pub fn date(&self, value: &str, field: &str) -> Option<String> {
        let d = datatypes::date(value);
        if d.is_none() && !value.trim().is_empty() {
            self.not_carried(
                field,
                format!("{field} '{value}' is not a valid date; left out"),
            );
        }
        d
    }

    /// A v2 date/time (DTM) as FHIR's, or `None`; a value that is there but is no date/time is
    /// reported.
    pub fn date_time(&self, value: &str, field: &str) -> Option<String> {
        let d = datatypes::date_time(value, self.zone);
        if d.is_none() && !value.trim().is_empty() {
            self.not_carried(
                field,
                format!("{field} '{value}' is not a valid date/time; left out"),
            );
        }
        d
    }
}

/// The resources `msg` describes, and the merges it asks for; their ids are derived from
/// their business keys under `id_secret` (see `identity::stable_id`); its times without an
/// offset are in `zone`.
pub fn map(msg: &Message, id_secret: &[u8], zone: Zone) -> Result<Mapped, Unmapped> {
    map_in_visit(msg, id_secret, zone, None)
}

/// `map`, with the Encounter of a visit named by no number (see `OpenVisit`) under the id
/// `in_visit` of the patient's open visit.
pub fn map_in_visit(
    msg: &Message,
    id_secret: &[u8],
    zone: Zone,
    in_visit: Option<String>,
) -> Result<Mapped, Unmapped> {
    let cx = Context {
        msg,
        header: msg.header(),
        systems: Systems::get(),
        zone,
        warnings: RefCell::default(),
        cleared: RefCell::default(),
        open_visit: RefCell::default(),
        in_visit,
        id_secret,
    };
    let mut mapped = by_type(&cx)?;
    mapped.warnings = cx.warnings.take();
    mapped.cleared = cx.cleared.take();
    mapped.open_visit = cx.open_visit.take();
    Ok(mapped)
}

fn by_type(cx: &Context) -> Result<Mapped, Unmapped> {
    let (ty, trigger) = (cx.header.message_type.as_str(), cx.header.trigger.as_str());
    if (ty, trigger) == ("ADT", "A40") {
        return merge::map(cx);
    }
    match ty {
        "ADT" => adt::map(cx, trigger),
        "ORU" => oru::map(cx, trigger),
        "ORM" | "OML" => service_request::map(cx, trigger),
        "RDE" | "RAS" => medication::map(cx, trigger),
        "VXU" => immunization::map(cx, trigger),
        "SIU" => appointment::map(cx, trigger),
        "MDM" => document::map(cx, trigger),
        _ => Err(unsupported(
            "200",
            format!(
                "message type '{ty}' is not one this server takes (it takes ADT, ORU, ORM, OML, RDE, RAS, VXU, SIU and MDM)"
            ),
        )),
    }
    .map(Mapped::from)
}

/// A trigger (or type) we do not take: AR with `code` (200 type, 201 trigger) at MSH-9.
pub fn unsupported(code: &'static str, text: impl Into<String>) -> Unmapped {
    Unmapped::Unsupported(Problem {
        location: "MSH-9".into(),
        code,
        text: text.into(),
    })
}

/// `e`, its location (`OBX-5`) naming the segment's `n`th occurrence (`OBX[3]-5`) when it is
/// not the first: what ERR-2's sequence and the exception queue show.
pub fn in_occurrence(e: Unmapped, n: usize) -> Unmapped {
    let at = |mut p: Problem| {
        if n > 1
            && let Some((seg, field)) = p.location.split_once('-')
            && !seg.contains('[')
        {
            p.location = format!("{seg}[{n}]-{field}");
        }
        p
    };
    match e {
        Unmapped::Failed(p) => Unmapped::Failed(at(p)),
        Unmapped::Unsupported(p) => Unmapped::Unsupported(at(p)),
    }
}

pub fn failed(location: &str, code: &'static str, text: impl Into<String>) -> Unmapped {
    Unmapped::Failed(Problem {
        location: location.into(),
        code,
        text: text.into(),
    })
}

#[cfg(test)]
#[path = "ig_coverage_tests.rs"]
mod ig_coverage;
#[cfg(test)]
#[path = "ig_tables_tests.rs"]
mod ig_tables;
