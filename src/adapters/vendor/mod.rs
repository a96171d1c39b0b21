//! Vendors' proprietary REST/JSON APIs and file drops, declared as data: a source definition
//! says where the records are and how to page through them (or which files of its drop folder
//! hold them: `folder`, `dropped`, `delimited`), and a map per record type says
//! what FHIR resource each becomes (`mapping`). What a map makes goes the way of every other
//! source: `ingest::restate`, the same validation, codes, identity, source of truth, audit and
//! outbox as an HL7v2 message's resources.

mod cursor;
pub mod delimited;
pub mod dropped;
pub mod folder;
pub mod mapping;
pub mod page;
pub mod poll;
pub mod source;
pub mod webhook;
