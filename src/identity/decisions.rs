//! A person's decisions on identity, kept and never overruled by the matcher:
//! - on a review (`decide`): the pair is one person, or two; `undo` withdraws a decision: the
//!   pair is open again and both records are linked as the matcher sees them now;
//! - on two persons (`merge`): every record of one moved to the other, whose golden record
//!   survives, the other's left inactive and `replaced-by` it; `unmerge` moves back the records
//!   a merge moved that are still where it put them.
//!
//! Each is in the link history of every record it moved, with who and why; merges are kept
//! (`mpi_merges`), undone or not.

use super::links::{self, Link, Review};
use super::mpi::Mpi;
use super::{golden, index};
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::Serialize;

diesel::table! {
    mpi_merges (id) {
        id -> Text,
        from_person -> Text,
        into_person -> Text,
        patients -> Text,
        reason -> Text,
        at -> BigInt,
        who -> Text,
        undone_at -> Nullable<BigInt>,
        undone_by -> Nullable<Text>,
    }
}

/// Two persons made one by a person.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = mpi_merges)]
pub struct Merge {
    pub id: String,
    /// The person whose records were moved (its golden record left inactive).
    pub from_person: String,
    /// The person that received them (its golden record survives).
    pub into_person: String,
    /// The records moved, as a JSON array of Patient ids.
    pub patients: String,
    pub reason: String,
    pub at: i64,
    pub who: String,
    pub undone_at: Option<i64>,
    pub undone_by: Option<String>,
}

impl Merge {
    pub fn moved(&self) -> Vec<String> {
        serde_json::from_str(&self.patients).unwrap_or_default()
    }
}

/// Why a decision was not carried out: said to the person who asked, nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No such review, merge, person or Patient.
    Missing(String),
    /// Not possible as things stand (a merge of a person with itself, an undo of what is not
    /// done).
    Conflict(String),
}

/// What an unmerge did: the merge, the records moved back, and those left where they are
/// because something moved them since (a later decision or merge).
#[derive(Debug, Serialize)]
pub struct Unmerged {
    pub merge: Merge,
    pub restored: Vec<String>,
    pub left: Vec<String>,
}

/// The reason each decision writes in the history, and finds there again to undo it.
fn review_mark(id: &str) -> String {
    format!("(review {id})")
}

fn merge_mark(id: &str) -> String {
    format!("(merge {id})")
}

/// Whether the Patient's link is still the one the history row marked `mark` wrote: its latest
/// change is that one.
fn still_by(conn: &mut DbConnection, patient: &str, mark: &str) -> Result<bool, StoreError> {
    Ok(links::history(conn, patient)?
        .last()
        .is_some_and(|c| c.reason.ends_with(mark)))
}

impl Mpi {
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
        // the persons either may leave
        for l in first.iter().chain(&second) {
            golden::mark(conn, &l.person_id)?;
        }
        let reason = format!("decided: {status} {}", review_mark(id));
        if same {
            let person =
                first.map_or_else(|| links::own_person(&review.patient_id), |l| l.person_id);
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

    /// Withdraw the decision on the review `id`: the review is open again, the links the
    /// decision wrote (those nothing changed since) are the matcher's again, and both records
    /// are handed back to the linker, which links them as it sees them now (a pair it is unsure
    /// about stays before a person).
    pub fn undo(
        &self,
        conn: &mut DbConnection,
        id: &str,
        who: &str,
    ) -> Result<Result<Review, Refusal>, StoreError> {
        let Some(review) = links::review_by_id(conn, id)? else {
            return Ok(Err(Refusal::Missing(format!("no review {id}"))));
        };
        if review.status == "open" {
            return Ok(Err(Refusal::Conflict(format!(
                "review {id} is open: there is no decision to undo"
            ))));
        }
        links::reopen_review(conn, id)?;
        let mark = review_mark(id);
        let reason = format!("decision {} undone {mark}", review.status);
        for patient in [&review.patient_id, &review.other_id] {
            if let Some(link) = links::link_of(conn, patient)?
                && still_by(conn, patient, &mark)?
            {
                let freed = Link {
                    decided_by: None,
                    linked_at: links::now(),
                    ..link
                };
                links::set(conn, &freed, "undone", &reason, who)?;
            }
            index::requeue(conn, patient, links::now())?;
        }
        Ok(links::review_by_id(conn, id)?
            .ok_or_else(|| Refusal::Missing(format!("no review {id}"))))
    }

    /// The person `id` names and its records: a person with records (a golden record's id is
    /// its person's), or a filed Patient's person.
    fn person_named(
        &self,
        conn: &mut DbConnection,
        id: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let members = links::members(conn, id)?;
        if !members.is_empty() {
            return Ok(Some((id.to_string(), members)));
        }
        if index::filed(conn, id)?.is_none() {
            return Ok(None);
        }
        let person = links::person_of(conn, id)?;
        let members = links::members(conn, &person)?;
        Ok(Some(match members.is_empty() {
            // the only record of its own person: no link rows (`links::own_person`)
            true => (person, vec![id.to_string()]),
            false => (person, members),
        }))
    }

    /// Merge the person `from` into the person `into` (each named by its id, its golden
    /// record's, or one of its records'): every record of `from` moves to `into`, decided by
    /// `who`, so the matcher leaves them there. `from`'s golden record, if it has one, stays
    /// inactive and `replaced-by` `into`'s.
    pub fn merge(
        &self,
        conn: &mut DbConnection,
        (from, into): (&str, &str),
        reason: &str,
        who: &str,
    ) -> Result<Result<Merge, Refusal>, StoreError> {
        let Some((from_person, moved)) = self.person_named(conn, from)? else {
            return Ok(Err(Refusal::Missing(format!(
                "no person or Patient {from}"
            ))));
        };
        let Some((into_person, kept)) = self.person_named(conn, into)? else {
            return Ok(Err(Refusal::Missing(format!(
                "no person or Patient {into}"
            ))));
        };
        if from_person == into_person {
            return Ok(Err(Refusal::Conflict(format!(
                "{from} and {into} are one person already ({into_person})"
            ))));
        }
        // the receiving person's only record gets its row now that others join it
        if let [only] = kept.as_slice() {
            self.joined_person(conn, only, who)?;
        }
        let at = links::now();
        let merge = Merge {
            id: uuid::Uuid::now_v7().to_string(),
            from_person: from_person.clone(),
            into_person: into_person.clone(),
            patients: serde_json::to_string(&moved).unwrap_or_default(),
            reason: reason.to_string(),
            at,
            who: who.to_string(),
            undone_at: None,
            undone_by: None,
        };
        diesel::insert_into(mpi_merges::table)
            .values(&merge)
            .execute(conn)?;
        let said = format!(
            "merged into person {into_person}: {} {}",
            reason_or(reason),
            merge_mark(&merge.id)
        );
        for patient in &moved {
            let link = Link {
                patient_id: patient.clone(),
                person_id: into_person.clone(),
                probability: 1.0,
                grade: "certain".into(),
                rule: "decision".into(),
                linked_at: at,
                decided_by: Some(who.to_string()),
            };
            links::set(conn, &link, "merged", &said, who)?;
        }
        golden::mark(conn, &from_person)?;
        Ok(Ok(merge))
    }

    /// Undo the merge `id`: each record it moved that is still where it put it goes back to
    /// the person it came from, decided by `who`; the others are left and said so.
    pub fn unmerge(
        &self,
        conn: &mut DbConnection,
        id: &str,
        who: &str,
    ) -> Result<Result<Unmerged, Refusal>, StoreError> {
        let Some(merge) = merge_by_id(conn, id)? else {
            return Ok(Err(Refusal::Missing(format!("no merge {id}"))));
        };
        if merge.undone_at.is_some() {
            return Ok(Err(Refusal::Conflict(format!(
                "merge {id} was undone already"
            ))));
        }
        let at = links::now();
        let mark = merge_mark(id);
        let said = format!("unmerged from person {} {mark}", merge.into_person);
        let (mut restored, mut left) = (Vec::new(), Vec::new());
        for patient in merge.moved() {
            let here =
                links::link_of(conn, &patient)?.is_some_and(|l| l.person_id == merge.into_person);
            if !here || !still_by(conn, &patient, &mark)? {
                left.push(patient);
                continue;
            }
            let link = Link {
                patient_id: patient.clone(),
                person_id: merge.from_person.clone(),
                probability: 1.0,
                grade: "certain".into(),
                rule: "decision".into(),
                linked_at: at,
                decided_by: Some(who.to_string()),
            };
            links::set(conn, &link, "unmerged", &said, who)?;
            restored.push(patient);
        }
        golden::mark(conn, &merge.into_person)?;
        diesel::update(mpi_merges::table.find(id))
            .set((
                mpi_merges::undone_at.eq(Some(at)),
                mpi_merges::undone_by.eq(Some(who)),
            ))
            .execute(conn)?;
        let merge = merge_by_id(conn, id)?.unwrap_or(merge);
        Ok(Ok(Unmerged {
            merge,
            restored,
            left,
        }))
    }
}

fn reason_or(reason: &str) -> &str {
    match reason.trim() {
        "" => "decided by a person",
        r => r,
    }
}

pub fn merge_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Merge>, StoreError> {
    Ok(mpi_merges::table
        .find(id)
        .select(Merge::as_select())
        .get_result(conn)
        .optional()?)
}

/// Merges, newest first, at most `limit`.
pub fn merges(conn: &mut DbConnection, limit: i64) -> Result<Vec<Merge>, StoreError> {
    Ok(mpi_merges::table
        .order(mpi_merges::at.desc())
        .limit(limit)
        .select(Merge::as_select())
        .load(conn)?)
}

/// The person `person` was last merged into, while that merge stands: where its golden record
/// points clients that kept its id.
pub fn merged_into(conn: &mut DbConnection, person: &str) -> Result<Option<String>, StoreError> {
    use mpi_merges::dsl as m;
    // a person is merged away rarely, and undone more rarely still: a handful of rows
    Ok(m::mpi_merges
        .filter(m::from_person.eq(person))
        .filter(m::undone_at.is_null())
        .order(m::at.desc())
        .select(m::into_person)
        .load::<String>(conn)?
        .into_iter()
        .next())
}
