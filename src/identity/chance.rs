//! The index's own `u`: how often different people agree by chance, field by field, in this
//! hospital's population rather than the one the model was estimated on (see
//! `Model::with_chance`). Taken from random pairs of a random sample of the index, in the
//! background: when the linker starts, and again each time the index has doubled.

use super::estimate;
use super::index;
use super::model::Model;
use super::mpi::Mpi;
use super::person::Person;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Records the index must hold before its `u` replaces the model's.
pub const MIN_RECORDS: i64 = 200;
/// Records drawn, and random pairs of them compared (a tenth of a second of one core): a level
/// seen 30 times is one pair in 3,000 (see `LOCAL_SEEN`).
const SAMPLE: i64 = 2_000;
const PAIRS: usize = 100_000;

/// `model` with `u` from random pairs of `sample` (a random sample of the index), as the
/// server scores once its index is big enough.
pub fn localised(model: &Model, sample: &[Person], seed: u64) -> Model {
    model.with_chance(&estimate::chance(sample, PAIRS, seed))
}

/// A random sample of `people`, of the size the server draws from its index.
pub fn sample_of(people: &[Person], seed: u64) -> Vec<Person> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut picked = people.to_vec();
    rng.shuffle(&mut picked);
    picked.truncate(SAMPLE as usize);
    picked
}

impl Mpi {
    /// Whether the index has doubled since `u` was last taken from it (so a million records
    /// are learnt from a dozen times in all).
    pub fn should_learn(&self) -> bool {
        let (size, at) = (self.size(), self.learned_at.load(Ordering::Relaxed));
        size >= MIN_RECORDS && size >= 2 * at
    }

    /// Whether the index has grown eightfold (from 500 Patients) since PostgreSQL's
    /// statistics of the tables its reads use were last taken. What the planner needed was
    /// statistics at all (the plan it chose without them is below); once it has some, the
    /// choice of index does not change with size, and autovacuum takes them again as tables
    /// grow. Taken at each doubling, the four ANALYZEs of a 10 s load from empty were 0.74 s
    /// of PostgreSQL's CPU (docs/performance.md, twelfth session).
    pub fn should_analyze(&self) -> bool {
        let (size, at) = (self.size(), self.analyzed_at.load(Ordering::Relaxed));
        size >= 500 && size >= 8 * at
    }

    /// Have PostgreSQL take the statistics of the tables the linker's reads use. Without them
    /// (a store filling faster than autovacuum's minute, as any bulk load from empty does) its
    /// planner took the search index's `high` index for a birth-date block, one ANDed with
    /// `low =`, and walked every Patient's birth date for each: 4 ms a lookup at 3,000
    /// Patients where the `low` index answers in 0.1 ms (`EXPLAIN ANALYZE`). SQLite's planner
    /// keeps no statistics here; its statements are shaped to need none (`index`).
    pub fn analyze(&self, store: &Store) -> Result<(), StoreError> {
        self.analyzed_at.store(self.size(), Ordering::Relaxed);
        store.read(|c| match c {
            crate::store::DbConnection::Pg(pg) => {
                use diesel::RunQueryDsl;
                diesel::sql_query("ANALYZE search_date, search_token, mpi_keys, mpi_people")
                    .execute(pg)?;
                Ok(())
            }
            crate::store::DbConnection::Sqlite(_) => Ok(()),
        })
    }

    /// Take `u` from the index now; false when it is too small to tell.
    pub fn learn(&self, store: &Store) -> Result<bool, StoreError> {
        let size = self.size();
        if size < MIN_RECORDS {
            return Ok(false);
        }
        // taken as tried before the sample is read: a failure waits for the next doubling
        // rather than sorting the index at random again on every tick of the linker
        self.learned_at.store(size, Ordering::Relaxed);
        let people = store.read(|c| index::sample(c, SAMPLE))?;
        let local = Arc::new(localised(&self.model, &people, size as u64));
        match self.local.write() {
            Ok(mut l) => *l = local,
            Err(e) => *e.into_inner() = local,
        }
        tracing::info!(
            records = size,
            sampled = people.len(),
            "MPI: chance agreement (u) taken from the index"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Grade;
    use crate::identity::compare::Field;
    use serde_json::json;

    /// A small town's patients: a handful of surnames and given names, one street, one city,
    /// one state; everything else drawn apart.
    fn town(n: usize) -> Vec<Person> {
        let (family, given) = (
            ["Smith", "Muller", "Tanaka"],
            ["James", "Ana", "Lars", "Priya"],
        );
        (0..n)
            .map(|i| {
                Person::of(&json!({
                    "name": [{"family": family[i % 3], "given": [given[(i / 3) % 4]]}],
                    "gender": if i % 2 == 0 { "female" } else { "male" },
                    "birthDate": format!("{}-{:02}-{:02}", 1930 + (i * 7) % 90, 1 + (i * 5) % 12, 1 + (i * 11) % 28),
                    "address": [{"line": [format!("{} Main St", 1 + (i * 13) % 997)], "city": "Springfield",
                                 "state": "IL", "postalCode": format!("6{:04}", (i * 37) % 10_000)}]
                }))
            })
            .collect()
    }

    #[test]
    fn agreement_everyone_shares_counts_for_little_once_the_index_says_so() {
        let shipped = Model::shipped();
        let people = town(1_000);
        let local = localised(&shipped, &sample_of(&people, 1), 1);
        let exact = |m: &Model, f: Field| m.weight(f, 0);
        // FEBRL's suburbs are many; this town has one
        assert!(exact(&shipped, Field::City) > 8.0);
        assert!(
            exact(&local, Field::City) < 0.5,
            "{}",
            exact(&local, Field::City)
        );
        assert!(exact(&local, Field::Street) < 0.5);
        assert!(exact(&local, Field::Family) < exact(&shipped, Field::Family) - 4.0);
        // a level random pairs never show keeps the model's u
        let swapped = |m: &Model| m.fields[&Field::Given]["swapped"].u;
        assert_eq!(swapped(&local), swapped(&shipped));

        // two neighbours of one name, born years apart: linked by the shipped u, not by the town's
        let (a, b) = (&people[0], &people[12]);
        assert_eq!(
            (a.given.as_str(), a.family.as_str()),
            (b.given.as_str(), b.family.as_str())
        );
        assert_ne!(a.birth, b.birth);
        assert!(shipped.score(a, b, 10_000).probability > local.score(a, b, 10_000).probability);
        assert_eq!(local.score(a, b, 10_000).grade, Grade::CertainlyNot);
    }

    #[test]
    fn a_small_index_keeps_the_model() {
        let people = town(50);
        let chance = estimate::chance(&people, 1_000, 1);
        let local = Model::shipped().with_chance(&chance);
        assert_eq!(
            local.fields[&Field::City]["exact"].u,
            Model::shipped().fields[&Field::City]["exact"].u
        );
    }
}
