//! v2-to-FHIR maps, one module per message family, guided by the HL7 v2-to-FHIR IG. A map is a
//! pure function of the message: it returns the resources to write (each under its stable
//! id, see `identity`), or why it cannot (an AE: the message waits in the exception queue),
//! or that the type is not one we take (an AR).

mod adt;
mod clinical;
mod oru;
mod patient;

use super::ack::Problem;
use super::identity::Systems;
use super::message::{Header, Message};
use serde_json::Value;

/// One resource to write, whole (a PUT to its id).
#[derive(Debug, Clone)]
pub struct Resource {
    pub rtype: &'static str,
    pub id: String,
    pub body: Value,
}

impl Resource {
    pub fn reference(&self) -> String {
        format!("{}/{}", self.rtype, self.id)
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
}

/// The resources `msg` describes.
pub fn map(msg: &Message) -> Result<Vec<Resource>, Unmapped> {
    let cx = Context {
        msg,
        header: msg.header(),
        systems: Systems::get(),
    };
    let (ty, trigger) = (cx.header.message_type.as_str(), cx.header.trigger.as_str());
    match ty {
        "ADT" => adt::map(&cx, trigger),
        "ORU" => oru::map(&cx, trigger),
        _ => Err(Unmapped::Unsupported(Problem {
            location: "MSH-9".into(),
            code: "200",
            text: format!(
                "message type '{ty}' is not one this server takes (it takes ADT and ORU)"
            ),
        })),
    }
}

pub fn failed(location: &str, code: &'static str, text: impl Into<String>) -> Unmapped {
    Unmapped::Failed(Problem {
        location: location.into(),
        code,
        text: text.into(),
    })
}
