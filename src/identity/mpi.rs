//! The MPI as the ingest path meets it. Every Patient version written, from any source, is in
//! the same transaction (`ingest::hooks::IdentityResolver`):
//! - filed under its blocking keys;
//! - linked to its person: the person of its best certain match, else a person of its own;
//!   a demographic change that leaves it certain with no other record of its person unlinks
//!   it (a new person, said in the history); certain with records of two persons, it stays and
//!   the pair goes to review, as do its probable and possible matches;
//! - a link a person decided is never moved, a pair decided different never linked.
//!
//! `find` answers who in the index may be the same person as a given Patient, scored and
//! explained (`$match`); `decide` carries out a person's decision on a review.

use super::links::{self, Link, Review};
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
        source: &Source,
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
        self.link(
            conn,
            &version.id,
            &person,
            &format!("matcher ({})", source.system),
        )
    }
}

impl Mpi {
    /// Link the Patient `id` (whose demographics are `person`) to its person, as the matcher
    /// sees it now (see the module's description).
    pub fn link(
        &self,
        conn: &mut DbConnection,
        id: &str,
        person: &Person,
        who: &str,
    ) -> Result<(), StoreError> {
        let current = links::link_of(conn, id)?;
        if current.as_ref().is_some_and(|l| l.decided_by.is_some()) {
            return Ok(());
        }
        let found = self.find(conn, person, Some(id))?;
        let mut best: Option<&Candidate> = None;
        for c in &found {
            let other = c.version.id.as_str();
            if links::decided_different(conn, id, other)? {
                continue;
            }
            match c.scored.grade {
                Grade::Certain if best.is_none() => best = Some(c),
                Grade::Probable | Grade::Possible => {
                    let theirs = links::link_of(conn, other)?.map(|l| l.person_id);
                    let together = current.as_ref().map(|l| &l.person_id) == theirs.as_ref();
                    if !together {
                        links::review(conn, id, other, &c.scored)?;
                    }
                }
                _ => {}
            }
        }
        let at = links::now();
        let linked = |person_id: String, rule: &str, s: Option<&Scored>| Link {
            patient_id: id.to_string(),
            person_id,
            probability: s.map_or(1.0, |s| s.probability),
            grade: s.map_or("certain", |s| s.grade.code()).to_string(),
            rule: rule.to_string(),
            linked_at: at,
            decided_by: None,
        };
        match (best, current) {
            (Some(c), current) => {
                let other = c.version.id.as_str();
                let target = self.person_of(conn, other, who)?;
                links::settle(conn, id, other)?;
                let reason = format!("a certain match for Patient/{other}");
                let link = linked(target.clone(), c.scored.rule, Some(&c.scored));
                match current {
                    Some(cur) if cur.person_id == target => {}
                    // certain with records of two persons: a person decides if they are one
                    Some(cur) if self.still_with(conn, id, person, &cur.person_id)? => {
                        links::review(conn, id, other, &c.scored)?;
                    }
                    Some(_) => links::set(conn, &link, "moved", &reason, who)?,
                    None => links::set(conn, &link, "linked", &reason, who)?,
                }
            }
            (None, None) => {
                let link = linked(links::new_person(), "new", None);
                let reason = "no certain match: the first record of its person";
                links::set(conn, &link, "linked", reason, who)?;
            }
            (None, Some(cur)) => {
                let alone = links::members(conn, &cur.person_id)?.len() <= 1;
                if !alone && !self.still_with(conn, id, person, &cur.person_id)? {
                    let link = linked(links::new_person(), "new", None);
                    let reason = format!(
                        "no longer a certain match for any other record of person {}",
                        cur.person_id
                    );
                    links::set(conn, &link, "unlinked", &reason, who)?;
                }
            }
        }
        Ok(())
    }

    /// The person of the Patient `id`; one of its own when it has none yet (filed before links
    /// were kept).
    fn person_of(
        &self,
        conn: &mut DbConnection,
        id: &str,
        who: &str,
    ) -> Result<String, StoreError> {
        if let Some(l) = links::link_of(conn, id)? {
            return Ok(l.person_id);
        }
        let link = Link {
            patient_id: id.to_string(),
            person_id: links::new_person(),
            probability: 1.0,
            grade: "certain".into(),
            rule: "new".into(),
            linked_at: links::now(),
            decided_by: None,
        };
        links::set(conn, &link, "linked", "the first record of its person", who)?;
        Ok(link.person_id)
    }

    /// Whether `person` (the Patient `id`) is a certain match for another record of
    /// `person_id`.
    fn still_with(
        &self,
        conn: &mut DbConnection,
        id: &str,
        person: &Person,
        person_id: &str,
    ) -> Result<bool, StoreError> {
        for member in links::members(conn, person_id)? {
            if member == id {
                continue;
            }
            let Some(v) = crate::store::versions::current(conn, "Patient", &member)? else {
                continue;
            };
            if v.deleted {
                continue;
            }
            let scored = self
                .model
                .score(person, &Person::of(&v.json()), self.index_size());
            if scored.grade == Grade::Certain {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A person's decision on the review `id`. `same` puts the pair under the first record's
    /// person, both links marked as decided (the matcher leaves them be). `different` is kept
    /// (the matcher never links the pair again) and, when the two share a person, takes the
    /// second out of it. `None` when there is no such review.
    pub fn decide(
        &self,
        conn: &mut DbConnection,
        id: &str,
        same: bool,
        who: &str,
    ) -> Result<Option<Review>, StoreError> {
        let Some(review) = links::review_by_id(conn, id)? else {
            return Ok(None);
        };
        let status = if same { "same" } else { "different" };
        links::decide_review(conn, id, status, who)?;
        let at = links::now();
        let link = |patient: &str, person: String, decided: bool| Link {
            patient_id: patient.to_string(),
            person_id: person,
            probability: review.probability,
            grade: review.grade.clone(),
            rule: "decision".into(),
            linked_at: at,
            decided_by: decided.then(|| who.to_string()),
        };
        let first = links::link_of(conn, &review.patient_id)?;
        let second = links::link_of(conn, &review.other_id)?;
        let reason = format!("decided: {status} (review {id})");
        if same {
            let person = first.map_or_else(links::new_person, |l| l.person_id);
            for p in [&review.patient_id, &review.other_id] {
                links::set(
                    conn,
                    &link(p, person.clone(), true),
                    "decided",
                    &reason,
                    who,
                )?;
            }
        } else if let (Some(a), Some(b)) = (&first, &second)
            && a.person_id == b.person_id
        {
            let apart = link(&review.other_id, links::new_person(), false);
            links::set(conn, &apart, "decided", &reason, who)?;
        }
        links::review_by_id(conn, id)
    }
}
