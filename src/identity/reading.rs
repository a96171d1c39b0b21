//! Reading through identity: a Patient named in a search or a Subscription filter with the
//! `:mdm` modifier (`Observation?subject:mdm=Patient/123`, the name HAPI's MDM gave it) stands
//! for its person, so the clause matches a reference to any record of that person, and to its
//! golden record. A golden record's id names its person directly.
//!
//! This widens what a clause asks, never what a caller may read: a token confined to one
//! patient keeps its compartment filter, which the expanded clause is ANDed with.

use super::links;
use crate::fhir::search::filter::Filter;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The most records one Patient expands to: a person with more is a mistake for a person to
/// look at, not a reason for a query of thousands of terms.
const MAX_RECORDS: usize = 100;

/// `patients` (Patient ids, or golden records' ids), each with every record of its person and
/// that person's golden record.
pub fn same_person(
    conn: &mut DbConnection,
    patients: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut out = BTreeSet::new();
    for p in patients {
        out.insert(p.clone());
        // a golden record's id is its person's
        let mut records = links::members(conn, p)?;
        if records.is_empty() {
            let person = links::person_of(conn, p)?;
            records = links::members(conn, &person)?;
            if !records.is_empty() {
                out.insert(person);
            }
        }
        if records.len() > MAX_RECORDS {
            tracing::warn!(
                patient = p.as_str(),
                records = records.len(),
                "a person with this many records is expanded to its first {MAX_RECORDS}"
            );
            records.truncate(MAX_RECORDS);
        }
        out.extend(records);
    }
    Ok(out.into_iter().collect())
}

/// The enterprise Patient (golden record id) of each of `patients` (Patient ids) that has one:
/// its person's golden record when the store holds it, or itself when it is one. A record no
/// other record matches has none: it is all there is to know of its person.
pub fn enterprise_patients(
    conn: &mut DbConnection,
    patients: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    use super::links::mpi_links as l;
    use crate::store::schema::resources as r;
    let mut person_of: HashMap<String, String> = HashMap::new();
    let mut golden_itself: HashSet<String> = HashSet::new();
    for chunk in patients.chunks(300) {
        let rows: Vec<(String, String)> = l::table
            .filter(l::patient_id.eq_any(chunk))
            .select((l::patient_id, l::person_id))
            .load(conn)?;
        person_of.extend(rows);
        // a golden record's id is its person's, never a linked record's
        let persons: Vec<String> = l::table
            .filter(l::person_id.eq_any(chunk))
            .select(l::person_id)
            .distinct()
            .load(conn)?;
        golden_itself.extend(persons);
    }
    let persons: Vec<&str> = person_of
        .values()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut kept: HashSet<String> = HashSet::new();
    for chunk in persons.chunks(300) {
        let rows: Vec<String> = r::table
            .filter(r::resource_type.eq("Patient"))
            .filter(r::resource_id.eq_any(chunk))
            .filter(r::deleted.eq(false))
            .select(r::resource_id)
            .load(conn)?;
        kept.extend(rows);
    }
    let mut out: HashMap<String, String> = person_of
        .into_iter()
        .filter(|(_, person)| kept.contains(person))
        .collect();
    out.extend(golden_itself.into_iter().map(|g| (g.clone(), g)));
    Ok(out)
}

/// Expand every `:mdm` clause of `filter`, however deep in chains and `_has`.
pub fn expand(conn: &mut DbConnection, filter: &mut Filter) -> Result<(), StoreError> {
    match filter {
        Filter::Clause(c) if c.through_identity => {
            let records = same_person(conn, &c.patients_named())?;
            *c = c.naming_patients(&records);
            Ok(())
        }
        Filter::Clause(_) | Filter::Compartment { .. } | Filter::Text(_) => Ok(()),
        Filter::Chain { targets, .. } => targets.iter_mut().try_for_each(|(_, f)| expand(conn, f)),
        Filter::Has { inner, .. } | Filter::Not(inner) => expand(conn, inner),
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter_mut().try_for_each(|f| expand(conn, f))
        }
    }
}

/// The MPI's answer to Subscriptions: who else a Patient is, and when links last changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Persons;

impl crate::subscriptions::dispatch::SamePerson for Persons {
    fn records(
        &self,
        conn: &mut DbConnection,
        patients: &[String],
    ) -> Result<Vec<String>, StoreError> {
        same_person(conn, patients)
    }

    fn links_version(&self, conn: &mut DbConnection) -> Result<i64, StoreError> {
        links::latest_change(conn)
    }

    fn oldest_unlinked(&self, conn: &mut DbConnection) -> Result<Option<i64>, StoreError> {
        super::linker::oldest_pending(conn)
    }
}
