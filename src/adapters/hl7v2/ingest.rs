//! One message, from bytes to ACK: read it, map it, and write its resources, its archive row,
//! audit rows and outbox events in one transaction; only then answer AA. A resend of a message
//! already applied (same sending application, facility and control id) is answered AA again
//! and applied nothing. A message that cannot be applied is answered AE and kept, with the
//! reason, in the exception queue (`hl7v2_messages` with status `failed`) for replay.

use super::ack::{AckCode, Problem, ack};
use super::map::{self, Mapped, Resource, Unmapped};
use super::message::{self, Delimiters, Header, Message};
use super::zone::Zones;
use crate::auth::Grant;
use crate::fhir::resource::now_micros;
use crate::ingest::provenance;
use crate::ingest::restate::{Unit, restate_all};
use crate::ingest::{Channel, Ingest, IngestError, Source, Writer};
use crate::store::schema::hl7v2_messages as m;
use crate::store::{Current, Store, StoreError, Tx};
use diesel::prelude::*;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Message status in the archive.
pub mod status {
    pub const APPLIED: &str = "applied";
    /// In the exception queue: understood, not applied; replay once fixed.
    pub const FAILED: &str = "failed";
    pub const REJECTED: &str = "rejected";
    /// Was in the exception queue; a corrected copy of it has since been accepted.
    pub const REPLAYED: &str = "replayed";
    /// Not applied: a source-of-truth rule holds it for a person to review (AA sent: the hub
    /// has it); `release` applies it on that person's word.
    pub const HELD: &str = "held";
}

/// What became of one message (the ACK to send back, and for the caller's logs and tests).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The application acknowledgement (AA, AE or AR): the ACK of original mode.
    pub ack: String,
    /// Enhanced mode's accept acknowledgement (CA or CR).
    pub accept_ack: String,
    /// MSH-15 and MSH-16 of the message: when the sender wants each (see `replies`).
    pub accept_condition: String,
    pub application_condition: String,
    pub code: AckCode,
    pub correlation_id: String,
    pub duplicate: bool,
    pub problem: Option<Problem>,
    /// What was applied without what the sender said there (AA with an ERR of severity W each).
    pub warnings: Vec<Problem>,
}

impl Outcome {
    /// What to send back, in order. Original mode (or a sender that puts a condition of table
    /// 0155 in neither MSH-15 nor MSH-16): the one ACK. Enhanced mode: the accept ACK if MSH-15 asks for it, then the
    /// application ACK if MSH-16 does; possibly nothing (`NE`, `NE`). `original_only` is the
    /// server's setting for senders that fill those fields but expect one ACK all the same.
    pub fn replies(&self, original_only: bool) -> Vec<&str> {
        let enhanced = super::ack::is_condition(&self.accept_condition)
            || super::ack::is_condition(&self.application_condition);
        if original_only || !enhanced {
            return vec![&self.ack];
        }
        let mut out = Vec::new();
        if super::ack::wanted(&self.accept_condition, self.code != AckCode::Reject) {
            out.push(self.accept_ack.as_str());
        }
        if super::ack::wanted(&self.application_condition, self.code == AckCode::Accept) {
            out.push(self.ack.as_str());
        }
        out
    }
}

/// One message as received: what its archive row and its ACK are made of.
struct Received {
    header: Header,
    delimiters: Delimiters,
    /// The text as the archive keeps it: sealed under the master key when there is one (a
    /// message is patient data, and the archive keeps it for months).
    stored: String,
    /// `content_hash(text)`, computed once.
    hash: String,
    correlation_id: String,
    received_at: i64,
    /// Who released it from review, when it is applied on a person's word.
    reviewed_by: Option<String>,
    /// The patient's MRN as the sender gave it (`mrn_of`), for the transaction log.
    mrn: Option<String>,
    /// Run again from the archive (replay, release), not just off the wire: its ACK time is
    /// not the feed's latency (the wait was a person's).
    again: bool,
}

/// One run of a parsed message through the maps.
pub struct Run {
    pub correlation_id: String,
    pub received_at: i64,
    /// Who released it from review, when it is applied on a person's word.
    pub reviewed_by: Option<String>,
    /// Run again from the archive (replay, release).
    pub again: bool,
}

impl Received {
    /// The control id the archive keys it by: a message without a readable one is kept under
    /// its correlation id (so that two of them never collide).
    fn control_id(&self) -> &str {
        match self.header.control_id.as_str() {
            "" => &self.correlation_id,
            id => id,
        }
    }

    /// Answer AR or AE with `problem`, after keeping the message with status `st`.
    fn refuse(self, store: &Store, st: &str, code: AckCode, problem: Problem) -> Outcome {
        archive(store, &self, st, code, &problem);
        self.reply(code, Some(problem), Vec::new(), false)
    }

    fn reply(
        self,
        code: AckCode,
        problem: Option<Problem>,
        warnings: Vec<Problem>,
        duplicate: bool,
    ) -> Outcome {
        log_outcome(&self, code, problem.as_ref(), duplicate);
        // the random end of the correlation id (its start is a time, shared within a
        // millisecond): 16 hex digits, so that "ACK" + id fits MSH-10's 20 characters of v2.3
        let hex = self.correlation_id.replace('-', "");
        let id = &hex[hex.len().saturating_sub(16)..];
        let (d, h) = (&self.delimiters, &self.header);
        // a refused message's accept ACK says why; one kept (even in the exception queue) is
        // simply accepted for keeping
        let refused = (code == AckCode::Reject)
            .then_some(())
            .and(problem.as_ref());
        Outcome {
            ack: ack(
                d,
                h,
                code.as_str(),
                problem.as_ref(),
                &warnings,
                &format!("ACK{id}"),
            ),
            accept_ack: ack(d, h, code.commit_str(), refused, &[], &format!("ACC{id}")),
            accept_condition: h.accept_ack.clone(),
            application_condition: h.application_ack.clone(),
            code,
            correlation_id: self.correlation_id,
            duplicate,
            problem,
            warnings,
        }
    }
}

/// One log line per message: what it was and what it was answered; a warning when it was
/// not applied, with the reason (the exception queue has the rest).
fn log_outcome(r: &Received, code: AckCode, problem: Option<&Problem>, duplicate: bool) {
    let h = &r.header;
    let kind = format!("{}^{}", h.message_type, h.trigger);
    let from = format!("{}@{}", h.sending_application, h.sending_facility);
    let id = r.control_id();
    match (code, problem) {
        (AckCode::Accept, _) => {
            tracing::info!(control_id = %id, %kind, %from, ack = code.as_str(), duplicate, correlation_id = %r.correlation_id, "HL7v2 message")
        }
        (_, p) => {
            let (at, why) = p
                .map(|p| (p.location.as_str(), p.text.as_str()))
                .unwrap_or_default();
            tracing::warn!(control_id = %id, %kind, %from, ack = code.as_str(), at, why, correlation_id = %r.correlation_id, "HL7v2 message not applied")
        }
    }
}

/// What the archive keeps of a message's text: sealed when the operator gave a master key.
fn archived_text(store: &Store, text: &str) -> String {
    match store.seal() {
        Some(seal) => seal.seal(ARCHIVE_SEALED_AS, text.as_bytes()),
        None => text.to_string(),
    }
}

/// What an archived message's text is sealed as (bound into its seal).
pub const ARCHIVE_SEALED_AS: &str = "hl7v2 message";

/// The HL7v2 side of a server: the ingest path its messages go through, and the time zones
/// of their senders. Cheap to clone.
#[derive(Clone)]
pub struct Inbound {
    pub ingest: Ingest,
    pub zones: Arc<Zones>,
}

/// Handle one message's bytes (blocking: call from a blocking thread).
pub fn handle(inbound: &Inbound, raw: &[u8]) -> Outcome {
    let received_at = now_micros();
    let correlation_id = crate::store::new_correlation_id();
    let text = message::decode(raw);
    let outcome = handle_text(inbound, &text, (correlation_id, received_at));
    // counted by what MSH-9 says, as far as it reads, whatever became of the message
    let h = loose_header(&text);
    let (kind, trigger) = labels(&h.message_type, &h.trigger);
    metrics::counter!("emrsync_hl7v2_messages_total",
        "type" => kind, "trigger" => trigger, "ack" => outcome.code.as_str())
    .increment(1);
    metrics::histogram!("emrsync_hl7v2_message_duration_seconds", "type" => kind)
        .record(crate::fhir::resource::seconds_since(received_at));
    audit(&inbound.ingest.store, &h, &outcome);
    outcome
}

/// One message, once, in the audit trail: from whom, what, and what became of it (the
/// resources it wrote are audited by their own rows, under the same correlation id).
fn audit(store: &crate::store::Store, h: &Header, outcome: &Outcome) {
    use crate::store::audit::{Entry, kind};
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    let what = clip(&format!("{}^{}", h.message_type, h.trigger));
    let who = clip(&format!(
        "hl7v2 {}@{}",
        h.sending_application, h.sending_facility
    ));
    let mut e = Entry::now(kind::MESSAGE, &what, &who, &outcome.correlation_id);
    let ack = outcome.code.as_str();
    if ack != "AA" {
        e.outcome = "failure".into();
    }
    let problem = outcome
        .problem
        .as_ref()
        .map(|p| format!(": {}", p.text))
        .unwrap_or_default();
    e.detail = Some(clip(&format!("control id {}", h.control_id)) + &format!(", {ack}{problem}"));
    store.audit(e);
}

/// Message types counted by name (the HL7 table 0076 codes a hub sees); any other is `other`,
/// so a sender cannot make the metrics grow without bound.
const COUNTED_TYPES: &[&str] = &[
    "ACK", "ADT", "BAR", "DFT", "MDM", "MFN", "OML", "OMG", "ORL", "ORM", "ORU", "OUL", "PPR",
    "QBP", "RAS", "RDE", "RDS", "RSP", "SIU", "VXU",
];

/// The type and trigger labels of a message: a known type, and a trigger of its form (a
/// letter and two digits), else `other`.
fn labels(kind: &str, trigger: &str) -> (&'static str, String) {
    let Some(kind) = COUNTED_TYPES.iter().copied().find(|t| *t == kind) else {
        return ("other", "other".into());
    };
    let b = trigger.as_bytes();
    let well_formed =
        b.len() == 3 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit);
    (
        kind,
        if well_formed {
            trigger.to_string()
        } else {
            "other".into()
        },
    )
}

fn handle_text(
    inbound: &Inbound,
    text: &str,
    (correlation_id, received_at): (String, i64),
) -> Outcome {
    let store = &inbound.ingest.store;
    match message::parse(text) {
        Ok(msg) => {
            let run = Run {
                correlation_id,
                received_at,
                reviewed_by: None,
                again: false,
            };
            process(inbound, &msg, text, run)
        }
        Err(e) => {
            // as much of the header as can be read, for the ACK's addressing
            let r = Received {
                header: loose_header(text),
                delimiters: Delimiters::default(),
                hash: content_hash(text),
                stored: archived_text(store, text),
                correlation_id,
                received_at,
                reviewed_by: None,
                mrn: None,
                again: false,
            };
            let problem = Problem {
                location: e.location,
                code: e.code,
                text: e.text,
            };
            r.refuse(store, status::REJECTED, AckCode::Reject, problem)
        }
    }
}

/// Map and apply a parsed message (also what replay runs), as `run` says; a person who
/// released it from review (`run.reviewed_by`) waives the source-of-truth rules.
pub fn process(inbound: &Inbound, msg: &Message, text: &str, run: Run) -> Outcome {
    let store = &inbound.ingest.store;
    let r = Received {
        header: msg.header(),
        delimiters: msg.delimiters,
        hash: content_hash(text),
        stored: archived_text(store, text),
        correlation_id: run.correlation_id,
        received_at: run.received_at,
        reviewed_by: run.reviewed_by,
        mrn: mrn_of(msg),
        again: run.again,
    };
    if !r.header.version.starts_with("2.") {
        let p = Problem {
            location: "MSH-12".into(),
            code: "203",
            text: format!("version '{}' is not HL7 v2.x", r.header.version),
        };
        return r.refuse(store, status::REJECTED, AckCode::Reject, p);
    }
    let secret = match super::identity::secret(store) {
        Ok(s) => s,
        Err(e) => {
            let p = Problem {
                location: String::new(),
                code: "207",
                text: format!("the message could not be stored: {e}"),
            };
            return r.refuse(store, status::FAILED, AckCode::Error, p);
        }
    };
    let writer = sender(&inbound.ingest, &r);
    let zone = inbound
        .zones
        .of_message(msg.msh().value(7), &r.header.sending_facility);
    let mapped = map::map(msg, secret.as_bytes(), zone)
        // a visit named by no number is the patient's open one (see `visits`)
        .and_then(|m| super::visits::in_open_visit(store, msg, secret.as_bytes(), zone, m))
        .and_then(|m| accepted(m, &writer));
    let mapped = match mapped {
        Ok(mapped) => mapped,
        Err(Unmapped::Unsupported(p)) => {
            return r.refuse(store, status::REJECTED, AckCode::Reject, p);
        }
        Err(Unmapped::Failed(p)) => return r.refuse(store, status::FAILED, AckCode::Error, p),
    };
    match apply(store, &writer, &r, &mapped) {
        Ok(Applied::Now) => r.reply(AckCode::Accept, None, mapped.warnings, false),
        Ok(Applied::Before(first)) => {
            tracing::info!(control_id = %r.header.control_id, first = %first, "resent message acknowledged again, not applied twice");
            Received {
                correlation_id: first,
                ..r
            }
            .reply(AckCode::Accept, None, mapped.warnings, true)
        }
        Err(StoreError::Held(why)) => {
            tracing::info!(control_id = %r.header.control_id, why = %why, "HL7v2 message held for review");
            let p = Problem {
                location: String::new(),
                code: "207",
                text: format!("held for review: {why}"),
            };
            archive(store, &r, status::HELD, AckCode::Accept, &p);
            r.reply(AckCode::Accept, None, vec![p], false)
        }
        Err(e) => {
            tracing::warn!(control_id = %r.header.control_id, error = %e, "HL7v2 message not applied");
            let text = match e {
                // the sender is not the source of truth: the rule's words say it all
                StoreError::NotOwner(why) => format!("not applied: {why}"),
                e => format!("the message could not be stored: {e}"),
            };
            let p = Problem {
                location: String::new(),
                code: "207",
                text,
            };
            r.refuse(store, status::FAILED, AckCode::Error, p)
        }
    }
}

/// The writer of a message: its sender, by application and facility, under the message's
/// correlation id. A sender is not held to a token's scopes (its connection was admitted by
/// the listener's peer rules), but to everything else on the ingest path.
fn sender(ingest: &Ingest, r: &Received) -> Writer {
    let h = &r.header;
    let system = format!("{}@{}", h.sending_application, h.sending_facility);
    ingest.writer(
        Arc::new(Grant::unrestricted()),
        crate::store::Actor::Named(format!("hl7v2 {system}")),
        Source {
            channel: Channel::Hl7v2,
            system,
            reviewed_by: r.reviewed_by.clone(),
        },
        r.correlation_id.clone(),
    )
}

/// Every mapped resource goes through the ingest path's first step (codes normalised, valid
/// R4, canonical JSON) before anything is written: a map that produced an invalid one is a
/// failed message (AE), never a half-written one. What the step warns of travels with the AA.
fn accepted(mapped: Mapped, writer: &Writer) -> Result<Mapped, Unmapped> {
    let mut warnings = mapped.warnings;
    let mut resources = Vec::with_capacity(mapped.resources.len());
    for r in mapped.resources {
        let accepted = writer.accept(r.body, r.rtype, false).map_err(|e| {
            let why = match e {
                IngestError::Invalid(issues) => issues
                    .iter()
                    .map(|i| match &i.expression {
                        Some(at) => format!("{} ({at})", i.diagnostics),
                        None => i.diagnostics.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            let msg = format!(
                "the {} mapped from this message is not valid FHIR: {why}",
                r.rtype
            );
            map::failed("", "207", msg)
        })?;
        warnings.extend(accepted.warnings.into_iter().map(|i| Problem {
            location: i.expression.clone().unwrap_or_default(),
            code: "207",
            text: i.diagnostics,
        }));
        resources.push(Resource {
            body: accepted.resource,
            ..r
        });
    }
    Ok(Mapped {
        resources,
        warnings,
        ..mapped
    })
}

/// The warnings of a message applied, as the one problem its archive row has room for.
fn left_out(warnings: &[Problem]) -> Option<Problem> {
    let first = warnings.first()?;
    Some(Problem {
        location: first.location.clone(),
        code: first.code,
        text: warnings
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

enum Applied {
    Now,
    /// Applied before, under this correlation id.
    Before(String),
}

fn apply(
    store: &Store,
    writer: &Writer,
    r: &Received,
    mapped: &Mapped,
) -> Result<Applied, StoreError> {
    let unit = MessageUnit { r, mapped, writer };
    restate_all(store, writer, &mapped.resources, &unit)
}

/// What a message adds to the transaction of its resources: the resend check, its merges and
/// its archive row.
struct MessageUnit<'a> {
    r: &'a Received,
    mapped: &'a Mapped,
    writer: &'a Writer,
}

impl Unit for MessageUnit<'_> {
    type Done = Applied;
    /// Whether the archive has a row of this message already (one not applied).
    type Seen = bool;

    /// A resend of a message applied before is not applied again (the archive is read first).
    fn look(&self, tx: &mut Tx) -> Result<ControlFlow<Applied, bool>, StoreError> {
        Ok(match previous(tx.conn, self.r)? {
            Some((st, first)) if st == status::APPLIED => {
                ControlFlow::Break(Applied::Before(first))
            }
            archived => ControlFlow::Continue(archived.is_some()),
        })
    }

    fn over(&self, stated: &Resource, current: &Current) -> serde_json::Value {
        let Some(old) = &current.json else {
            return stated.body.clone();
        };
        let key = stated.reference();
        let cleared: Vec<&str> = (self.mapped.cleared.iter())
            .filter(|(of, _)| *of == key)
            .map(|(_, e)| *e)
            .collect();
        match stated.rtype {
            "Patient" => super::nulls::patient_over(&stated.body, old, &cleared),
            "Encounter" => super::nulls::encounter_over(&stated.body, old, &cleared),
            _ => stated.body.clone(),
        }
    }

    fn finish(
        &self,
        tx: &mut Tx,
        known: bool,
        mut written: Vec<String>,
    ) -> Result<Applied, StoreError> {
        for merge in &self.mapped.merges {
            written.extend(super::merge::apply(tx, merge, self.writer)?);
        }
        // which system, which message, which map: the Provenance of what was written
        let h = &self.r.header;
        let kind = format!("{}^{}", h.message_type, h.trigger);
        let sender = format!(
            "urn:emrsync:hl7v2:{}",
            self.writer.source.system.replace(' ', "%20")
        );
        let map = format!("urn:emrsync:map:hl7v2:{}_{}", h.message_type, h.trigger);
        let message = provenance::Message {
            event: (&h.trigger, &kind),
            identifier: (&sender, self.r.control_id()),
            map: &map,
        };
        provenance::record(tx, self.writer, &written, &message)?;
        // what was left out is kept with the message, for the integration team to see
        let left_out = left_out(&self.mapped.warnings);
        record(
            tx.conn,
            self.r,
            status::APPLIED,
            AckCode::Accept,
            left_out.as_ref(),
            &written,
            known,
        )?;
        Ok(Applied::Now)
    }
}

/// What makes two messages with one control id the same message: their text but for MSH-7
/// (a sender resending may stamp a new time). Some senders reuse control ids for different
/// messages; those are different messages, not resends.
fn content_hash(text: &str) -> String {
    let text = text.trim_start_matches('\u{feff}');
    let (first, rest) = text.split_once(['\r', '\n']).unwrap_or((text, ""));
    let sep = first.get(3..4).unwrap_or("|");
    let mut fields: Vec<&str> = first.split(sep).collect();
    if fields.len() > 6 {
        fields[6] = "";
    }
    let normalised = format!(
        "{}\r{}",
        fields.join(sep),
        rest.replace("\r\n", "\r").replace('\n', "\r")
    );
    // a content hash, not an id: the same everywhere (archive rows are matched by it)
    super::identity::stable_id(b"", "hl7v2-message", &[&normalised])
}

/// The archived message with this key (and content): its status and first correlation id.
fn previous(
    conn: &mut crate::store::db::DbConnection,
    r: &Received,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(m::table
        .filter(m::sending_application.eq(&r.header.sending_application))
        .filter(m::sending_facility.eq(&r.header.sending_facility))
        .filter(m::control_id.eq(r.control_id()))
        .filter(m::content_hash.eq(&r.hash))
        .select((m::status, m::correlation_id))
        .get_result(conn)
        .optional()?)
}

/// The patient's identifier a person searching the transaction log types: PID-3's repetition
/// typed MR (CX-5), else its first; clipped, since a sender's field is not bounded here.
fn mrn_of(msg: &Message) -> Option<String> {
    let ids = msg.first("PID")?.field(3);
    let mrn = (ids.repetitions().find(|r| r.get(5) == "MR"))
        .unwrap_or_else(|| ids.first())
        .get(1)
        .trim();
    (!mrn.is_empty()).then(|| mrn.chars().take(64).collect())
}

/// The Patient a message wrote (`Patient/{id}` among what it wrote), for the transaction log.
fn patient_written(written: &[String]) -> Option<String> {
    written.iter().find_map(|w| {
        let id = w.strip_prefix("Patient/")?;
        Some(id.split('/').next().unwrap_or(id).to_string())
    })
}

/// Insert or update the message's archive row; `archived`: whether it has one already (a
/// message new to the archive is inserted without trying an update first).
fn record(
    conn: &mut crate::store::db::DbConnection,
    r: &Received,
    st: &str,
    code: AckCode,
    problem: Option<&Problem>,
    written: &[String],
    archived: bool,
) -> Result<(), StoreError> {
    let now = now_micros();
    let resources = serde_json::to_string(written).unwrap_or_else(|_| "[]".into());
    let outcome = (
        m::correlation_id.eq(&r.correlation_id),
        m::processed_at.eq(now),
        m::status.eq(st),
        m::ack_code.eq(code.as_str()),
        m::error_location.eq(problem.map(|p| p.location.clone())),
        m::error_code.eq(problem.map(|p| p.code.to_string())),
        m::error.eq(problem.map(|p| p.text.clone())),
        m::resources.eq(&resources),
        m::raw.eq(&r.stored),
        m::mrn.eq(&r.mrn),
        m::patient.eq(patient_written(written)),
    );
    let updated = if !archived {
        0
    } else {
        diesel::update(
            m::table
                .filter(m::sending_application.eq(&r.header.sending_application))
                .filter(m::sending_facility.eq(&r.header.sending_facility))
                .filter(m::control_id.eq(r.control_id()))
                .filter(m::content_hash.eq(&r.hash))
                // a copy of it applied since it was read stays applied, and this one is not
                .filter(m::status.ne(status::APPLIED)),
        )
        .set((outcome.clone(), m::attempts.eq(m::attempts + 1)))
        .execute(conn)?
    };
    if archived && updated == 0 {
        return Err(StoreError::Conflict(
            "another copy of this message was applied meanwhile".into(),
        ));
    }
    if updated == 0 {
        diesel::insert_into(m::table)
            .values((
                outcome,
                (
                    m::id.eq(&r.correlation_id),
                    m::sending_application.eq(&r.header.sending_application),
                    m::sending_facility.eq(&r.header.sending_facility),
                    m::control_id.eq(r.control_id()),
                    m::content_hash.eq(&r.hash),
                    m::message_type.eq(&r.header.message_type),
                    m::trigger_event.eq(&r.header.trigger),
                    m::version.eq(&r.header.version),
                    m::received_at.eq(r.received_at),
                    m::acked_at.eq((!r.again).then_some(now)),
                    m::attempts.eq(1),
                ),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Keep a message that was not applied. A failure to archive is logged: the sender still
/// gets its AE/AR and will resend or be looked into.
fn archive(store: &Store, r: &Received, st: &str, code: AckCode, problem: &Problem) {
    let result = store.write_rows(|c| {
        // a message applied before stays applied: a later failed resend does not undo it
        let archived = previous(c, r)?;
        if let Some((prev, _)) = &archived
            && prev == status::APPLIED
        {
            return Ok(());
        }
        record(c, r, st, code, Some(problem), &[], archived.is_some())
    });
    if let Err(e) = result {
        tracing::error!(error = %e, correlation_id = %r.correlation_id, "could not archive an HL7v2 message");
    }
}

/// The header fields of a message the parser refused, read as far as they go (for addressing
/// the AR): split the first line on its apparent field separator.
fn loose_header(text: &str) -> Header {
    let first = text
        .trim_start_matches('\u{feff}')
        .split(['\r', '\n'])
        .next()
        .unwrap_or("");
    if !first.starts_with("MSH") || first.len() < 4 {
        return Header::default();
    }
    let sep = first[3..].chars().next().unwrap_or('|');
    let parts: Vec<&str> = first.split(sep).collect();
    let get = |n: usize| {
        parts
            .get(n - 1)
            .map(|p| p.split('^').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let ty = parts.get(8).copied().unwrap_or("");
    let mut t = ty.split('^');
    Header {
        sending_application: get(3),
        sending_facility: get(4),
        receiving_application: get(5),
        receiving_facility: get(6),
        message_type: t.next().unwrap_or("").to_string(),
        trigger: t.next().unwrap_or("").to_string(),
        control_id: get(10),
        processing_id: get(11),
        version: get(12),
        accept_ack: String::new(),
        application_ack: String::new(),
    }
}
