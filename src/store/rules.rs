//! The rules a writer is held to, as the store sees them: an interface that the parts above it
//! implement (the grant of an access token, the Subscription and topic rules), so that every
//! write path goes through them where the old and new contents are at hand, and the store
//! itself knows nothing of tokens or Subscriptions.

use super::db::DbConnection;
use super::error::StoreError;
use super::seal::Seal;
use super::versions::{Version, WriteContext};
use serde_json::Value;

/// What a write does to a resource, for the rules that allow it or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Update,
    Delete,
}

/// What a writer's rules took out of a resource before it was stored (a Subscription's
/// write-only channel headers), handed back to them when the change is recorded.
pub type SetAside = Vec<String>;

/// The rules one writer is held to. Each method has the answer of a writer held to nothing,
/// so an implementation says only what it adds.
pub trait WriteRules: Send + Sync + std::fmt::Debug {
    /// May this writer make `kind` of change to `rtype/id`, making it `new` (absent for a
    /// delete) from what `old` gives (the current content, if any)? `old` is called only by
    /// rules that look at it, since it may cost a read.
    fn allow(
        &self,
        kind: WriteKind,
        rtype: &str,
        id: &str,
        new: Option<&Value>,
        old: &mut dyn FnMut() -> Option<Value>,
    ) -> Result<(), StoreError> {
        let _ = (kind, rtype, id, new, old);
        Ok(())
    }

    /// The resource as it is to be stored, and what was taken out of it (see `SetAside`).
    fn set_aside(
        &self,
        rtype: &str,
        resource: Value,
        ctx: &WriteContext,
    ) -> (Value, Option<SetAside>) {
        let _ = (rtype, ctx);
        (resource, None)
    }

    /// A change, as it is recorded in its transaction (`action`: create, update or delete):
    /// the place for rows that must change with it, or a refusal that rolls it back.
    fn recorded(&self, change: Recorded<'_>) -> Result<(), StoreError> {
        let _ = change;
        Ok(())
    }
}

/// One change as `WriteRules::recorded` sees it.
pub struct Recorded<'a> {
    pub conn: &'a mut DbConnection,
    pub version: &'a Version,
    pub action: &'static str,
    pub set_aside: Option<SetAside>,
    pub ctx: &'a WriteContext,
    /// The operator's master key, for what must be sealed when stored.
    pub seal: Option<&'a Seal>,
}

/// Rules that hold a writer to nothing: for the store's own tests and tools that move data as
/// it is (never for a client's or a sender's writes).
#[derive(Debug, Default)]
pub struct Unchecked;

impl WriteRules for Unchecked {}
