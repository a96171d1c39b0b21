//! HL7v2 in (ADT, ORU, ORM/OML, RDE/RAS, VXU, SIU, MDM): an MLLP listener (`mllp`), the message
//! parser (`message`), original-mode ACKs (`ack`), v2-to-FHIR maps (`map`, with `datatypes` and
//! stable `identity`), and `ingest`, which writes a message's resources and its archive row in
//! one transaction before the ACK (a patient merge's moves too, `merge`); the archive and
//! exception queue with replay (`queue`).

pub mod ack;
pub mod batch;
pub mod codes;
pub mod concept_maps;
pub mod datatypes;
pub mod identity;
pub mod ingest;
pub mod map;
pub mod merge;
pub mod message;
pub mod mllp;
pub mod nulls;
pub mod out;
pub mod peers;
pub mod queue;
pub mod visits;
pub mod zone;

#[cfg(test)]
mod properties;
