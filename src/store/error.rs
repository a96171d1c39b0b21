//! What the store can answer besides success. Handlers turn these into HTTP statuses in one
//! place (`api::error`); the store itself knows nothing of HTTP.

use crate::fhir::resource::Micros;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource_type}/{id} is not known")]
    NotFound { resource_type: String, id: String },
    #[error("{resource_type}/{id} was deleted (version {version_id})")]
    Gone {
        resource_type: String,
        id: String,
        version_id: i64,
        last_updated: Micros,
    },
    /// If-Match named a version that is no longer current.
    #[error("version conflict: If-Match expected version {expected}, current is {current}")]
    PreconditionFailed { expected: i64, current: i64 },
    /// Another writer changed the resource between our read and our write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The writer's token does not allow this write (403).
    #[error("{0}")]
    Forbidden(String),
    /// The writer is not the source of truth of what it changes (409; an HL7v2 AE).
    #[error("{0}")]
    NotOwner(String),
    /// The same, where the rule holds a feed's message for a person to review rather than
    /// refusing it (the HL7v2 archive keeps it as `held`).
    #[error("{0}")]
    Held(String),
    /// The content is not acceptable for reasons the store checks itself (a Subscription
    /// with an unknown topic, say): 422 with these issues.
    #[error("{}", .0.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<crate::fhir::Issue>),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => StoreError::Conflict(
                format!("a concurrent write won the race ({})", info.message()),
            ),
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                StoreError::Conflict(info.message().to_string())
            }
            other => {
                let text = other.to_string();
                // PostgreSQL rolled this transaction back to break a deadlock: like a lost
                // race, it can be tried again
                if text.contains("deadlock detected") {
                    StoreError::Conflict(text)
                } else if text.contains("database is locked") || text.contains("busy") {
                    StoreError::Unavailable(text)
                } else {
                    StoreError::Database(text)
                }
            }
        }
    }
}

/// The outcome of an INSERT whose key may already exist: `true` when the row went in, `false`
/// when a row with that key was already there (a duplicate client, a replayed `jti`).
pub fn inserted(result: diesel::QueryResult<usize>) -> Result<bool, StoreError> {
    use diesel::result::{DatabaseErrorKind, Error};
    match result {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
