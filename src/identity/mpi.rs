//! The MPI as the ingest path meets it. Every Patient version written, from any source, is in
//! the same transaction (`ingest::hooks::IdentityResolver`) filed under its blocking keys with
//! what the matcher compares of it, pending; the linker (`linker`) links it to its person right
//! after the commit, off the writer's path (`linking`). A deleted one is taken out of the index.
//!
//! `scores` and `find` answer who in the index may be the same person as a given Patient,
//! scored and explained (`$match`), from the index alone.

use super::model::{Grade, Model, Scored};
use super::person::Person;
use super::{blocking, golden, index};
use crate::ingest::hooks::IdentityResolver;
use crate::ingest::{Channel, Source};
use crate::store::{DbConnection, StoreError, Version};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// Records whose comparison fields are kept in memory (about 300 bytes each).
const PEOPLE_CACHED: u64 = 200_000;

/// The smallest index size the prior odds assume (a hospital's index is never smaller).
const MIN_INDEX: i64 = 10_000;

#[derive(Debug)]
pub struct Mpi {
    /// The model as configured (`capability/mpi/model.json` or `--mpi-model`).
    pub model: Model,
    /// The model scoring uses: the configured one with `u` from the index once it holds
    /// enough records (`chance`).
    pub(super) local: RwLock<Arc<Model>>,
    /// The index's size when `local` was last taken from it.
    pub(super) learned_at: AtomicI64,
    /// The index's size when the tables its reads use were last analyzed (PostgreSQL).
    pub(super) analyzed_at: AtomicI64,
    /// What the matcher compares of recently scored records: a reader of SQLite reads the
    /// index's pages again after every commit, and with many commits a second that made
    /// loading the candidates cost six times their scoring. Kept right by the linker, which
    /// puts in each Patient as filed once it is committed (a candidate loaded just before a
    /// newer version committed is replaced within a batch), and dropped when a Patient is filed
    /// again or deleted; entries expire, for a store written by other processes too.
    people: moka::sync::Cache<String, Arc<Person>>,
    /// Patients in the index: counted at start, kept up by this process's writes (the prior
    /// odds of a match depend on it, not to the record).
    size: AtomicI64,
    /// How golden records are built (`capability/mpi/golden.json` or `--mpi-golden`).
    pub survivorship: super::golden::Survivorship,
    /// How the provider registry's golden records are built (`capability/mpi/providers.json`
    /// or `--provider-golden`).
    pub provider_rules: super::providers::golden::Rules,
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
            people: moka::sync::Cache::builder()
                .max_capacity(PEOPLE_CACHED)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
            local: RwLock::new(Arc::new(model.clone())),
            model,
            learned_at: AtomicI64::new(0),
            analyzed_at: AtomicI64::new(0),
            size: AtomicI64::new(0),
            survivorship: super::golden::Survivorship::shipped(),
            provider_rules: super::providers::golden::Rules::shipped(),
        }
    }

    /// This MPI with the provider registry's golden records built by `rules`.
    pub fn with_provider_rules(self, rules: super::providers::golden::Rules) -> Mpi {
        Mpi {
            provider_rules: rules,
            ..self
        }
    }

    /// This MPI with golden records built by `rules`.
    pub fn with_survivorship(self, rules: super::golden::Survivorship) -> Mpi {
        Mpi {
            survivorship: rules,
            ..self
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

    /// `person` is what the index holds of the committed Patient `id` (the linker read it).
    pub(super) fn known(&self, id: &str, person: &Person) {
        self.people.insert(id.to_string(), Arc::new(person.clone()));
    }

    /// The model scoring uses now.
    pub fn scoring(&self) -> Arc<Model> {
        self.local
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The index's size now (records filed), as this process counts it.
    pub fn size(&self) -> i64 {
        self.size.load(Ordering::Relaxed)
    }

    /// The Patients of the index that may be `patient` (not `except`), scored, best first,
    /// as (id, score): read from the index alone, never from the resources.
    pub fn scores(
        &self,
        conn: &mut DbConnection,
        patient: &Person,
        except: Option<&str>,
    ) -> Result<Vec<(String, Scored)>, StoreError> {
        Ok(self
            .scores_many(conn, &[(patient, except)])?
            .pop()
            .unwrap_or_default())
    }

    /// `scores` of many Patients (each with the one it is not to be matched with), their
    /// candidates and what the index holds of them read together.
    pub fn scores_many(
        &self,
        conn: &mut DbConnection,
        asked: &[(&Person, Option<&str>)],
    ) -> Result<Vec<Vec<(String, Scored)>>, StoreError> {
        let keyed: Vec<(Vec<String>, Option<&str>)> = asked
            .iter()
            .map(|(p, except)| (blocking::keys(p), *except))
            .collect();
        let found = index::candidates_many(conn, &keyed)?;
        let mut people: std::collections::HashMap<String, Arc<Person>> = Default::default();
        let mut missing = Vec::new();
        for id in found.iter().flatten() {
            if people.contains_key(id) {
                continue;
            }
            match self.people.get(id) {
                Some(p) => {
                    people.insert(id.clone(), p);
                }
                None => missing.push(id.clone()),
            }
        }
        missing.sort();
        missing.dedup();
        for (id, p) in index::people(conn, &missing)? {
            let p = Arc::new(p);
            self.people.insert(id.clone(), p.clone());
            people.insert(id, p);
        }
        let model = self.scoring();
        Ok(asked
            .iter()
            .zip(found)
            .map(|((patient, _), ids)| {
                let mut scored: Vec<(String, Scored)> = ids
                    .into_iter()
                    .filter_map(|id| {
                        let other = people.get(&id)?;
                        let s = model.score(patient, other, self.index_size());
                        Some((id, s))
                    })
                    .collect();
                scored.sort_by(|a, b| b.1.probability.total_cmp(&a.1.probability));
                scored
            })
            .collect())
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
            return super::providers::resolve(conn, source, version);
        }
        // what this write replaces is no longer what the index holds
        self.people.invalidate(&version.id);
        // a golden record (its id a person's, now or once: an inactive one too) is the MPI's to
        // write: a source writing over it or deleting it would turn the person's record into its own
        if version.version_id > 1
            && source.channel != Channel::Mpi
            && super::links::was_a_person(conn, &version.id)?
        {
            return Err(StoreError::Invalid(vec![
                crate::fhir::Issue::error(
                    "business-rule",
                    format!(
                        "Patient/{} is a golden record, written by the MPI alone from its person's records: change those",
                        version.id
                    ),
                )
                .at("Patient"),
            ]));
        }
        if version.deleted {
            // its person's golden record no longer has it
            if let Some(link) = super::links::link_of(conn, &version.id)? {
                golden::mark(conn, &link.person_id)?;
            }
            return index::unfile(conn, &version.id);
        }
        let json = version.json();
        if golden::is_golden(&json) {
            // the MPI's own record of a person: never a candidate for matching
            return match source.channel {
                Channel::Mpi => Ok(()),
                _ => Err(StoreError::Invalid(vec![
                    crate::fhir::Issue::error(
                        "business-rule",
                        "the golden-record tag is the MPI's own: a source's Patient cannot carry it",
                    )
                    .at("Patient.meta.tag"),
                ])),
            };
        }
        let person = Person::of(&json);
        let first = version.version_id == 1;
        let filed = (version.last_updated, source.system.as_str());
        index::file(conn, &version.id, &person, first, filed)?;
        if first {
            self.size.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
