//! HL7v2 in (ADT and ORU^R01 so far): an MLLP listener (`mllp`), the message parser
//! (`message`), original-mode ACKs (`ack`), v2-to-FHIR maps (`map`, with `datatypes` and
//! stable `identity`), and `ingest`, which writes a message's resources and its archive row in
//! one transaction before the ACK; the archive and exception queue with replay (`queue`).

pub mod ack;
pub mod datatypes;
pub mod identity;
pub mod ingest;
pub mod map;
pub mod message;
pub mod mllp;
pub mod queue;
