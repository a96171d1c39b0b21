//! Where the ingest path asks the parts that decide more than FHIR does: code normalisation
//! (local codes mapped to standard ones), source-of-truth checks (which system may write which
//! data) and identity resolution (a source's Patient linked to one enterprise identity). Each
//! is a small interface; a server runs with the implementations it is given, in order, and
//! every source's resources pass through the same ones.

use super::Source;
use crate::fhir::Issue;
use crate::store::db::DbConnection;
use crate::store::{StoreError, Version, WriteKind};
use serde_json::Value;
use std::sync::Arc;

/// Adds the standard coding to a resource's local codes (keeping the original), before it is
/// validated. What it could not map, it says as warnings (they reach the client's
/// OperationOutcome or the sender's ACK) or keeps on a worklist, never dropped in silence.
/// `correlation_id` names the write (an HL7v2 message's, a request's).
pub trait CodeNormaliser: Send + Sync + std::fmt::Debug {
    fn normalise(
        &self,
        source: &Source,
        correlation_id: &str,
        rtype: &str,
        resource: &mut Value,
    ) -> Vec<Issue>;

    /// Write what it keeps for later (the unmapped codes it met): the server calls this every
    /// few seconds, a command before it exits.
    fn flush(&self) {}
}

/// Why a source may not make a change, and what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Refused: 409 for a client, AE for a sender.
    Refuse(String),
    /// Held for a person to review (a feed's message; a client's write is refused).
    Hold(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Refuse(why) | Refusal::Hold(why) => f.write_str(why),
        }
    }
}

/// Decides whether `source` may make this change (`new` is absent for a delete; `old` reads
/// the current version, if any, when the decision needs it): a refusal says why.
pub trait SourceOfTruth: Send + Sync + std::fmt::Debug {
    fn admits(
        &self,
        source: &Source,
        kind: WriteKind,
        rtype: &str,
        new: Option<&Value>,
        old: &mut dyn FnMut() -> Option<Value>,
    ) -> Result<(), Refusal>;
}

/// Called in the write's transaction for every version written, deletions included: the place
/// to link it to an enterprise identity (rows that commit or roll back with the change).
pub trait IdentityResolver: Send + Sync + std::fmt::Debug {
    fn resolve(
        &self,
        conn: &mut DbConnection,
        source: &Source,
        version: &Version,
    ) -> Result<(), StoreError>;
}

/// Called in the write's transaction for every version written, deletions included, after
/// identity: rows kept beside a resource that must commit or roll back with it (the concepts
/// of a CodeSystem, say). An error refuses the write.
pub trait Derived: Send + Sync + std::fmt::Debug {
    fn record(&self, conn: &mut DbConnection, version: &Version) -> Result<(), StoreError>;
}

/// The hooks one server runs, each list in order; empty lists change nothing.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    pub codes: Vec<Arc<dyn CodeNormaliser>>,
    pub truth: Vec<Arc<dyn SourceOfTruth>>,
    pub identity: Vec<Arc<dyn IdentityResolver>>,
    pub derived: Vec<Arc<dyn Derived>>,
}
