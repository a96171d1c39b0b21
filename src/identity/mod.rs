//! Identity: which records are one person. A master patient index that compares each source's
//! Patient with those already known (`person`, `compare`), by weights estimated from the data
//! (`model`, `estimate`), among the candidates blocking proposes (`blocking`), and says how
//! sure it is and why.

pub mod blocking;
pub mod compare;
pub mod estimate;
pub mod model;
pub mod person;

pub use model::{Grade, Model, Scored};
pub use person::Person;
