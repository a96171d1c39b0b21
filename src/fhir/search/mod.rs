//! FHIR search, independent of the store: the spec's search parameters (`params`) and the
//! values a resource is indexed under for each of them (`index`).

pub mod contained;
pub mod date;
pub mod filter;
pub mod filter_expr;
pub mod index;
pub mod matcher;
pub mod params;
pub mod query;
pub mod text;

pub use params::{ParamType, SearchParam, SearchParams};
