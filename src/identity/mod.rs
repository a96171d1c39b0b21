//! Identity: which records are one person. A master patient index that compares each source's
//! Patient with those already known (`person`, `compare`), by weights estimated from the data
//! (`model`, `estimate`), among the candidates blocking proposes (`blocking`), and says how
//! sure it is and why. Every Patient written from any source is filed in the index in its
//! write transaction (`mpi`, `index`) and linked to its person right after (`linker`,
//! `linking`, `links`); persons of
//! two or more records get a golden record (`golden`). A person's decisions (`decisions`) on
//! pairs and persons are kept and never overruled by the matcher. Practitioners,
//! Organizations and PractitionerRoles are linked to enterprise providers in the same way
//! (`providers`).

pub mod blocking;
pub mod chance;
pub mod compare;
pub mod decisions;
pub mod estimate;
pub mod golden;
pub mod index;
pub mod linker;
pub mod linking;
pub mod links;
pub mod model;
pub mod mpi;
pub mod nicknames;
pub mod person;
pub mod providers;
pub mod reading;

pub use model::{Grade, Model, Scored};
pub use mpi::{Candidate, Mpi};
pub use person::Person;
