//! The store's write rules of a writer on the ingest path: its grant and the Subscription
//! rules, then the source-of-truth and identity hooks.

use super::hooks::Refusal;
use super::{Channel, Hooks, Source};
use crate::store::rules::{Recorded, SetAside, WriteKind, WriteRules};
use crate::store::{StoreError, WriteContext};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct Rules {
    pub client: crate::subscriptions::write_rules::Rules,
    pub hooks: Arc<Hooks>,
    pub source: Arc<Source>,
}

impl WriteRules for Rules {
    fn allow(
        &self,
        kind: WriteKind,
        rtype: &str,
        id: &str,
        new: Option<&Value>,
        old: &mut dyn FnMut() -> Option<Value>,
    ) -> Result<(), StoreError> {
        self.client.allow(kind, rtype, id, new, old)?;
        for truth in &self.hooks.truth {
            truth
                .admits(&self.source, kind, rtype, new, old)
                .map_err(|r| match r {
                    // a client waits for its answer: nothing of its write can wait for review
                    Refusal::Hold(why) if self.source.channel != Channel::Rest => {
                        StoreError::Held(why)
                    }
                    Refusal::Hold(why) | Refusal::Refuse(why) => StoreError::NotOwner(why),
                })?;
        }
        Ok(())
    }

    fn set_aside(
        &self,
        rtype: &str,
        resource: Value,
        ctx: &WriteContext,
    ) -> (Value, Option<SetAside>) {
        self.client.set_aside(rtype, resource, ctx)
    }

    fn recorded(&self, change: Recorded<'_>) -> Result<(), StoreError> {
        for identity in &self.hooks.identity {
            identity.resolve(change.conn, &self.source, change.version)?;
        }
        for derived in &self.hooks.derived {
            derived.record(change.conn, change.version)?;
        }
        self.client.recorded(change)
    }
}
