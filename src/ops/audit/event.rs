//! An audit row as a FHIR R4 AuditEvent, in the shape of the IHE Basic Audit Log Patterns
//! (BALP): `type` and `subtype` say what was done (a RESTful interaction, a login, an HL7v2
//! message imported, a delivery exported), `agent` who (the client or user, with the network
//! address), `source` this server, `entity` what (the resource, the patient, a search's query,
//! the correlation id that ties it to the archive, the outbox and the logs).

use crate::fhir::resource::instant;
use crate::store::audit::{Entry, Row, kind};
use base64::Engine;
use serde_json::{Value, json};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// The system of the correlation id entity.
pub const CORRELATION: &str = "http://emrsync.org/fhir/correlation-id";
/// The system agents are named by (their audit name: `client X`, `hl7v2 APP@FAC`...).
pub const AGENT: &str = "http://emrsync.org/fhir/audit-agent";

/// The AuditEvent `type` code of a row's kind (what `type=` searches match).
pub fn type_code(k: &str) -> (&'static str, &'static str, &'static str) {
    match k {
        kind::LOGIN => (DCM, "110114", "User Authentication"),
        kind::MESSAGE => (DCM, "110107", "Import"),
        kind::DELIVERY => (DCM, "110106", "Export"),
        _ => (EVENT_TYPE, "rest", "RESTful Operation"),
    }
}

/// C, R, U, D or E, from what was done.
pub fn action_code(r: &Entry) -> &'static str {
    match (r.kind.as_str(), r.action.as_str()) {
        (kind::MESSAGE, _) => "C",
        (kind::DELIVERY, _) => "R",
        (_, "create") => "C",
        (_, "update" | "patch") => "U",
        (_, "delete") => "D",
        (_, "read" | "vread" | "search-type" | "search-system" | "search-compartment")
        | (_, "history-instance" | "history-type" | "history-system" | "capabilities") => "R",
        _ => "E",
    }
}

/// The outcome code: 0 success, 4 a refusal (minor failure), 8 a server failure.
pub fn outcome_code(r: &Entry) -> &'static str {
    match r.outcome.as_str() {
        "success" => "0",
        "error" => "8",
        _ => "4",
    }
}

/// The AuditEvent of `row`.
pub fn audit_event(stored: &Row) -> Value {
    let row = &stored.entry;
    let (system, code, display) = type_code(&row.kind);
    let subtype = match row.kind.as_str() {
        kind::REST => json!([{"system": RESTFUL, "code": row.action}]),
        kind::LOGIN => json!([{"system": DCM, "code": "110122", "display": "Login"}]),
        _ => json!([{"display": row.action}]),
    };
    let mut agent = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"system": AGENT, "value": row.actor}, "display": row.actor},
        "requestor": true
    });
    if let Some(user) = row.actor.split(" via ").next().filter(|u| u.contains('/')) {
        agent["who"]["reference"] = json!(user);
    }
    if let Some(addr) = &row.address {
        agent["network"] = json!({"address": addr, "type": "2"});
    }
    let mut entity = Vec::new();
    if let (Some(t), Some(id)) = (&row.resource_type, &row.resource_id) {
        let reference = match row.version_id {
            Some(v) => format!("{t}/{id}/_history/{v}"),
            None => format!("{t}/{id}"),
        };
        entity.push(json!({
            "what": {"reference": reference},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
        }));
    }
    if let Some(p) = &row.patient {
        entity.push(json!({
            "what": {"reference": p},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
        }));
    }
    if let Some(q) = &row.query {
        entity.push(json!({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "description": q,
            "query": base64::engine::general_purpose::STANDARD.encode(q)
        }));
    }
    entity.push(json!({
        "what": {"identifier": {"system": CORRELATION, "value": row.correlation_id}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": "correlation id: the request or message this access belongs to"
    }));
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": stored.id,
        "meta": {"lastUpdated": instant(row.recorded_at)},
        "type": {"system": system, "code": code, "display": display},
        "subtype": subtype,
        "action": action_code(row),
        "recorded": instant(row.recorded_at),
        "outcome": outcome_code(row),
        "agent": [agent],
        "source": {
            "observer": {"display": "emrsync"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]
        },
        "entity": entity
    });
    if let Some(d) = &row.detail {
        event["outcomeDesc"] = json!(d);
    }
    if let Some((pos, h)) = &stored.seal {
        // the seal of its block in the chain, for whoever keeps a copy of the trail
        event["extension"] = json!([{
            "url": "http://emrsync.org/fhir/StructureDefinition/audit-chain-hash",
            "valueString": format!("{pos}:{h}")
        }]);
    }
    event
}
