//! HL7v2 out: FHIR resources written as v2 messages for the target EMRs that speak it
//! (issue 23). `write` builds segments and writes them with a target's delimiters, escaping
//! every value; one module per kind of message, each the inbound map of that kind turned
//! round: `adt` (Patients and Encounters, merges), `oru` (results), `orm` (orders),
//! `pharmacy` (RDE), `vaccination` (VXU), `scheduling` (SIU), `documents` (MDM). `client` is
//! the MLLP client of one target.

pub mod adt;
pub mod client;
pub mod documents;
pub mod orm;
pub mod oru;
pub mod pharmacy;
pub mod scheduling;
pub mod vaccination;
pub mod write;
