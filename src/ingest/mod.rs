//! The one way in. Every source (a REST create, update, patch or delete, each Bundle entry, an
//! HL7v2 message; later a vendor record or a file row) hands this part FHIR resources and says
//! where they came from (`Source`). It validates and canonicalises them (`accept`), runs the
//! hooks where code normalisation, source-of-truth checks and identity resolution sit (`hooks`),
//! and commits each change with its audit row and outbox event through the store: the REST
//! interactions in `rest`, a sender's restated resources in `restate`.
//!
//! Below it: the store, FHIR, the grant (`auth`) and the Subscription write rules. Above it:
//! `api` and `adapters`, which parse what they receive and render what it answers.

pub mod accept;
mod error;
pub mod hooks;
pub mod provenance;
pub mod rest;
pub mod restate;
mod rules;

pub use accept::{Accepted, accept};
pub use error::IngestError;
pub use hooks::Hooks;

use crate::auth::Grant;
use crate::store::{Actor, Store, WriteContext};
use crate::subscriptions::subscription::EndpointPolicy;
use std::sync::Arc;

/// The ingest path of one server: the store it writes to and the hooks every source goes
/// through. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    pub store: Store,
    hooks: Arc<Hooks>,
    /// Where Subscriptions written by clients may send notifications.
    endpoints: Arc<EndpointPolicy>,
}

/// The channel a change arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The FHIR REST API (single interactions and Bundle entries).
    Rest,
    Hl7v2,
    /// The MPI writing golden records (`identity::golden`).
    Mpi,
    /// An operator's load of files: FHIR packages, a code system's release files.
    Load,
    /// The terminology service writing stored resources again with a new map's codes
    /// (`terminology::renormalise`), as their sender.
    Terminology,
    /// The server's operations writing its own resources (alerts as Communications).
    Ops,
    /// A vendor's REST/JSON API or file drop, read by its source definition
    /// (`adapters::vendor`).
    Vendor,
}

/// Where resources came from: what the source-of-truth rules and the identity links are
/// decided by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub channel: Channel,
    /// The sending system: a REST client's id (or its subject), an HL7v2 sender's
    /// `application@facility`.
    pub system: String,
    /// Who released this write from review (a feed's message a source-of-truth rule held):
    /// the rule is waived for it, on that person's word.
    pub reviewed_by: Option<String>,
}

impl Source {
    /// The name source-of-truth rules and routes know this source by: an HL7v2 sender's
    /// `hl7v2 APP@FACILITY`, a REST client's `client ID`; `None` for the server's own writers
    /// (the MPI's golden records, loads, re-normalisation), which no rule holds back.
    pub fn name(&self) -> Option<String> {
        match self.channel {
            Channel::Hl7v2 => Some(format!("hl7v2 {}", self.system)),
            Channel::Rest => Some(format!("client {}", self.system)),
            Channel::Vendor => Some(format!("vendor {}", self.system)),
            Channel::Mpi | Channel::Load | Channel::Terminology | Channel::Ops => None,
        }
    }
}

/// One writer on the ingest path: its write context for the store (whose rules hold it to its
/// grant, the Subscription rules and the hooks), its grant for what the path reads on its
/// behalf (conditions, the match an `If-None-Exist` returns), and where it writes from.
#[derive(Debug, Clone)]
pub struct Writer {
    pub ctx: WriteContext,
    pub grant: Arc<Grant>,
    pub source: Arc<Source>,
    hooks: Arc<Hooks>,
}

impl Ingest {
    pub fn new(store: Store, hooks: Hooks, endpoints: Arc<EndpointPolicy>) -> Ingest {
        Ingest {
            store,
            hooks: Arc::new(hooks),
            endpoints,
        }
    }

    /// Have the hooks write what they keep for later (see `CodeNormaliser::flush`).
    pub fn flush_hooks(&self) {
        self.hooks.codes.iter().for_each(|c| c.flush());
    }

    /// Where Subscriptions written by clients may send notifications.
    pub fn endpoints(&self) -> Arc<EndpointPolicy> {
        self.endpoints.clone()
    }

    /// A writer with `grant`, as `actor`, from `source`, under `correlation_id`.
    pub fn writer(
        &self,
        grant: Arc<Grant>,
        actor: Actor,
        source: Source,
        correlation_id: String,
    ) -> Writer {
        let source = Arc::new(source);
        let rules = rules::Rules {
            client: crate::subscriptions::write_rules::Rules {
                grant: grant.clone(),
                endpoints: self.endpoints.clone(),
            },
            hooks: self.hooks.clone(),
            source: source.clone(),
        };
        Writer {
            ctx: WriteContext {
                correlation_id,
                actor,
                rules: Arc::new(rules),
            },
            grant,
            source,
            hooks: self.hooks.clone(),
        }
    }

    /// The writer of an HTTP request made with `grant`.
    pub fn rest_writer(&self, grant: Arc<Grant>, correlation_id: String) -> Writer {
        let source = Source {
            channel: Channel::Rest,
            system: grant.client_id.clone().unwrap_or_else(|| grant.actor()),
            reviewed_by: None,
        };
        self.writer(
            grant.clone(),
            Actor::Named(grant.actor()),
            source,
            correlation_id,
        )
    }
}

impl Writer {
    /// Validate `resource` as a `rtype` and bring it to canonical form, through this writer's
    /// hooks (see `accept`).
    pub fn accept(
        &self,
        resource: serde_json::Value,
        rtype: &str,
        lenient: bool,
    ) -> Result<Accepted, IngestError> {
        accept::accept(
            resource,
            rtype,
            lenient,
            (&self.source, &self.ctx.correlation_id),
            &self.hooks,
        )
    }
}
