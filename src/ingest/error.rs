//! What the ingest path answers besides success, in its own terms: the API turns these into
//! HTTP statuses (`api::error`), an adapter into its protocol's refusal (an HL7v2 AE).

use crate::fhir::Issue;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store's answer (not found, gone, conflict, forbidden, invalid for its rules...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The content does not pass validation: malformed structure (an issue coded `structure`)
    /// or well-formed but invalid content.
    #[error("{}", .0.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Issue>),
    /// The request cannot be carried out as asked (an id that does not match, a condition
    /// that is not a query).
    #[error("{}", .0.diagnostics)]
    BadRequest(Issue),
    /// A condition matched more than the one resource it must.
    #[error("{0}")]
    Ambiguous(String),
    /// The change could not be applied to what is there (a JSON Patch whose test fails).
    #[error("{0}")]
    Unprocessable(String),
    /// The result would be larger than allowed.
    #[error("{0}")]
    TooLarge(String),
}

impl IngestError {
    pub fn bad_request(msg: impl Into<String>) -> IngestError {
        IngestError::BadRequest(Issue::error("invalid", msg))
    }
}

impl From<crate::store::search::SearchError> for IngestError {
    fn from(e: crate::store::search::SearchError) -> Self {
        use crate::store::search::SearchError;
        match e {
            SearchError::BadCursor => IngestError::bad_request(e.to_string()),
            SearchError::Store(s) => IngestError::Store(s),
        }
    }
}

impl From<diesel::result::Error> for IngestError {
    fn from(e: diesel::result::Error) -> Self {
        IngestError::Store(e.into())
    }
}
