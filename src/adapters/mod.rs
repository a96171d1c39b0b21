//! Adapters between legacy interfaces and the canonical FHIR store.

pub mod hl7v2;
pub mod oauth2;
pub mod vendor;
