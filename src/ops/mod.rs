//! Running the server over time: the sweeps that forget what may be forgotten (`retention`),
//! and the supervision of the long-running tasks (`tasks`).

pub mod alerts;
pub mod audit;
pub mod feeds;
pub mod metrics;
pub mod queues;
pub mod retention;
pub mod tasks;
pub mod transactions;
