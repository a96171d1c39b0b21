//! Links: each source Patient's enterprise identity (its person), the history of every change
//! of a link, and the pairs the matcher is unsure about, waiting for a person's decision.
//! A link a person decided (`decided_by`) is never moved by the matcher, and a pair decided
//! to be different people is never linked by it.

use super::model::Scored;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::Serialize;

diesel::table! {
    mpi_links (patient_id) {
        patient_id -> Text,
        person_id -> Text,
        probability -> Double,
        grade -> Text,
        rule -> Text,
        linked_at -> BigInt,
        decided_by -> Nullable<Text>,
    }
}

diesel::table! {
    mpi_link_history (seq) {
        seq -> BigInt,
        patient_id -> Text,
        person_id -> Text,
        action -> Text,
        probability -> Double,
        grade -> Text,
        rule -> Text,
        reason -> Text,
        at -> BigInt,
        who -> Text,
    }
}

diesel::table! {
    mpi_reviews (id) {
        id -> Text,
        patient_id -> Text,
        other_id -> Text,
        probability -> Double,
        grade -> Text,
        detail -> Text,
        status -> Text,
        created_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
    }
}

/// A source Patient's link to its person.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = mpi_links, treat_none_as_null = true)]
pub struct Link {
    pub patient_id: String,
    pub person_id: String,
    pub probability: f64,
    pub grade: String,
    /// `identifier` or `fields` (the matcher's), `new` (the first record of its person),
    /// `decision` (a person's).
    pub rule: String,
    pub linked_at: i64,
    pub decided_by: Option<String>,
}

impl Link {
    /// The Patient `patient` as the first record of its own person (`own_person`, rule `new`),
    /// at `at`: written when a second record joins it (a record of one person alone has no
    /// link row, see `person_of`).
    pub fn alone(patient: &str, at: i64) -> Link {
        Link {
            person_id: own_person(patient),
            ..Link::apart(patient, at)
        }
    }

    /// The Patient `patient` taken out of its person into a new one (rule `new`), at `at`.
    pub fn apart(patient: &str, at: i64) -> Link {
        Link {
            patient_id: patient.to_string(),
            person_id: new_person(),
            probability: 1.0,
            grade: "certain".into(),
            rule: "new".into(),
            linked_at: at,
            decided_by: None,
        }
    }
}

/// One change of a link.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = mpi_link_history)]
pub struct Change {
    pub seq: i64,
    pub patient_id: String,
    pub person_id: String,
    pub action: String,
    pub probability: f64,
    pub grade: String,
    pub rule: String,
    pub reason: String,
    pub at: i64,
    pub who: String,
}

/// A pair for a person to decide.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = mpi_reviews)]
pub struct Review {
    pub id: String,
    pub patient_id: String,
    pub other_id: String,
    pub probability: f64,
    pub grade: String,
    /// The fields compared, as JSON (see `Scored::parts`).
    pub detail: String,
    /// `open`, `same` or `different`.
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

pub fn now() -> i64 {
    crate::fhir::resource::now_micros()
}

/// A new person's id.
pub fn new_person() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id of the person a Patient is the first record of: derived from the Patient's id, so
/// that a Patient no other record matches needs no link row (most of an index: on SQLite
/// every row is the one writer's work) and keeps the same person id when a second record
/// joins it and the row is written.
pub fn own_person(patient: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, patient.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&d.as_ref()[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The person of the filed Patient `patient`: its link's, else its own (`own_person`).
pub fn person_of(conn: &mut DbConnection, patient: &str) -> Result<String, StoreError> {
    Ok(link_of(conn, patient)?.map_or_else(|| own_person(patient), |l| l.person_id))
}

pub fn link_of(conn: &mut DbConnection, patient: &str) -> Result<Option<Link>, StoreError> {
    use mpi_links::dsl as l;
    Ok(l::mpi_links
        .find(patient)
        .select(Link::as_select())
        .get_result(conn)
        .optional()?)
}

/// The links of those of `patients` that have one, by Patient.
pub fn links_of(
    conn: &mut DbConnection,
    patients: &[&str],
) -> Result<std::collections::HashMap<String, Link>, StoreError> {
    use mpi_links::dsl as l;
    let mut out = std::collections::HashMap::new();
    for chunk in patients.chunks(300) {
        let rows: Vec<Link> = l::mpi_links
            .filter(l::patient_id.eq_any(chunk))
            .select(Link::as_select())
            .load(conn)?;
        out.extend(rows.into_iter().map(|l| (l.patient_id.clone(), l)));
    }
    Ok(out)
}

/// The persons of `patients`, as (patient, person): each one's link's, else its own.
pub fn persons_of(
    conn: &mut DbConnection,
    patients: &[&str],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let mut out: std::collections::HashMap<String, String> = links_of(conn, patients)?
        .into_iter()
        .map(|(patient, link)| (patient, link.person_id))
        .collect();
    for p in patients {
        if !out.contains_key(*p) {
            out.insert(p.to_string(), own_person(p));
        }
    }
    Ok(out)
}

/// The Patients linked to `person`.
pub fn members(conn: &mut DbConnection, person: &str) -> Result<Vec<String>, StoreError> {
    use mpi_links::dsl as l;
    Ok(l::mpi_links
        .filter(l::person_id.eq(person))
        .select(l::patient_id)
        .order(l::patient_id)
        .load(conn)?)
}

/// The links of the Patients linked to `person`, by Patient id.
pub fn links_to(conn: &mut DbConnection, person: &str) -> Result<Vec<Link>, StoreError> {
    use mpi_links::dsl as l;
    Ok(l::mpi_links
        .filter(l::person_id.eq(person))
        .select(Link::as_select())
        .order(l::patient_id)
        .load(conn)?)
}

/// Whether any Patient was ever linked to `person` (one probe of the history's person
/// index): whether `person` has, or had, a golden record the MPI keeps, even one left with no
/// records.
pub fn was_a_person(conn: &mut DbConnection, person: &str) -> Result<bool, StoreError> {
    use mpi_link_history::dsl as h;
    Ok(diesel::select(diesel::dsl::exists(
        h::mpi_link_history.filter(h::person_id.eq(person)),
    ))
    .get_result(conn)?)
}

/// Write `link` (in place of the Patient's previous one), and its history row; its person's
/// golden record is stale (the person it leaves is marked by the caller, who read it).
pub fn set(
    conn: &mut DbConnection,
    link: &Link,
    action: &str,
    reason: &str,
    who: &str,
) -> Result<(), StoreError> {
    use mpi_links::dsl as l;
    // one statement, whether the Patient had a link or not
    let upsert = diesel::insert_into(l::mpi_links)
        .values(link)
        .on_conflict(l::patient_id)
        .do_update()
        .set(link);
    match conn {
        DbConnection::Pg(c) => upsert.execute(c)?,
        DbConnection::Sqlite(c) => upsert.execute(c)?,
    };
    use mpi_link_history::dsl as h;
    diesel::insert_into(h::mpi_link_history)
        .values((
            h::patient_id.eq(&link.patient_id),
            h::person_id.eq(&link.person_id),
            h::action.eq(action),
            h::probability.eq(link.probability),
            h::grade.eq(&link.grade),
            h::rule.eq(&link.rule),
            h::reason.eq(reason),
            h::at.eq(link.linked_at),
            h::who.eq(who),
        ))
        .execute(conn)?;
    super::golden::mark(conn, &link.person_id)
}

/// The history of the Patient's links, oldest first.
pub fn history(conn: &mut DbConnection, patient: &str) -> Result<Vec<Change>, StoreError> {
    use mpi_link_history::dsl as h;
    Ok(h::mpi_link_history
        .filter(h::patient_id.eq(patient))
        .order(h::seq)
        .select(Change::as_select())
        .load(conn)?)
}

/// The pair's ids in the order reviews keep them.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

pub fn review_of(conn: &mut DbConnection, a: &str, b: &str) -> Result<Option<Review>, StoreError> {
    use mpi_reviews::dsl as r;
    let (a, b) = pair(a, b);
    Ok(r::mpi_reviews
        .filter(r::patient_id.eq(a))
        .filter(r::other_id.eq(b))
        .select(Review::as_select())
        .get_result(conn)
        .optional()?)
}

/// The Patients a person decided are not the same person as `patient`.
pub fn decided_apart(
    conn: &mut DbConnection,
    patient: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    use mpi_reviews::dsl as r;
    let rows: Vec<(String, String)> = r::mpi_reviews
        .filter(r::status.eq("different"))
        .filter(r::patient_id.eq(patient).or(r::other_id.eq(patient)))
        .select((r::patient_id, r::other_id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(a, b)| if a == patient { b } else { a })
        .collect())
}

/// Put the pair (`a`, `b`) before a person, scored as `scored`; an open review is brought up
/// to date, a decided one is left as decided.
pub fn review(
    conn: &mut DbConnection,
    a: &str,
    b: &str,
    scored: &Scored,
) -> Result<(), StoreError> {
    use mpi_reviews::dsl as r;
    let detail = serde_json::to_string(&scored.parts).unwrap_or_default();
    match review_of(conn, a, b)? {
        Some(open) if open.status == "open" => {
            diesel::update(r::mpi_reviews.find(&open.id))
                .set((
                    r::probability.eq(scored.probability),
                    r::grade.eq(scored.grade.code()),
                    r::detail.eq(detail),
                ))
                .execute(conn)?;
        }
        Some(_decided) => {}
        None => {
            let (a, b) = pair(a, b);
            let row = Review {
                id: uuid::Uuid::now_v7().to_string(),
                patient_id: a.to_string(),
                other_id: b.to_string(),
                probability: scored.probability,
                grade: scored.grade.code().to_string(),
                detail,
                status: "open".into(),
                created_at: now(),
                decided_at: None,
                decided_by: None,
            };
            diesel::insert_into(r::mpi_reviews)
                .values(&row)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Close the open review of (`a`, `b`), if any: the matcher has since linked the pair.
pub fn settle(conn: &mut DbConnection, a: &str, b: &str) -> Result<(), StoreError> {
    use mpi_reviews::dsl as r;
    let (a, b) = pair(a, b);
    diesel::delete(
        r::mpi_reviews
            .filter(r::patient_id.eq(a))
            .filter(r::other_id.eq(b))
            .filter(r::status.eq("open")),
    )
    .execute(conn)?;
    Ok(())
}

/// Reviews with `status`, newest first, at most `limit`.
pub fn reviews(
    conn: &mut DbConnection,
    status: &str,
    limit: i64,
) -> Result<Vec<Review>, StoreError> {
    use mpi_reviews::dsl as r;
    Ok(r::mpi_reviews
        .filter(r::status.eq(status))
        .order(r::created_at.desc())
        .limit(limit)
        .select(Review::as_select())
        .load(conn)?)
}

pub fn review_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Review>, StoreError> {
    use mpi_reviews::dsl as r;
    Ok(r::mpi_reviews
        .find(id)
        .select(Review::as_select())
        .get_result(conn)
        .optional()?)
}

/// Record a person's decision on a review.
pub fn decide_review(
    conn: &mut DbConnection,
    id: &str,
    status: &str,
    who: &str,
) -> Result<(), StoreError> {
    use mpi_reviews::dsl as r;
    diesel::update(r::mpi_reviews.find(id))
        .set((
            r::status.eq(status),
            r::decided_at.eq(Some(now())),
            r::decided_by.eq(Some(who)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Open the review `id` again: its decision is withdrawn.
pub fn reopen_review(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    use mpi_reviews::dsl as r;
    diesel::update(r::mpi_reviews.find(id))
        .set((
            r::status.eq("open"),
            r::decided_at.eq(None::<i64>),
            r::decided_by.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// The position of the latest change of any link (0 with none): a reader that cached what
/// links said knows from it whether they still say so.
pub fn latest_change(conn: &mut DbConnection) -> Result<i64, StoreError> {
    use mpi_link_history::dsl as h;
    let seq: Option<i64> = h::mpi_link_history
        .select(diesel::dsl::max(h::seq))
        .get_result(conn)?;
    Ok(seq.unwrap_or(0))
}

/// One side of a pair whose records are two persons': the pair's record, its person, and how
/// many records that person has.
#[derive(Debug, Clone)]
pub struct Side {
    pub record: String,
    pub person: String,
    pub records: usize,
}

impl Side {
    /// The filed Patient `record`'s side: its person and that person's size.
    pub fn of(conn: &mut DbConnection, record: &str) -> Result<Side, StoreError> {
        use mpi_links::dsl as l;
        let person = person_of(conn, record)?;
        let linked: i64 = l::mpi_links
            .filter(l::person_id.eq(&person))
            .count()
            .get_result(conn)?;
        Ok(Side {
            record: record.to_string(),
            person,
            // (a record alone is its own person, with no link row)
            records: (linked as usize).max(1),
        })
    }
}

/// When the pair's records `a` and `b` belong to two persons and either has other records,
/// deciding `same` on them moves only the one record: if the persons are one, it is their
/// merge that joins the rest. The merge to ask for, `(from, into)`: the smaller person into
/// the larger, each named by the pair's record in it. None when the decision alone would do.
pub fn persons_may_be_one<'a>(a: &'a Side, b: &'a Side) -> Option<(&'a Side, &'a Side)> {
    if a.person == b.person || (a.records <= 1 && b.records <= 1) {
        return None;
    }
    Some(match a.records > b.records {
        true => (b, a),
        false => (a, b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(record: &str, person: &str, records: usize) -> Side {
        Side {
            record: record.into(),
            person: person.into(),
            records,
        }
    }

    #[test]
    fn two_persons_are_named_for_a_merge_only_when_a_decision_would_leave_records_behind() {
        // one person already, or two lone records (deciding same joins them): nothing to say
        assert!(persons_may_be_one(&side("a", "p", 2), &side("b", "p", 2)).is_none());
        assert!(persons_may_be_one(&side("a", "p", 1), &side("b", "q", 1)).is_none());
        // the smaller person into the larger, by the pair's records, either way round
        let (big, small) = (side("a", "p", 3), side("b", "q", 1));
        for (x, y) in [(&big, &small), (&small, &big)] {
            let (from, into) = persons_may_be_one(x, y).unwrap();
            assert_eq!((from.record.as_str(), into.record.as_str()), ("b", "a"));
        }
    }
}
