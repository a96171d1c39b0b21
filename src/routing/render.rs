//! A queued message made into what its target reads: the versions it carries are read as
//! they were written (a message sent after a downtime says what was true then, in order), the
//! patient given the identifier the target knows, and the event told from what changed.

use super::config::{Format, Target};
use super::dispatch::Changed;
use super::queue::Queued;
use crate::adapters::hl7v2::message::Delimiters;
use crate::adapters::hl7v2::out::adt::{self, Envelope};
use crate::store::db::DbConnection;
use crate::store::{StoreError, versions};
use crate::subscriptions::dispatch::SamePerson;
use serde_json::Value;

/// What a message became: its kind (`ADT^A01`) and text; or why it is not sent.
pub enum Rendered {
    Message {
        kind: String,
        text: String,
    },
    /// Nothing this target is sent stands for the change (a planned encounter, say).
    Nothing(String),
}

/// Render `q` for `target`. An error of the store is the caller's to retry; `Err(Ok(why))`
/// is a message that cannot be made (to the exception queue).
pub fn render(
    conn: &mut DbConnection,
    q: &Queued,
    target: &Target,
    persons: Option<&dyn SamePerson>,
) -> Result<Result<Rendered, String>, StoreError> {
    let changes = q.changes();
    let read =
        |conn: &mut DbConnection, c: &Changed, v: i64| -> Result<Option<Value>, StoreError> {
            if v < 1 {
                return Ok(None);
            }
            Ok(versions::versions(conn, &[(&c.rtype, &c.id, v)])?
                .pop()
                .filter(|v| !v.deleted)
                .map(|v| v.json()))
        };
    let encounter = match changes.iter().find(|c| c.rtype == "Encounter") {
        Some(c) => {
            let current = read(conn, c, c.version)?;
            let previous = read(conn, c, c.version - 1)?;
            Some((previous, current))
        }
        None => None,
    };
    let (trigger, encounter_now) = match &encounter {
        Some((previous, current)) => {
            match adt::encounter_trigger(previous.as_ref(), current.as_ref()) {
                Some(t) => (t, current.clone().or_else(|| previous.clone())),
                None => {
                    return Ok(Ok(Rendered::Nothing(
                        "the encounter's change is no ADT event (planned, or cancelled before it began)".into(),
                    )));
                }
            }
        }
        None => match changes.iter().find(|c| c.rtype == "Patient") {
            Some(c) if c.action == "create" => ("A28", None),
            Some(c) if c.action == "update" => ("A08", None),
            _ => {
                let kinds: Vec<String> = changes.iter().map(|c| c.rtype.clone()).collect();
                return Ok(Err(format!(
                    "no HL7v2 message of this server says a change of {} yet",
                    kinds.join(", ")
                )));
            }
        },
    };
    let patient = match changes.iter().find(|c| c.rtype == "Patient") {
        Some(c) => read(conn, c, c.version)?,
        None => None,
    };
    let patient = match patient {
        Some(p) => p,
        None => {
            let Some(id) = q
                .patient
                .as_deref()
                .and_then(|p| p.strip_prefix("Patient/"))
            else {
                return Ok(Err("the message names no patient".into()));
            };
            match versions::current(conn, "Patient", id)? {
                Some(v) if !v.deleted => v.json(),
                _ => return Ok(Err(format!("Patient/{id} is not known"))),
            }
        }
    };
    let patient = known_as(conn, patient, target, q.patient.as_deref(), persons)?;
    let Format::Hl7v2 {
        version,
        sending_application,
        sending_facility,
        receiving_application,
        receiving_facility,
    } = &target.format;
    let env = Envelope {
        sending_application: sending_application.clone(),
        sending_facility: sending_facility.clone(),
        receiving_application: receiving_application.clone(),
        receiving_facility: receiving_facility.clone(),
        control_id: q.control_id(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: version.clone(),
        delimiters: Delimiters::default(),
    };
    Ok(Ok(Rendered::Message {
        kind: format!("ADT^{trigger}"),
        text: adt::adt(&env, trigger, &patient, encounter_now.as_ref()),
    }))
}

/// `patient` with the identifier of the target's system first: its own, else one of another
/// record of the same person (the MPI's links), else as it is.
fn known_as(
    conn: &mut DbConnection,
    mut patient: Value,
    target: &Target,
    reference: Option<&str>,
    persons: Option<&dyn SamePerson>,
) -> Result<Value, StoreError> {
    let Some(system) = target.identifier_system.as_deref() else {
        return Ok(patient);
    };
    let of_system = |p: &Value| {
        p["identifier"]
            .as_array()
            .and_then(|ids| ids.iter().find(|i| i["system"] == system).cloned())
    };
    let found = match of_system(&patient) {
        Some(id) => Some(id),
        None => match (persons, reference) {
            (Some(persons), Some(r)) => {
                let others =
                    persons.records(conn, &[r.trim_start_matches("Patient/").to_string()])?;
                let ids: Vec<String> = others
                    .iter()
                    .map(|o| o.trim_start_matches("Patient/").to_string())
                    .collect();
                versions::current_many(conn, "Patient", &ids)?
                    .iter()
                    .filter(|v| !v.deleted)
                    .find_map(|v| of_system(&v.json()))
            }
            _ => None,
        },
    };
    if let Some(id) = found {
        let mut ids: Vec<Value> = patient["identifier"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ids.retain(|i| i != &id);
        ids.insert(0, id);
        patient["identifier"] = Value::Array(ids);
    }
    Ok(patient)
}
