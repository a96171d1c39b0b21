//! Running the server over time: the sweeps that forget what may be forgotten (`retention`),
//! and the supervision of the long-running tasks (`tasks`).

pub mod audit;
pub mod metrics;
pub mod retention;
pub mod tasks;
