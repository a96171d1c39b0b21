//! Golden records: the enterprise Patient of each person with two or more source records (and
//! of each person that once had them), its id the person's id, tagged `golden-record`, holding
//! the best-known demographics by survivorship rules that are data
//! (`capability/mpi/golden.json`), and a `link` (`seealso`) to each of its records with the
//! link's grade, probability, rule and time.
//!
//! A person of one record has none: its record is all there is to know, and a second Patient
//! write for every Patient would be most of the index's cost to the writer.
//!
//! Kept up through marks: a link change (`links::set`) and a new version of a linked record
//! mark its person stale in the same transaction; right after, the linker builds the golden
//! records of stale persons and writes them through the ingest path (validated, audited,
//! with their outbox events), clearing each mark in the transaction that writes its record. A
//! crash in between leaves the marks, and the next start finishes the work.
//!
//! Golden records are not filed in the index (a person would match its own golden record), are
//! in no source record's compartment (`fhir::search::index`), and carry no source identifier (a search or a conditional write by a source's MRN would find two
//! Patients): their identifier is the person's enterprise id.

use super::links::{self, Link};
use super::mpi::Mpi;
use crate::ingest::{Channel, Ingest, Source, restate};
use crate::store::{Actor, DbConnection, Store, StoreError, Tx};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Where golden records are tagged, and with which code.
pub const TAG_SYSTEM: &str = crate::fhir::resource::GOLDEN_TAG.0;
pub const TAG_CODE: &str = crate::fhir::resource::GOLDEN_TAG.1;
/// The system of the enterprise identifier each golden record carries (the person's id).
pub const PERSON_SYSTEM: &str = "http://emrsync.org/fhir/sid/person";
/// The extension on each `link` of a golden record: how its record came to be linked.
pub const LINK_EXTENSION: &str = "http://emrsync.org/fhir/StructureDefinition/mpi-link";
/// The system of the enterprise identifier a provider's golden record carries.
pub const PROVIDER_SYSTEM: &str = "http://emrsync.org/fhir/sid/provider";
/// The extension on a golden record of a type with no `link` element (a Practitioner): one
/// per record, naming it, with how it came to be linked.
pub const SOURCE_EXTENSION: &str = "http://emrsync.org/fhir/StructureDefinition/golden-source";
/// The source golden records are written as.
pub const SOURCE: &str = "emrsync-mpi";

pub const SHIPPED: &str = include_str!("../../capability/mpi/golden.json");

/// Persons whose golden records are built in one write.
const BATCH: i64 = 50;

diesel::table! {
    mpi_stale (person_id) {
        person_id -> Text,
        since -> BigInt,
    }
}

/// How one element of a golden record is chosen among its records'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// From the record whose source comes first in `sources`; ties to the most recent.
    MostTrusted,
    /// From the record written last.
    MostRecent,
}

/// The survivorship rules (`capability/mpi/golden.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survivorship {
    #[serde(default)]
    pub description: String,
    /// Source systems, most trusted first.
    pub sources: Vec<String>,
    /// Patient element (a choice element by its name without the type: `deceased`) -> rule.
    pub elements: BTreeMap<String, Rule>,
}

/// Elements a golden record has of its own, never copied from a record.
const OWN: [&str; 6] = ["resourceType", "id", "meta", "identifier", "link", "active"];

impl Survivorship {
    /// The rules in `text`, checked; `origin` names the text in the error.
    pub fn parse(text: &str, origin: &str) -> Result<Survivorship, String> {
        let rules: Survivorship =
            serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        rules.checked(origin)
    }

    /// These rules, if each names an element a record may have and the golden record takes
    /// from one (`origin` names them in the error).
    pub fn checked(self, origin: &str) -> Result<Survivorship, String> {
        for element in self.elements.keys() {
            let plain = !element.is_empty()
                && element.chars().all(|c| c.is_ascii_alphanumeric())
                && element.starts_with(|c: char| c.is_ascii_lowercase());
            if !plain {
                return Err(format!(
                    "{origin}: elements: '{element}' is not an element's name"
                ));
            }
            if OWN.contains(&element.as_str()) || element == "contained" {
                return Err(format!(
                    "{origin}: elements: '{element}' is the golden record's own, never copied"
                ));
            }
        }
        Ok(self)
    }

    pub fn load(path: &std::path::Path) -> Result<Survivorship, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Survivorship::parse(&text, &path.display().to_string())
    }

    pub fn shipped() -> Survivorship {
        Survivorship::parse(SHIPPED, "capability/mpi/golden.json")
            .expect("the shipped survivorship rules are valid")
    }

    /// The golden record of `person` from its `records` (none: a person left with no record,
    /// whose golden record stays, inactive, for clients that kept its id).
    pub fn build(&self, person: &str, records: &[Record]) -> Value {
        self.build_as("Patient", person, records)
    }

    /// The golden record of type `rtype` with the id `id` from its `records`: a Patient links
    /// to them (`Patient.link`); other types, which have no such element, name each in an
    /// extension (`SOURCE_EXTENSION`) with the same details.
    pub fn build_as(&self, rtype: &str, id: &str, records: &[Record]) -> Value {
        let patient = rtype == "Patient";
        let mut golden = Map::new();
        golden.insert("resourceType".into(), json!(rtype));
        golden.insert("id".into(), json!(id));
        golden.insert(
            "meta".into(),
            json!({"tag": [{"system": TAG_SYSTEM, "code": TAG_CODE, "display": "Golden record"}]}),
        );
        let system = if patient {
            PERSON_SYSTEM
        } else {
            PROVIDER_SYSTEM
        };
        golden.insert(
            "identifier".into(),
            json!([{"use": "official", "system": system, "value": id}]),
        );
        golden.insert("active".into(), json!(!records.is_empty()));
        for (element, rule) in &self.elements {
            let having: Vec<&Record> = records.iter().filter(|r| r.has(element)).collect();
            let chosen = match rule {
                Rule::MostRecent => having.iter().max_by_key(|r| (r.updated, r.id.as_str())),
                Rule::MostTrusted => having
                    .iter()
                    .min_by_key(|r| (self.rank(&r.source), std::cmp::Reverse(r.updated))),
            };
            if let Some(r) = chosen {
                for (key, value) in r.resource.iter().filter(|(k, _)| is_of(k, element)) {
                    golden.insert(key.clone(), value.clone());
                }
            }
        }
        let mut sorted: Vec<&Record> = records.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        if patient {
            let link: Vec<Value> = sorted.iter().map(|r| link_to(r)).collect();
            if !link.is_empty() {
                golden.insert("link".into(), Value::Array(link));
            }
        } else {
            let mut extension: Vec<Value> = match golden.remove("extension") {
                Some(Value::Array(copied)) => copied,
                _ => Vec::new(),
            };
            extension.extend(sorted.iter().map(|r| {
                let mut parts = link_parts(&r.link);
                parts.insert(
                    0,
                    json!({"url": "record", "valueReference": {"reference": format!("{rtype}/{}", r.id)}}),
                );
                json!({"url": SOURCE_EXTENSION, "extension": parts})
            }));
            if !extension.is_empty() {
                golden.insert("extension".into(), Value::Array(extension));
            }
        }
        Value::Object(golden)
    }

    fn rank(&self, source: &str) -> usize {
        self.sources
            .iter()
            .position(|s| s == source)
            .unwrap_or(self.sources.len())
    }
}

/// A key of a resource's JSON that is `element`: itself, a choice of it (`deceasedBoolean`
/// for `deceased`), or either's primitive extension (`_birthDate`).
fn is_of(key: &str, element: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    match key.strip_prefix(element) {
        Some("") => true,
        Some(rest) => rest.starts_with(|c: char| c.is_ascii_uppercase()),
        None => false,
    }
}

/// A golden record's link to one of its records.
fn link_to(r: &Record) -> Value {
    json!({
        "extension": [{"url": LINK_EXTENSION, "extension": link_parts(&r.link)}],
        "other": {"reference": format!("Patient/{}", r.id)},
        "type": "seealso",
    })
}

/// How a record came to be linked, as the parts of an extension.
fn link_parts(l: &Link) -> Vec<Value> {
    vec![
        json!({"url": "grade", "valueCode": l.grade}),
        json!({"url": "probability", "valueDecimal": (l.probability * 10_000.0).round() / 10_000.0}),
        json!({"url": "rule", "valueCode": l.rule}),
        json!({"url": "linked", "valueDateTime": crate::fhir::resource::instant(l.linked_at)}),
    ]
}

/// One source record of a person, as a golden record is built from it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub resource: Map<String, Value>,
    /// When its current version was written.
    pub updated: i64,
    /// The source system that wrote it.
    pub source: String,
    pub link: Link,
}

impl Record {
    fn has(&self, element: &str) -> bool {
        self.resource.keys().any(|k| is_of(k, element))
    }
}

pub use crate::fhir::resource::is_golden_record as is_golden;

/// Mark `person`'s golden record stale: its links or one of its records changed.
pub fn mark(conn: &mut DbConnection, person: &str) -> Result<(), StoreError> {
    use mpi_stale::dsl as s;
    let at = links::now();
    let upsert = diesel::insert_into(s::mpi_stale)
        .values((s::person_id.eq(person), s::since.eq(at)))
        .on_conflict(s::person_id)
        .do_update()
        .set(s::since.eq(at));
    match conn {
        DbConnection::Pg(c) => upsert.execute(c)?,
        DbConnection::Sqlite(c) => upsert.execute(c)?,
    };
    Ok(())
}

/// The stale persons, longest stale first, at most `limit`, as (person, since).
fn stale(conn: &mut DbConnection, limit: i64) -> Result<Vec<(String, i64)>, StoreError> {
    use mpi_stale::dsl as s;
    Ok(s::mpi_stale
        .order(s::since)
        .select((s::person_id, s::since))
        .limit(limit)
        .load(conn)?)
}

/// How many persons' golden records wait to be built.
pub fn backlog(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(mpi_stale::table.count().get_result(conn)?)
}

/// What one person's golden record is built from, read on a reader.
enum Plan {
    /// Write this record.
    Write(Value),
    /// Nothing to write (a person of one record, with no golden record yet; or a Patient with
    /// the person's id that is not a golden record): clear the mark.
    Skip,
}

/// The records of `person` and what its golden record should be.
fn plan(conn: &mut DbConnection, rules: &Survivorship, person: &str) -> Result<Plan, StoreError> {
    let mut linked: BTreeMap<String, Link> = links::links_to(conn, person)?
        .into_iter()
        .map(|l| (l.patient_id.clone(), l))
        .collect();
    let ids: Vec<String> = linked.keys().cloned().collect();
    let current = crate::store::versions::current(conn, "Patient", person)?;
    let existing = current.as_ref().filter(|v| !v.deleted).map(|v| v.json());
    if let Some(other) = &existing
        && !is_golden(other)
    {
        tracing::warn!(
            person,
            "a Patient that is not a golden record has this person's id; its golden record is not written"
        );
        return Ok(Plan::Skip);
    }
    let versions = crate::store::versions::current_many(conn, "Patient", &ids)?;
    let sources: BTreeMap<String, String> = {
        use super::index::mpi_people::dsl as p;
        p::mpi_people
            .filter(p::patient_id.eq_any(&ids))
            .select((p::patient_id, p::filed_by))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect()
    };
    let mut records = Vec::new();
    for v in versions.into_iter().filter(|v| !v.deleted) {
        let Some(link) = linked.remove(&v.id) else {
            continue;
        };
        let Value::Object(resource) = v.json() else {
            continue;
        };
        records.push(Record {
            source: sources.get(&v.id).cloned().unwrap_or_default(),
            updated: v.last_updated,
            id: v.id,
            resource,
            link,
        });
    }
    if records.len() < 2 && existing.is_none() {
        return Ok(Plan::Skip);
    }
    let mut golden = rules.build(person, &records);
    // a person merged into another: clients that kept its id are pointed at the survivor
    if records.is_empty()
        && let Some(into) = super::decisions::merged_into(conn, person)?
    {
        golden["link"] =
            json!([{"other": {"reference": format!("Patient/{into}")}, "type": "replaced-by"}]);
    }
    Ok(Plan::Write(golden))
}

/// The marks a write of golden records clears: each only if no later change marked it again.
struct Clear(Vec<(String, i64)>);

impl restate::Unit for Clear {
    type Done = ();
    type Seen = ();

    fn look(&self, _tx: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        clear(tx.conn, &self.0)
    }
}

fn clear(conn: &mut DbConnection, marks: &[(String, i64)]) -> Result<(), StoreError> {
    use mpi_stale::dsl as s;
    for (person, since) in marks {
        diesel::delete(s::mpi_stale.find(person).filter(s::since.eq(since))).execute(conn)?;
    }
    Ok(())
}

/// The writer golden records are written with (the MPI's and the provider registry's): the
/// MPI's own source and channel, so that the identity hooks know them for its own; `what`
/// starts the correlation id.
pub fn writer(ingest: &Ingest, what: &str) -> crate::ingest::Writer {
    ingest.writer(
        Arc::new(crate::auth::Grant::unrestricted()),
        Actor::Named(SOURCE.into()),
        Source {
            channel: Channel::Mpi,
            system: SOURCE.into(),
            reviewed_by: None,
        },
        format!("{what}-{}", uuid::Uuid::now_v7()),
    )
}

impl Mpi {
    /// Build and write the golden records of one batch of stale persons; how many were stale.
    pub fn refresh_golden(&self, ingest: &Ingest) -> Result<usize, StoreError> {
        let store: &Store = &ingest.store;
        let marks = store.read(|c| stale(c, BATCH))?;
        if marks.is_empty() {
            return Ok(0);
        }
        let plans = store.read(|c| {
            marks
                .iter()
                .map(|(person, _)| plan(c, &self.survivorship, person))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let writer = writer(ingest, "mpi-golden");
        let mut stated = Vec::new();
        for ((person, _), plan) in marks.iter().zip(plans) {
            let Plan::Write(body) = plan else { continue };
            match writer.accept(body, "Patient", false) {
                Ok(accepted) => stated.push(restate::Stated {
                    rtype: "Patient",
                    id: person.clone(),
                    body: accepted.resource,
                }),
                // a record some source wrote that no longer validates as part of a Patient
                Err(e) => {
                    tracing::error!(person, error = %e, "a golden record did not validate; not written")
                }
            }
        }
        restate::restate_all(store, &writer, &stated, &Clear(marks.clone()))?;
        Ok(marks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, source: &str, updated: i64, resource: Value) -> Record {
        let Value::Object(resource) = resource else {
            panic!()
        };
        Record {
            id: id.into(),
            resource,
            updated,
            source: source.into(),
            link: Link::alone(id, updated),
        }
    }

    #[test]
    fn each_element_comes_whole_from_the_record_its_rule_picks() {
        let mut rules = Survivorship::shipped();
        rules.sources = vec!["ehr".into(), "lab".into()];
        let ehr = record(
            "a",
            "ehr",
            1,
            json!({"name": [{"family": "Neumann"}], "birthDate": "1980-02-14",
                   "address": [{"city": "Old"}], "deceasedBoolean": false,
                   "identifier": [{"system": "urn:mrn", "value": "1"}]}),
        );
        let lab = record(
            "b",
            "lab",
            2,
            json!({"name": [{"family": "Neuman"}], "birthDate": "1980-02-15",
                   "_birthDate": {"extension": []}, "address": [{"city": "New"}]}),
        );
        let golden = rules.build("p1", &[lab.clone(), ehr.clone()]);
        assert_eq!(golden["id"], "p1");
        assert!(is_golden(&golden));
        // most trusted: the EHR's, though the lab wrote later
        assert_eq!(golden["name"][0]["family"], "Neumann");
        assert_eq!(golden["birthDate"], "1980-02-14");
        assert!(golden.get("_birthDate").is_none(), "the lab's, not chosen");
        // most recent: the lab's
        assert_eq!(golden["address"][0]["city"], "New");
        // only the EHR says it: its choice element, under its own key
        assert_eq!(golden["deceasedBoolean"], false);
        // never a source identifier: the enterprise id alone
        assert_eq!(golden["identifier"].as_array().unwrap().len(), 1);
        assert_eq!(golden["identifier"][0]["system"], PERSON_SYSTEM);
        assert_eq!(golden["identifier"][0]["value"], "p1");
        let others: Vec<&str> = golden["link"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["other"]["reference"].as_str().unwrap())
            .collect();
        assert_eq!(others, ["Patient/a", "Patient/b"]);
        assert_eq!(golden["link"][0]["type"], "seealso");
        // a person left with none: inactive, no links
        let empty = rules.build("p1", &[]);
        assert_eq!(empty["active"], false);
        assert!(empty.get("link").is_none());
    }

    #[test]
    fn rules_that_would_copy_the_golden_records_own_elements_are_refused() {
        for bad in [
            r#"{"sources": [], "elements": {"identifier": "most-recent"}}"#,
            r#"{"sources": [], "elements": {"name": "newest"}}"#,
            r#"{"sources": [], "elements": {"name[0]": "most-recent"}}"#,
            r#"{"sources": [], "elements": {}, "extra": 1}"#,
        ] {
            let e = Survivorship::parse(bad, "golden.json").unwrap_err();
            assert!(e.starts_with("golden.json"), "{e}");
        }
        assert!(is_of("deceasedDateTime", "deceased"));
        assert!(is_of("_birthDate", "birthDate"));
        assert!(!is_of("birthDateX", "birthDat"));
        assert!(!is_of("gender", "genderIdentity"));
    }
}
