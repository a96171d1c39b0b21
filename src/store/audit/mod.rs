//! The audit trail: one entry per access, kept in blocks (`block`) sealed into one hash chain
//! (`chain`). A write's entries are a block inserted in its own transaction (`insert_unsealed`);
//! every other access (a read, a search, a refusal, an HL7v2 message, a delivery) is handed to
//! `Store::audit`, which queues it for the flusher (`ops::audit`) to write as blocks off the
//! request path: a crash loses at most the flush interval's entries.
//!
//! A block, not a row, per access: a row per access with its five indexes cost an audited read
//! about 18 µs of the server's CPU, a block about 9 (docs/performance.md; issue 24's budget is
//! 10% of read throughput). A block is one row, one link of the chain, and one posting per
//! patient, entity, agent, type, subtype and outcome its entries name (`audit_postings`),
//! which is what searches find it by. A flush's blocks are posted later, a run of them at a
//! time (`postings`); until then searches read them whole.

use super::Store;
use crate::fhir::resource::{Micros, now_micros};

pub mod block;
mod chain;
mod legacy;
mod postings;

pub use block::{Block, Row, all, blocks_of, flush, insert_unsealed, named_term, term_of};
pub use chain::{Verified, forget_before, verify};
pub use legacy::convert;
pub use postings::{Owed, post_again};

/// What kind of access an entry records (its AuditEvent type).
pub mod kind {
    /// A FHIR REST interaction (read, search, create...).
    pub const REST: &str = "rest";
    /// A sign-in or a client's authentication.
    pub const LOGIN: &str = "login";
    /// An HL7v2 message received.
    pub const MESSAGE: &str = "hl7v2";
    /// A notification or outbound message delivered.
    pub const DELIVERY: &str = "delivery";
}

/// The names within an actor that an auditor asks by: `Practitioner/1 via client X` is the
/// user and the client (the whole name is found as itself).
pub fn actor_parts(actor: &str) -> impl Iterator<Item = &str> {
    actor
        .split_once(" via ")
        .into_iter()
        .flat_map(|(u, c)| [u, c])
}

/// One access, as it is queued.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub recorded_at: Micros,
    pub kind: String,
    /// The interaction or event (`read`, `search-type`, `login`, `ADT^A01`, `notification`).
    pub action: String,
    /// Who: the audit name of the client or user, the sending system.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<i64>,
    /// `success` or `failure`.
    pub outcome: String,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `Patient/id` the access concerned, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// What the access disclosed (a search's or a history's page): the flusher gives it one
    /// row per patient those resources belong to (`per_patient`), as IHE BALP's Patient Query
    /// asks, so that "who saw this patient's record" finds a search that showed it. Not stored.
    #[serde(skip)]
    pub shown: Vec<Shown>,
}

/// A resource an access disclosed (its content shared with the response, not copied).
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub resource_type: String,
    pub id: String,
    pub content: std::sync::Arc<str>,
}

/// Most rows one access becomes (a page holds at most 1,000 matches and their includes):
/// past that, the rest of its patients are named in the last row's detail as a count.
const MAX_PATIENTS: usize = 2_000;

impl Entry {
    /// This access as its rows: one per patient among what it disclosed (its own patient
    /// first, when its request named one), or itself alone when it disclosed none.
    pub fn per_patient(mut self) -> Vec<Entry> {
        let shown = std::mem::take(&mut self.shown);
        let mut seen = std::collections::HashSet::new();
        let mut patients: Vec<String> = Vec::new();
        let named = self.patient.take();
        let found = shown
            .iter()
            .filter_map(|s| patient_in(&s.resource_type, &s.id, &s.content));
        for p in named.into_iter().chain(found) {
            if seen.insert(p.clone()) {
                patients.push(p);
            }
        }
        if patients.is_empty() {
            return vec![self];
        }
        let left = patients.len().saturating_sub(MAX_PATIENTS);
        patients.truncate(MAX_PATIENTS);
        let mut rows: Vec<Entry> = patients
            .into_iter()
            .map(|p| Entry {
                patient: Some(p),
                ..self.clone()
            })
            .collect();
        if left > 0
            && let Some(last) = rows.last_mut()
        {
            last.detail = Some(format!("and {left} more patients not named"));
        }
        rows
    }
}

impl Entry {
    /// An entry recorded now.
    pub fn now(kind: &str, action: &str, actor: &str, correlation_id: &str) -> Entry {
        Entry {
            recorded_at: now_micros(),
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            outcome: "success".into(),
            correlation_id: correlation_id.into(),
            ..Entry::default()
        }
    }
}

/// The references a resource names its patient by (the rest of it is skipped unread).
#[derive(serde::Deserialize)]
struct PatientRefs {
    subject: Option<Reference>,
    patient: Option<Reference>,
    #[serde(default)]
    participant: Vec<Participant>,
}

#[derive(serde::Deserialize)]
struct Reference {
    reference: Option<String>,
}

/// The 64-bit key a text is looked up by: the first 8 bytes of its SHA-256 (an index of these
/// costs a fraction of one of the text; what a key finds is checked against the text, so keys
/// that collide find nothing wrong).
pub fn key_of(reference: &str) -> i64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, reference.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

#[derive(serde::Deserialize)]
struct Participant {
    actor: Option<Reference>,
}

/// The patient a stored resource is about (`Patient/id`): itself, or its subject, patient or
/// participant naming a Patient. Read without building the document: only those elements are
/// kept (a read's and a write's audit row is given it on every access).
pub fn patient_in(rtype: &str, id: &str, content: &str) -> Option<String> {
    if rtype == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    let refs = serde_json::from_str::<PatientRefs>(content).ok()?;
    let participants = refs.participant.into_iter().filter_map(|p| p.actor);
    [refs.subject, refs.patient]
        .into_iter()
        .flatten()
        .chain(participants)
        .filter_map(|r| r.reference)
        .find(|r| r.starts_with("Patient/"))
}

/// The patients accesses were about, so that "who saw this patient's record" finds them:
/// reads of resources other than Patients, and notifications of their changes, are given the
/// patient of the resource (the current
/// version's, from the cache the read filled; a resource read and deleted since is left
/// without), and a search or history becomes one row per patient its page showed.
pub fn name_patients(store: &Store, batch: Vec<Entry>) -> Vec<Entry> {
    let mut rows = Vec::with_capacity(batch.len());
    for mut e in batch {
        if !e.shown.is_empty() {
            rows.extend(e.per_patient());
            continue;
        }
        // (a notification told of a change disclosed it as a read does)
        let a_read = e.patient.is_none()
            && e.outcome == "success"
            && match e.kind.as_str() {
                kind::REST => matches!(e.action.as_str(), "read" | "vread" | "history-instance"),
                kind::DELIVERY => e.action == "event-notification",
                _ => false,
            };
        if let (true, Some(t), Some(id)) = (a_read, &e.resource_type, &e.resource_id)
            && let Ok(v) = store.current(t, id)
        {
            e.patient = patient_in(t, id, &v.content);
        }
        rows.push(e);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_one_row_per_patient_it_showed_its_own_first() {
        let shown = |t: &str, id: &str, content: &str| Shown {
            resource_type: t.into(),
            id: id.into(),
            content: content.into(),
        };
        let mut e = Entry::now(kind::REST, "search-type", "client a", "c1");
        e.patient = Some("Patient/9".into());
        e.query = Some("code=x".into());
        e.shown = vec![
            shown(
                "Observation",
                "1",
                r#"{"subject":{"reference":"Patient/2"}}"#,
            ),
            shown(
                "Observation",
                "2",
                r#"{"subject":{"reference":"Patient/9"}}"#,
            ),
            shown("Patient", "2", "{}"),
            shown("Observation", "3", r#"{"subject":{"reference":"Group/1"}}"#),
            shown("Encounter", "4", "not json"),
        ];
        let rows = e.per_patient();
        let patients: Vec<_> = rows.iter().map(|r| r.patient.as_deref()).collect();
        assert_eq!(patients, [Some("Patient/9"), Some("Patient/2")]);
        assert!(
            rows.iter()
                .all(|r| r.shown.is_empty() && r.query.as_deref() == Some("code=x"))
        );

        let mut none = Entry::now(kind::REST, "search-type", "client a", "c2");
        none.shown = vec![shown("Observation", "3", "{}")];
        let rows = none.per_patient();
        assert_eq!((rows.len(), rows[0].patient.as_deref()), (1, None));

        let mut many = Entry::now(kind::REST, "history-type", "client a", "c3");
        many.shown = (0..MAX_PATIENTS + 5)
            .map(|n| shown("Patient", &n.to_string(), "{}"))
            .collect();
        let rows = many.per_patient();
        assert_eq!(rows.len(), MAX_PATIENTS);
        assert_eq!(
            rows.last().unwrap().detail.as_deref(),
            Some("and 5 more patients not named")
        );
    }
}
