//! A queued message made into what its target reads: the versions it carries are read as
//! they were written (a message sent after a downtime says what was true then, in order), the
//! patient given the identifier the target knows, and the message told from what changed
//! (`messages`: which HL7v2 message; `fhir_out`: a FHIR transaction).

use super::config::{Format, Results, Target};
use super::dispatch::Changed;
use super::queue::Queued;
use super::value_maps::ValueMaps;
use crate::adapters::hl7v2::message::Delimiters;
use crate::adapters::hl7v2::out::adt::Envelope;
use crate::adapters::hl7v2::out::oru;
use crate::store::db::DbConnection;
use crate::store::schema::search_reference as sr;
use crate::store::{StoreError, versions};
use crate::subscriptions::dispatch::SamePerson;
use diesel::prelude::*;
use serde_json::Value;
use std::collections::HashMap;

/// What a message became: its kind (`ADT^A01`) and text; or why it is not sent.
pub enum Rendered {
    Message {
        kind: String,
        text: String,
    },
    /// One change sent as several messages, in order, each with its own control id (a target
    /// that takes one result per message): (control id, text).
    Parts {
        kind: String,
        parts: Vec<(String, String)>,
    },
    /// Nothing this target is sent stands for the change (a planned encounter, say).
    Nothing(String),
}

/// The outcome of rendering: an error of the store is the caller's to retry; `Err(why)`
/// inside is a message that cannot be made (to the exception queue).
pub type Rendering = Result<Result<Rendered, String>, StoreError>;

/// The versions a window of messages carries (each change's and the one before it), read in
/// one query: rendering a window then costs a few statements, not a few per message.
#[derive(Default)]
pub struct Prefetched(HashMap<(String, String, i64), Option<Value>>);

impl Prefetched {
    pub fn load(conn: &mut DbConnection, window: &[Queued]) -> Result<Prefetched, StoreError> {
        let changes: Vec<Changed> = window.iter().flat_map(Queued::changes).collect();
        let mut keys: Vec<(&str, &str, i64)> = Vec::new();
        for c in &changes {
            keys.push((&c.rtype, &c.id, c.version));
            if c.version > 1 {
                keys.push((&c.rtype, &c.id, c.version - 1));
            }
        }
        let mut map: HashMap<(String, String, i64), Option<Value>> = keys
            .iter()
            .map(|(t, id, v)| ((t.to_string(), id.to_string(), *v), None))
            .collect();
        for v in versions::versions(conn, &keys)? {
            let json = (!v.deleted).then(|| v.json());
            map.insert((v.resource_type.clone(), v.id.clone(), v.version_id), json);
        }
        Ok(Prefetched(map))
    }
}

/// The versions a message carries, and the current versions of what it refers to.
pub struct Versions<'a> {
    pub(super) changes: &'a [Changed],
    read: &'a Prefetched,
    /// The target's value maps, applied to every resource read.
    maps: Option<&'a ValueMaps>,
}

impl Versions<'_> {
    /// Version `v` of a change's resource (`None`: deleted, or before the first).
    pub(super) fn at(
        &self,
        conn: &mut DbConnection,
        c: &Changed,
        v: i64,
    ) -> Result<Option<Value>, StoreError> {
        let found = match self.read.0.get(&(c.rtype.clone(), c.id.clone(), v)) {
            Some(known) => known.clone(),
            None => version_json(conn, c, v)?,
        };
        Ok(self.mapped(found))
    }

    /// `found` in the target's codes.
    fn mapped(&self, mut found: Option<Value>) -> Option<Value> {
        if let (Some(maps), Some(v)) = (self.maps, found.as_mut()) {
            maps.apply(v);
        }
        found
    }

    /// The changes of `rtype` the message carries, one per resource: its last (a merge, say,
    /// writes the survivor twice in one transaction: as its message stated it, then linked).
    pub(super) fn of(&self, rtype: &str) -> impl Iterator<Item = &Changed> {
        let all = self.changes;
        all.iter().enumerate().filter_map(move |(i, c)| {
            let later = all[i + 1..]
                .iter()
                .any(|d| d.rtype == c.rtype && d.id == c.id);
            (c.rtype == rtype && !later).then_some(c)
        })
    }

    /// The version of `c`'s resource before this message changed it (0: it did not exist).
    pub(super) fn before(&self, c: &Changed) -> i64 {
        self.changes
            .iter()
            .filter(|d| d.rtype == c.rtype && d.id == c.id)
            .map(|d| d.version)
            .min()
            .unwrap_or(c.version)
            - 1
    }

    /// `Type/id` as this message carries it, else as it is now.
    pub(super) fn resolve(
        &self,
        conn: &mut DbConnection,
        reference: &str,
    ) -> Result<Option<Value>, StoreError> {
        let Some((rtype, id)) = reference.split_once('/') else {
            return Ok(None);
        };
        if let Some(c) = self.changes.iter().find(|c| c.rtype == rtype && c.id == id) {
            return self.at(conn, c, c.version);
        }
        let now = versions::current(conn, rtype, id)?
            .filter(|v| !v.deleted)
            .map(|v| v.json());
        Ok(self.mapped(now))
    }
}

/// Version `v` of a change's resource as JSON (`None`: deleted, or before the first).
pub(super) fn version_json(
    conn: &mut DbConnection,
    c: &Changed,
    v: i64,
) -> Result<Option<Value>, StoreError> {
    if v < 1 {
        return Ok(None);
    }
    Ok(versions::versions(conn, &[(&c.rtype, &c.id, v)])?
        .pop()
        .filter(|v| !v.deleted)
        .map(|v| v.json()))
}

/// A target's value maps, or why they cannot be applied (the message then waits in the
/// exception queue).
pub type Mapping = Result<Option<ValueMaps>, String>;

/// Render `q` for `target`.
pub fn render(
    conn: &mut DbConnection,
    (q, read): (&Queued, &Prefetched),
    target: &Target,
    (persons, maps, base): (Option<&dyn SamePerson>, &Mapping, &str),
) -> Rendering {
    let maps = match maps {
        Ok(maps) => maps.as_ref(),
        Err(why) => return Ok(Err(why.clone())),
    };
    let changes = q.changes();
    let v = Versions {
        changes: &changes,
        read,
        maps,
    };
    if let Format::Notification { content } = target.format {
        return super::notify_out::notification(conn, (q, &v), target, (base, content));
    }
    let Format::Hl7v2 {
        version,
        sending_application,
        sending_facility,
        receiving_application,
        receiving_facility,
        orders,
        results,
        encoding,
    } = &target.format
    else {
        return super::fhir_out::transaction(conn, q, target, maps);
    };
    let env = Envelope {
        sending_application: sending_application.clone(),
        sending_facility: sending_facility.clone(),
        receiving_application: receiving_application.clone(),
        receiving_facility: receiving_facility.clone(),
        control_id: q.control_id(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: version.clone(),
        // checked with the routes: a target's own delimiters, else the standard ones
        delimiters: Delimiters::from_encoding(encoding).unwrap_or_default(),
    };
    let patient = match v.of("Patient").next() {
        Some(c) => v.at(conn, c, c.version)?,
        None => match q.patient.as_deref() {
            Some(p) => v.resolve(conn, p)?,
            None => None,
        },
    };
    let Some(patient) = patient else {
        return Ok(Err(match &q.patient {
            Some(p) => format!("{p} is not known"),
            None => "the message names no patient".into(),
        }));
    };
    let patient = known_as(conn, patient, target, q.patient.as_deref(), persons)?;
    super::messages::hl7v2(conn, &v, (&env, orders.kind(), *results), &patient)
}

/// An ORU^R01 of the reports the message carries, and of those whose results it carries
/// (a corrected result whose report says the same as before); results in no report make one
/// report of their own. `split`: one message, or one per report, or one per result that
/// changed.
pub(super) fn results(
    conn: &mut DbConnection,
    v: &Versions,
    (env, split): (&Envelope, Results),
    patient: &Value,
) -> Rendering {
    let mut reports: Vec<(String, Value)> = Vec::new();
    for c in v.of("DiagnosticReport") {
        if let Some(r) = v.at(conn, c, c.version)? {
            reports.push((c.id.clone(), r));
        }
    }
    let observations: Vec<&Changed> = v.of("Observation").collect();
    let ids: Vec<&str> = observations.iter().map(|c| c.id.as_str()).collect();
    let citing: Vec<String> = sr::table
        .filter(sr::resource_type.eq("DiagnosticReport"))
        .filter(sr::param.eq("result"))
        .filter(sr::target_type.eq("Observation"))
        .filter(sr::target_id.eq_any(&ids))
        .select(sr::resource_id)
        .distinct()
        .load(conn)?;
    for id in citing {
        if reports.iter().all(|(r, _)| *r != id)
            && let Some(r) = v.resolve(conn, &format!("DiagnosticReport/{id}"))?
        {
            reports.push((id, r));
        }
    }
    let mut written = Vec::new();
    let mut cited: Vec<String> = Vec::new();
    for (_, report) in &reports {
        let mut results = Vec::new();
        for r in report["result"].as_array().into_iter().flatten() {
            let Some(reference) = r["reference"].as_str() else {
                continue;
            };
            cited.push(reference.to_string());
            if let Some(o) = v.resolve(conn, reference)? {
                results.push(o);
            }
        }
        written.push((report.clone(), results));
    }
    // results of no report: one report of their own, named by the first one's code
    let mut alone = Vec::new();
    for c in observations {
        if !cited.contains(&format!("Observation/{}", c.id))
            && let Some(o) = v.at(conn, c, c.version)?
        {
            alone.push(o);
        }
    }
    if let Some(first) = alone.first() {
        let report = serde_json::json!({"status": first["status"], "code": first["code"],
            "effectiveDateTime": first["effectiveDateTime"]});
        written.push((report, alone));
    }
    if written.is_empty() {
        return Ok(Ok(Rendered::Nothing(
            "the results it carries were deleted".into(),
        )));
    }
    // the report's encounter, else its first result's, else the visit the message carries
    let named = [&written[0].0]
        .into_iter()
        .chain(written[0].1.first())
        .find_map(|r| r["encounter"]["reference"].as_str());
    let encounter = match named {
        Some(r) => v.resolve(conn, r)?,
        None => super::messages::visit(conn, v)?,
    };
    let messages: Vec<Vec<(Value, Vec<Value>)>> = match split {
        Results::Together => vec![written],
        Results::PerReport => written.into_iter().map(|w| vec![w]).collect(),
        Results::PerObservation => {
            let changed = |kind: &str, r: &Value| {
                let id = r["id"].as_str().unwrap_or("");
                v.of(kind).any(|c| c.id == id)
            };
            let mut out = Vec::new();
            // the results that changed; a report that changed without any of its results
            // (its status, its conclusion) is told by all of them
            for (report, results) in written {
                let (changed_results, others): (Vec<Value>, Vec<Value>) =
                    results.into_iter().partition(|o| changed("Observation", o));
                let told = match changed_results.is_empty() {
                    true => others,
                    false => changed_results,
                };
                out.extend(told.into_iter().map(|o| vec![(report.clone(), vec![o])]));
            }
            out
        }
    };
    if let [one] = messages.as_slice() {
        return Ok(Ok(Rendered::Message {
            kind: "ORU^R01".into(),
            text: oru::oru(env, patient, encounter.as_ref(), one),
        }));
    }
    let parts = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let env = Envelope {
                control_id: format!("{}-{}", env.control_id, i + 1),
                ..env.clone()
            };
            let text = oru::oru(&env, patient, encounter.as_ref(), m);
            (env.control_id, text)
        })
        .collect();
    Ok(Ok(Rendered::Parts {
        kind: "ORU^R01".into(),
        parts,
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
