//! Linking each source Patient to its person, right after its write (`linker`):
//! - the person of its best certain match (not decided different), else a person of its own;
//! - certain with records of two persons, it stays where it is (or, new, joins its best
//!   match's person) and the pair with the other person's record goes to review (persons are
//!   never merged without a person deciding), as do its probable and possible matches (the
//!   most likely few);
//! - a correction that leaves it certain with no other record of its person unlinks it (a new
//!   person, said in the history);
//! - a link a person decided is never moved, a pair decided different never linked.
//!
//! A person's decisions, which the matcher never overrules, are in `decisions`.

use super::links::{self, Link};
use super::model::{Grade, Scored};
use super::mpi::Mpi;
use super::person::Person;
use super::{golden, index};
use crate::store::{DbConnection, StoreError};

/// The most pairs one write puts before a person.
const MAX_REVIEWS: usize = 5;

impl Mpi {
    /// Link the Patient `id` (whose demographics are `person`, whose link is `current`) to
    /// its person, as the matcher sees it now: `found` are its scores against the index
    /// (`Mpi::scores`), taken before the write transaction this runs in (the linker's), on a
    /// reader. `by` is the source system that wrote it. It writes the links of `id`, of
    /// Patients in `found` and of the Patient `person` is replaced by, and of no other: the
    /// linker reads a batch's links at once and reads again only those.
    pub fn link(
        &self,
        conn: &mut DbConnection,
        (id, person): (&str, &Person),
        current: Option<Link>,
        found: Vec<(String, Scored)>,
        by: &str,
    ) -> Result<(), StoreError> {
        let who = &format!("matcher ({by})");
        if let Some(cur) = &current {
            // a new version of one of its records, or a record about to leave it
            golden::mark(conn, &cur.person_id)?;
        }
        // a merge into a Patient the index holds (one naming no such Patient would give a
        // person a member that is no record): else the record is matched as any other
        if let Some(into) = person.replaced_by.as_deref().filter(|into| *into != id)
            && index::filed(conn, into)?.is_some()
        {
            return self.merged(conn, id, current, into, by);
        }
        if current.as_ref().is_some_and(|l| l.decided_by.is_some()) {
            return Ok(());
        }
        let found: Vec<(String, Scored)> = found
            .into_iter()
            .filter(|(_, s)| s.grade > Grade::CertainlyNot)
            .collect();
        // only pairs worth a look cost more reads: their persons, in one query
        let worth: Vec<&str> = found.iter().map(|(other, _)| other.as_str()).collect();
        let (persons, apart) = match worth.is_empty() {
            true => Default::default(),
            false => (
                links::persons_of(conn, &worth)?,
                links::decided_apart(conn, id)?,
            ),
        };
        let mine = current.as_ref().map(|l| l.person_id.as_str());
        let mut best: Option<(&str, &Scored)> = None;
        let mut reviews = 0;
        for (other, scored) in &found {
            let other = other.as_str();
            let together = mine.is_some() && mine == persons.get(other).map(String::as_str);
            if together && scored.grade < Grade::Certain {
                continue;
            }
            if apart.contains(other) {
                continue;
            }
            // certain with a record of another person than the best match's: the two
            // persons may be one, which a person decides (the matcher never merges persons);
            // before, the pair was passed over in silence
            let elsewhere = |(b, _): (&str, &Scored)| persons.get(b) != persons.get(other);
            match scored.grade {
                Grade::Certain if best.is_none() => best = Some((other, scored)),
                Grade::Certain if reviews < MAX_REVIEWS && best.is_some_and(elsewhere) => {
                    reviews += 1;
                    links::review(conn, id, other, scored)?;
                }
                // the most likely few: a record like many others is no queue of its own
                Grade::Probable | Grade::Possible if reviews < MAX_REVIEWS => {
                    reviews += 1;
                    links::review(conn, id, other, scored)?;
                }
                _ => {}
            }
        }
        let at = links::now();
        let linked = |person_id: String, s: &Scored| Link {
            patient_id: id.to_string(),
            person_id,
            probability: s.probability,
            grade: s.grade.code().to_string(),
            rule: s.rule.to_string(),
            linked_at: at,
            decided_by: None,
        };
        match (best, current) {
            (Some((other, scored)), current) => {
                let target = self.joined_person(conn, other, who)?;
                links::settle(conn, id, other)?;
                let reason = format!("a certain match for Patient/{other}");
                let link = linked(target.clone(), scored);
                match current {
                    Some(cur) if cur.person_id == target => {}
                    // certain with records of two persons: a person decides if they are one
                    Some(cur) if self.still_with(conn, id, person, &cur.person_id)? => {
                        links::review(conn, id, other, scored)?;
                    }
                    Some(_) => links::set(conn, &link, "moved", &reason, who)?,
                    None => links::set(conn, &link, "linked", &reason, who)?,
                }
            }
            // no certain match: the first record of its own person, which needs no row until
            // a second record joins it (`links::own_person`)
            (None, None) => {}
            (None, Some(cur)) => {
                let alone = links::members(conn, &cur.person_id)?.len() <= 1;
                if !alone && !self.still_with(conn, id, person, &cur.person_id)? {
                    let link = Link::apart(id, at);
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

    /// The Patient `id`, which its source says is `replaced-by` the Patient `into` (a merge: an
    /// HL7v2 A40, or any source's Patient.link): linked to `into`'s person as decided by that
    /// source (`by`), so the matcher never moves it, and said so in the history.
    fn merged(
        &self,
        conn: &mut DbConnection,
        id: &str,
        current: Option<Link>,
        into: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        let target = self.joined_person(conn, into, &format!("matcher ({by})"))?;
        if current
            .as_ref()
            .is_some_and(|l| l.person_id == target && l.rule == "merge")
        {
            return Ok(());
        }
        let link = Link {
            patient_id: id.to_string(),
            person_id: target,
            probability: 1.0,
            grade: "certain".into(),
            rule: "merge".into(),
            linked_at: links::now(),
            decided_by: Some(by.to_string()),
        };
        let reason = format!("replaced by Patient/{into}: a merge its source sent");
        links::set(conn, &link, "merged", &reason, by)
    }

    /// The person of the Patient `id`; when it has no link row (the only record of its own
    /// person until now), that row is written: a second record is about to join it.
    pub(super) fn joined_person(
        &self,
        conn: &mut DbConnection,
        id: &str,
        who: &str,
    ) -> Result<String, StoreError> {
        if let Some(l) = links::link_of(conn, id)? {
            return Ok(l.person_id);
        }
        let link = Link::alone(id, links::now());
        links::set(conn, &link, "linked", "the first record of its person", who)?;
        Ok(link.person_id)
    }

    /// Whether `person` (the Patient `id`) is a certain match for another record of
    /// `person_id`, or one of them was merged into it.
    fn still_with(
        &self,
        conn: &mut DbConnection,
        id: &str,
        person: &Person,
        person_id: &str,
    ) -> Result<bool, StoreError> {
        let others: Vec<String> = links::members(conn, person_id)?
            .into_iter()
            .filter(|m| m != id)
            .collect();
        let model = self.scoring();
        // a record merged into this one holds it there, whatever the two now say
        Ok(index::people(conn, &others)?.iter().any(|(_, other)| {
            other.replaced_by.as_deref() == Some(id)
                || model.score(person, other, self.index_size()).grade == Grade::Certain
        }))
    }
}
