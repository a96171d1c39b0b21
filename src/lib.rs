//! emrsync: a real-time EMR sync hub. Parts from the floor up; each imports only those above
//! it in this list (`layering_tests` checks it):
//!
//! - [`fhir`]: FHIR R4 itself: structure facts, validation, search parameters, FHIRPath, the
//!   fhirbolt model, OperationOutcome. Imports nothing else of the crate.
//! - [`store`]: the canonical store (diesel, SQLite or PostgreSQL): versions, search index,
//!   outbox, audit, sealed secrets. Holds each write to the writer's rules (`store::rules`),
//!   which the parts above implement.
//! - [`auth`]: SMART on FHIR: tokens, clients, users, scopes, and the grant each request has.
//! - [`subscriptions`]: topic-based Subscriptions: topics, matching, queues, delivery, and the
//!   write rules of Subscriptions and topics.
//! - [`ingest`]: the one way in for every source: validate, normalise (hooks), check the
//!   source of truth (hooks), commit with audit and outbox; identity resolution hooks.
//! - [`identity`]: the master patient index: matching Patients from every source, by weights
//!   estimated from the data, and saying why.
//! - [`adapters`]: what other systems speak (HL7v2 over MLLP), parsed and mapped onto the
//!   ingest path.
//! - [`routing`]: sync out: targets and routes as data, each target's ordered queue, its
//!   sender (HL7v2 over MLLP), the outbound exception queue.
//! - [`api`]: the actix-web HTTP surface: REST interactions, Bundles, search, SMART, admin.
//! - [`ops`]: running over time: retention sweeps, task supervision.
//! - [`config`]: one typed configuration from flags and `EMRSYNC_*` environment variables.
//! - [`startup`]: builds the application on a bound listener and runs it.
//! - [`tls`]: TLS for the HTTP and MLLP listeners (rustls).
//! - [`rekey`]: moving the database and its sealed secrets to a new master key.
//! - [`bench`]: a load tool that drives a running server and prints figures.
//! - [`cli`]: the `emrsync` command line: its commands, flags, and what each runs.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod bench;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod fhir;
pub mod identity;
pub mod ingest;
pub mod ops;
pub mod rekey;
pub mod routing;
pub mod startup;
pub mod store;
pub mod stream;
pub mod subscriptions;
pub mod terminology;
pub mod tls;

#[cfg(test)]
#[path = "layering_tests.rs"]
mod layering;
