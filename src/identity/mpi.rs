//! The MPI as the ingest path meets it. Every Patient version written, from any source, is in
//! the same transaction (`ingest::hooks::IdentityResolver`) filed under its blocking keys with
//! what the matcher compares of it, then linked to its person (`linking`); a deleted one is
//! taken out of the index.
//!
//! `scores` and `find` answer who in the index may be the same person as a given Patient,
//! scored and explained (`$match`), from the index alone.

use super::model::{Grade, Model, Scored};
use super::person::Person;
use super::{blocking, index};
use crate::ingest::Source;
use crate::ingest::hooks::IdentityResolver;
use crate::store::{DbConnection, StoreError, Version};
use std::sync::atomic::{AtomicI64, Ordering};

/// The smallest index size the prior odds assume (a hospital's index is never smaller).
const MIN_INDEX: i64 = 10_000;

#[derive(Debug)]
pub struct Mpi {
    pub model: Model,
    /// Patients in the index: counted at start, kept up by this process's writes (the prior
    /// odds of a match depend on it, not to the record).
    size: AtomicI64,
}

/// One Patient of the index that may be the same person, with its score.
#[derive(Debug)]
pub struct Candidate {
    pub version: Version,
    pub scored: Scored,
}

impl Mpi {
    pub fn new(model: Model) -> Mpi {
        Mpi {
            model,
            size: AtomicI64::new(0),
        }
    }

    /// Count the index (at start).
    pub fn count(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        self.size.store(index::size(conn)?, Ordering::Relaxed);
        Ok(())
    }

    /// The index's size as the prior odds take it: at least `MIN_INDEX`, so that the first
    /// records of a new index are not linked on thin evidence.
    pub fn index_size(&self) -> usize {
        self.size.load(Ordering::Relaxed).max(MIN_INDEX) as usize
    }

    /// The Patients of the index that may be `patient` (not `except`), scored, best first,
    /// as (id, score): read from the index alone, never from the resources.
    pub fn scores(
        &self,
        conn: &mut DbConnection,
        patient: &Person,
        except: Option<&str>,
    ) -> Result<Vec<(String, Scored)>, StoreError> {
        let ids = index::candidates(conn, &blocking::keys(patient), except)?;
        let mut found: Vec<(String, Scored)> = index::people(conn, &ids)?
            .into_iter()
            .map(|(id, other)| {
                let scored = self.model.score(patient, &other, self.index_size());
                (id, scored)
            })
            .collect();
        found.sort_by(|a, b| b.1.probability.total_cmp(&a.1.probability));
        Ok(found)
    }

    /// `scores`, for those graded above certainly-not, with their current resources.
    pub fn find(
        &self,
        conn: &mut DbConnection,
        patient: &Person,
        except: Option<&str>,
    ) -> Result<Vec<Candidate>, StoreError> {
        let scored: Vec<(String, Scored)> = self
            .scores(conn, patient, except)?
            .into_iter()
            .filter(|(_, s)| s.grade > Grade::CertainlyNot)
            .collect();
        let ids: Vec<String> = scored.iter().map(|(id, _)| id.clone()).collect();
        let mut versions: std::collections::HashMap<String, Version> =
            crate::store::versions::current_many(conn, "Patient", &ids)?
                .into_iter()
                .filter(|v| !v.deleted)
                .map(|v| (v.id.clone(), v))
                .collect();
        Ok(scored
            .into_iter()
            .filter_map(|(id, scored)| {
                let version = versions.remove(&id)?;
                Some(Candidate { version, scored })
            })
            .collect())
    }
}

impl IdentityResolver for Mpi {
    fn resolve(
        &self,
        conn: &mut DbConnection,
        source: &Source,
        version: &Version,
    ) -> Result<(), StoreError> {
        if version.resource_type != "Patient" {
            return Ok(());
        }
        if version.deleted {
            return index::unfile(conn, &version.id);
        }
        let person = Person::of(&version.json());
        let first = version.version_id == 1;
        index::file(conn, &version.id, &person, first)?;
        if first {
            self.size.fetch_add(1, Ordering::Relaxed);
        }
        let who = format!("matcher ({})", source.system);
        self.link(conn, &version.id, &person, &who)
    }
}
