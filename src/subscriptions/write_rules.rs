//! The rules every resource write is held to above the store: the writer's grant (its access
//! token's scopes and compartment), and the Subscription and topic rules this part owns. The
//! store calls them through `store::WriteRules` on every path (REST, Bundle, HL7v2), where the
//! old and new contents are at hand.

use super::{registry, subscription, topic_basic};
use crate::auth::{Denied, Grant, Interaction, Reach};
use crate::store::rules::{Recorded, SetAside, WriteKind, WriteRules};
use crate::store::{Actor, StoreError, WriteContext};
use serde_json::Value;
use std::sync::Arc;
use subscription::EndpointPolicy;

/// One writer's rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// What the writer may do.
    pub grant: Arc<Grant>,
    /// Where a Subscription written by this writer may send notifications.
    pub endpoints: Arc<EndpointPolicy>,
}

/// The write context of a writer with `grant`, under `correlation_id`.
pub fn context(
    correlation_id: String,
    actor: Actor,
    grant: Arc<Grant>,
    endpoints: Arc<EndpointPolicy>,
) -> WriteContext {
    WriteContext {
        correlation_id,
        actor,
        rules: Arc::new(Rules { grant, endpoints }),
    }
}

/// The server's own writes (a Subscription's status, the topic Basics): no grant limits them,
/// and the client rules of Subscriptions and topics are spared them (see `Actor::Server`).
pub fn server_context() -> WriteContext {
    context(
        crate::store::new_correlation_id(),
        Actor::Server,
        Arc::new(Grant::unrestricted()),
        Arc::default(),
    )
}

fn interaction(kind: WriteKind) -> Interaction {
    match kind {
        WriteKind::Create => Interaction::Create,
        WriteKind::Update => Interaction::Update,
        WriteKind::Delete => Interaction::Delete,
    }
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
        let what = interaction(kind);
        let denied = |d: Denied| StoreError::Forbidden(d.0);
        // a grant that reaches every resource of the type looks at no content (and reads none)
        if let Reach::All = self.grant.reach(what, rtype).map_err(denied)? {
            return Ok(());
        }
        if let Some(new) = new {
            // a Subscription is checked as it will be stored: marked as the patient's whose
            // token writes it (`set_aside`)
            let confined = (rtype == "Subscription")
                .then(|| self.grant.confinement(rtype))
                .flatten();
            match confined {
                Some(p) => {
                    let marked = subscription::confined_to(new.clone(), Some(&p));
                    self.grant
                        .check(what, rtype, id, || &marked)
                        .map_err(denied)?;
                }
                None => self.grant.check(what, rtype, id, || new).map_err(denied)?,
            }
        }
        // an update must also be allowed on what it replaces: a writer confined to one
        // patient may not take over another patient's resource
        if let Some(old) = old() {
            self.grant.check(what, rtype, id, || old).map_err(denied)?;
        }
        Ok(())
    }

    /// A Subscription's channel headers are write-only: they are taken out of the resource
    /// before it is stored and handed to the registry when the change is recorded, so that no
    /// read, search or history can show them. A client's Subscription also starts (again) as
    /// `requested` unless it turns it `off`: only the server moves it to `active` or `error`.
    fn set_aside(
        &self,
        rtype: &str,
        resource: Value,
        ctx: &WriteContext,
    ) -> (Value, Option<SetAside>) {
        if rtype != "Subscription" || ctx.actor.is_server() {
            return (resource, None);
        }
        let headers = subscription::headers_of(&resource);
        let patient = self.grant.confinement(rtype);
        let resource = subscription::confined_to(resource, patient.as_deref());
        (
            subscription::requested(subscription::without_headers(resource)),
            Some(headers),
        )
    }

    fn recorded(&self, change: Recorded<'_>) -> Result<(), StoreError> {
        let v = change.version;
        if v.resource_type == "Basic" && !change.ctx.actor.is_server() {
            let content = (!v.deleted).then(|| v.json());
            topic_basic::check_client_write(&v.id, content.as_ref())?;
        }
        if v.resource_type == "Subscription" {
            registry::on_write(change, self)?;
        }
        Ok(())
    }
}
