//! FHIR R4 itself: the structure facts, validation, the fhirbolt model, OperationOutcome and
//! Bundles, independent of HTTP and of the store.

pub mod bundle;
pub mod definitions;
pub mod fhirpath;
pub mod model;
pub mod nesting;
pub mod outcome;
pub mod parameters;
pub mod patch;
pub mod profile;
#[cfg(test)]
mod properties;
pub mod resource;
pub mod search;
pub mod subset;
pub mod validate;

pub use outcome::{Issue, Severity, operation_outcome};
pub use resource::FhirId;
