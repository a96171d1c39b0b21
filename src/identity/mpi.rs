//! The MPI as the ingest path meets it: every Patient version written, from any source, is
//! filed under its blocking keys in the same transaction (`ingest::hooks::IdentityResolver`);
//! and `find` answers who in the index may be the same person as a given Patient, scored and
//! explained, for `$match`.

use super::model::{Model, Scored};
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

    /// The Patients of the index that may be `patient` (not `except`), scored, best first.
    pub fn find(
        &self,
        conn: &mut DbConnection,
        patient: &Person,
        except: Option<&str>,
    ) -> Result<Vec<Candidate>, StoreError> {
        let ids = index::candidates(conn, &blocking::keys(patient), except)?;
        let mut found = Vec::new();
        for id in ids {
            let Some(version) = crate::store::versions::current(conn, "Patient", &id)? else {
                continue;
            };
            if version.deleted {
                continue;
            }
            let other = Person::of(&version.json());
            let scored = self.model.score(patient, &other, self.index_size());
            found.push(Candidate { version, scored });
        }
        found.sort_by(|a, b| b.scored.probability.total_cmp(&a.scored.probability));
        Ok(found)
    }
}

impl IdentityResolver for Mpi {
    fn resolve(
        &self,
        conn: &mut DbConnection,
        _source: &Source,
        version: &Version,
    ) -> Result<(), StoreError> {
        if version.resource_type != "Patient" {
            return Ok(());
        }
        let person = Person::of(&version.json());
        index::file(conn, &version.id, &blocking::keys(&person))?;
        if version.version_id == 1 {
            self.size.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
