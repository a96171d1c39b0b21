//! The Provenance of an adapter's write: which system sent it, in which message, by which map,
//! and what it wrote (each version, as `Type/id/_history/n`), in the shape of the v2-to-FHIR
//! IG's MSH[Provenance-Source] and MSH[Provenance-Transformation] maps folded into one: the
//! transformation as the activity, the sender as the author, the message as the source entity,
//! the map as the policy. Written in the write's own
//! transaction, one per applied message, under the write's correlation id (so the audit trail,
//! the archive row and the Provenance name each other), and searchable as any resource
//! (`Provenance?target=Patient/1`, `?agent=`, `?entity=`).
//!
//! A message that changes nothing (a resend, a restatement of what is stored) writes no
//! Provenance: nothing was done.

use super::Writer;
use super::restate::restate;
use crate::store::{Current, StoreError, Tx};
use serde_json::json;

const PARTICIPANT: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

/// What the source's message was: an event code (`A01` of HL7 table 0003, say) and its type
/// (`ADT^A01^ADT_A01`), the message's identifier (`system`, `value`: the control id in its
/// sender's namespace) and the map that read it (a URI).
pub struct Message<'a> {
    pub event: (&'a str, &'a str),
    pub identifier: (&'a str, &'a str),
    pub map: &'a str,
}

/// Write the Provenance of `written` (versions) by `writer`'s source; `None` when nothing was
/// written.
pub fn record(
    tx: &mut Tx,
    writer: &Writer,
    written: &[String],
    message: &Message,
) -> Result<Option<String>, StoreError> {
    if written.is_empty() {
        return Ok(None);
    }
    let id = &writer.ctx.correlation_id;
    let name = writer
        .source
        .name()
        .unwrap_or_else(|| writer.source.system.clone());
    let (code, text) = message.event;
    let (system, value) = message.identifier;
    let mut body = json!({
        "resourceType": "Provenance",
        "id": id,
        "target": written.iter().map(|v| json!({"reference": v})).collect::<Vec<_>>(),
        "recorded": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "policy": [message.map],
        "activity": {
            "coding": [
                {"system": "http://hl7.org/fhir/uv/v2mappings/CodeSystem/provenance-activity-type-v2-to-fhir",
                 "code": "v2-fhir-transformation"},
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": code}
            ],
            "text": format!("message - {text}")
        },
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT, "code": "author", "display": "Author"}]},
                "who": {"identifier": {"system": "urn:emrsync:source", "value": name}, "display": name}
            },
            {
                "type": {"coding": [{"system": PARTICIPANT, "code": "assembler", "display": "Assembler"}]},
                "who": {"display": "emrsync"}
            }
        ],
        "entity": [{
            "role": "source",
            "what": {"identifier": {"system": system, "value": value}, "display": format!("{text} {value} from {name}")}
        }]
    });
    // a write a person released from review names them: it was applied on their word
    if let Some(reviewer) = &writer.source.reviewed_by {
        body["agent"].as_array_mut().expect("agents").push(json!({
            "type": {"coding": [{"system": PARTICIPANT, "code": "verifier", "display": "Verifier"}]},
            "who": {"display": reviewer}
        }));
        body["reason"] = json!([{"text": "released from source-of-truth review"}]);
    }
    // new by construction (its id is this write's correlation id, and a transaction tried
    // again after a conflict rolled the first try's back): no head to read on the hot path
    let absent = Current {
        version: None,
        json: None,
    };
    restate(tx, "Provenance", id, &absent, body, writer)
}
