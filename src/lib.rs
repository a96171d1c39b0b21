//! emrsync: a real-time EMR sync hub.
//!
//! - [`fhir`]: FHIR R4 itself: structure facts, validation, fhirbolt model, OperationOutcome.
//! - [`store`]: the canonical store (diesel, SQLite or PostgreSQL): versions, outbox, audit.
//! - [`subscriptions`]: topic-based Subscriptions: topics, matching, queues, delivery.
//! - [`api`]: the actix-web HTTP surface: REST interactions, Bundles, metadata, health.
//! - [`config`]: one typed configuration from flags and `EMRSYNC_*` environment variables.
//! - [`startup`]: builds the application on a bound listener and runs it.
//! - [`tls`]: TLS for the HTTP and MLLP listeners (rustls).
//! - [`rekey`]: moving the database and its sealed secrets to a new master key.
//! - [`bench`]: a load tool that drives a running server and prints figures.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod bench;
pub mod config;
pub mod fhir;
pub mod rekey;
pub mod startup;
pub mod store;
pub mod subscriptions;
pub mod tls;
