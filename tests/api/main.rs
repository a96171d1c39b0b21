//! Integration tests: one binary (the crate is heavy to link), a module per behaviour.

mod auth;
mod bundles;
mod conditional;
mod corpus;
mod crud;
mod everything;
mod helpers;
mod history;
mod idp;
mod launch;
mod launch_clients;
mod receiver;
mod scope_queries;
mod search;
mod search_examples;
mod search_index;
mod server;
mod smart;
mod subscription_crash;
mod subscription_rules;
mod subscription_ws;
mod subscriptions;
mod topics;
mod validation;
