//! HL7v2 out: FHIR resources written as v2 messages for the target EMRs that speak it
//! (issue 23). `write` builds segments and writes them with a target's delimiters, escaping
//! every value; `adt` renders Patients and Encounters as ADT. The MLLP client per target and
//! the other message types follow.

pub mod adt;
pub mod client;
pub mod orm;
pub mod oru;
pub mod write;
