//! A vendor source's pages applied to a real store (issue 25, first part): each record mapped
//! by its map (data), accepted like any write and written with the page's cursor in one
//! transaction; a record that cannot be mapped waits in the exception queue, whole, with the
//! element and the JSONPath at fault, and the rest of its page goes on. Restated records are
//! not written again; a record another refers to is found by its vendor id.

use crate::helpers::{Backend, fresh_postgres_database};
use emrsync::adapters::hl7v2::zone::Zone;
use emrsync::adapters::vendor::mapping::{Context, Maps, RecordMap};
use emrsync::adapters::vendor::page::{self, Applied, Page};
use emrsync::config::{Settings, StoreArgs};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn maps() -> Maps {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({
        "patient": {
            "resourceType": "Patient", "key": "$.id",
            "identifierSystem": "https://pm.example.org/patient-id",
            "elements": [
                {"to": "/name/0/family", "from": "$.last_name", "required": true},
                {"to": "/name/0/given/0", "from": "$.first_name"},
                {"to": "/birthDate", "from": "$.dob", "date": "%m/%d/%Y"},
                {"to": "/gender", "from": "$.sex", "codes": {"M": "male", "F": "female"},
                 "otherwise": "unknown"}
            ]
        },
        "appointment": {
            "resourceType": "Appointment", "key": "$.id",
            "identifierSystem": "https://pm.example.org/appointment-id",
            "elements": [
                {"to": "/status", "from": "$.state", "codes": {"scheduled": "booked"}},
                {"to": "/participant/0/actor", "from": "$.patient_id", "reference": "patient"},
                {"to": "/participant/0/status", "value": "accepted"}
            ]
        }
    }))
    .unwrap();
    Maps::compile("pm", records).unwrap()
}

fn id_of(t: &str, system: &str, value: &str) -> String {
    emrsync::adapters::hl7v2::identity::stable_id(b"", t, &[system, value])
}

/// The settings and store of a fresh, migrated database of `backend` (SQLite in `data`).
pub fn migrated_store(
    backend: Backend,
    data: &std::path::Path,
) -> (Settings, emrsync::store::Store) {
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database()),
    };
    let mut settings = Settings::new("127.0.0.1:0", StoreArgs::new(data.into(), url));
    settings.no_shipped_terminology = true;
    settings.store.database().unwrap().migrate().unwrap();
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    (settings, store)
}

mod applies_pages {
    use super::*;
    #[test]
    fn sqlite() {
        super::applies_pages(Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::applies_pages(Backend::Postgres)
    }
}

fn applies_pages(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (settings, store) = migrated_store(backend, dir.path());
    let ingest = emrsync::startup::ingest(store.clone(), &settings).unwrap();
    let (maps, cx) = (
        maps(),
        Context {
            id_of: &id_of,
            zone: Zone::default(),
        },
    );
    let apply = |record_type: &str, records: &[Value], cursor: &str| -> Applied {
        let page = Page {
            record_type,
            records,
            cursor: Some(cursor.into()),
            also: None,
        };
        page::apply(&ingest, "pm", &maps, &cx, &page).unwrap()
    };
    let open = || store.read(|c| page::open(c, "pm", 100)).unwrap();
    let cursor = |t: &str| store.read(|c| page::cursor(c, "pm", t)).unwrap();

    let patients = [
        json!({"id": 1, "last_name": "Nguyen", "first_name": "Thi", "dob": "03/07/1961", "sex": "F"}),
        json!({"id": 2, "last_name": "Roe", "dob": "1961-03-07"}),
        json!({"id": 3, "last_name": "Okafor", "sex": "M"}),
    ];
    assert_eq!(cursor("patient"), None);
    let applied = apply("patient", &patients, "2026-12-07T08:00:00Z");
    assert_eq!((applied.accepted, applied.refused), (2, 1));
    // the page says which record was refused (the second) and where
    assert_eq!(applied.refusals.len(), 1);
    assert_eq!(
        (applied.refusals[0].0, applied.refusals[0].1.path.as_str()),
        (1, "$.dob")
    );
    let system = "https://pm.example.org/patient-id";
    let first = store
        .current("Patient", &id_of("Patient", system, "1"))
        .unwrap();
    let json = first.json();
    assert_eq!(json["birthDate"], "1961-03-07");
    assert_eq!(json["identifier"][0]["value"], "1");
    assert!(
        store
            .current("Patient", &id_of("Patient", system, "2"))
            .is_err()
    );
    assert_eq!(cursor("patient").as_deref(), Some("2026-12-07T08:00:00Z"));
    let waiting = open();
    assert_eq!(waiting.len(), 1);
    let e = &waiting[0];
    assert_eq!(
        (e.element.as_str(), e.path.as_str(), e.vendor_key.as_deref()),
        ("/birthDate", "$.dob", Some("2"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&e.record).unwrap(),
        patients[1]
    );

    // the same records again (a source that resends its last changes): nothing new is
    // written, and the refused one is not queued twice
    let again = apply("patient", &patients, "2026-12-07T08:00:00Z");
    assert_eq!(again.accepted, 2);
    assert_eq!(
        store
            .current("Patient", &id_of("Patient", system, "1"))
            .unwrap()
            .version_id,
        1
    );
    assert_eq!(open().len(), 1);

    // an appointment names its patient by the vendor's id
    let appointments = [
        json!({"id": "a-1", "state": "scheduled", "patient_id": 3}),
        json!({"id": "a-2", "state": "maybe", "patient_id": 3}),
    ];
    let applied = apply("appointment", &appointments, "page-2");
    assert_eq!((applied.accepted, applied.refused), (1, 1));
    let a = store
        .current(
            "Appointment",
            &id_of(
                "Appointment",
                "https://pm.example.org/appointment-id",
                "a-1",
            ),
        )
        .unwrap();
    assert_eq!(
        a.json()["participant"][0]["actor"]["reference"],
        format!("Patient/{}", id_of("Patient", system, "3"))
    );
    assert_eq!(cursor("appointment").as_deref(), Some("page-2"));
    assert_eq!(cursor("patient").as_deref(), Some("2026-12-07T08:00:00Z"));
    assert_eq!(open().len(), 2);
}

/// The shipped source definitions load, and the practice-management API's maps make valid
/// FHIR of records in its shape: every record accepted, the appointment and the lab result
/// about the patient the vendor's id names.
#[test]
fn the_shipped_practice_api_definition_maps_its_records_into_valid_fhir() {
    use emrsync::adapters::vendor::source::Source;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("capability/sources");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let s = Source::load(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded.push(s.definition.name.clone());
        }
    }
    assert!(loaded.contains(&"practice-api".to_string()), "{loaded:?}");
    let source = Source::load(&dir.join("practice-api.json")).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let mut settings = Settings::new("127.0.0.1:0", StoreArgs::new(tmp.path().into(), None));
    settings.no_shipped_terminology = true;
    settings.store.database().unwrap().migrate().unwrap();
    let store = emrsync::store::Store::open(&settings.store_settings().unwrap()).unwrap();
    let ingest = emrsync::startup::ingest(store.clone(), &settings).unwrap();
    let records = json!({
        "patient": [
            {"id": 77001, "chart_id": "CH-1", "first_name": "Thi", "middle_name": "Lan",
             "last_name": "Nguyen", "date_of_birth": "1961-03-07", "gender": "Female",
             "cell_phone": "(555) 010-0100", "email": "thi@example.org", "address": "1 Elm St",
             "city": "Springfield", "state": "IL", "zip_code": 62701, "deceased": false,
             "updated_at": "2026-12-07T08:00:00Z"},
            {"id": 77002, "last_name": "Roe", "gender": "", "updated_at": "2026-12-07T08:00:01Z"}
        ],
        "appointment": [
            {"id": 9001, "patient": 77001, "scheduled_time": "2026-12-08T09:30:00",
             "duration": "30", "status": "Confirmed", "reason": "Follow-up",
             "updated_at": "2026-12-07T08:01:00Z"},
            {"id": 9002, "patient": 77002, "scheduled_time": "2026-12-08T10:00:00-0600",
             "status": "", "updated_at": "2026-12-07T08:01:01Z"}
        ],
        "lab_result": [
            {"id": "L-1", "patient": 77001, "test_code": "2345-7", "test_name": "Glucose",
             "value": "105", "unit": "mg/dL", "abnormal_flag": "H", "status": "final",
             "collected_at": "2026-12-07T07:15:00", "updated_at": "2026-12-07T08:02:00Z"}
        ]
    });
    for (record_type, list) in records.as_object().unwrap() {
        let list = list.as_array().unwrap();
        let page = Page {
            record_type,
            records: list,
            cursor: None,
            also: None,
        };
        let applied = page::in_context(&store, source.zone, |cx| {
            page::apply(&ingest, "practice-api", &source.maps, cx, &page).unwrap()
        })
        .unwrap();
        let waiting = store.read(|c| page::open(c, "practice-api", 10)).unwrap();
        assert_eq!(applied.accepted, list.len(), "{record_type}: {waiting:?}");
    }
    let key = emrsync::adapters::hl7v2::identity::secret(&store).unwrap();
    let id = |t: &str, system: &str, v: &str| {
        emrsync::adapters::hl7v2::identity::stable_id(key.as_bytes(), t, &[system, v])
    };
    let sid = |s: &str| format!("https://practice.example.org/fhir/sid/{s}");
    let patient = id("Patient", &sid("patient-id"), "77001");
    let p = store.current("Patient", &patient).unwrap().json();
    assert_eq!(p["identifier"][1]["value"], "CH-1");
    assert_eq!(p["address"][0]["postalCode"], "62701");
    assert_eq!(p["telecom"][1]["system"], "email");
    let a = store
        .current(
            "Appointment",
            &id("Appointment", &sid("appointment-id"), "9001"),
        )
        .unwrap()
        .json();
    assert_eq!(
        a["participant"][0]["actor"]["reference"],
        format!("Patient/{patient}")
    );
    assert_eq!(a["start"], "2026-12-08T09:30:00-06:00");
    let quiet = store
        .current(
            "Appointment",
            &id("Appointment", &sid("appointment-id"), "9002"),
        )
        .unwrap()
        .json();
    assert_eq!(quiet["status"], "booked");
    let o = store
        .current(
            "Observation",
            &id("Observation", &sid("lab-result-id"), "L-1"),
        )
        .unwrap()
        .json();
    assert_eq!(o["subject"]["reference"], format!("Patient/{patient}"));
    assert_eq!(o["valueQuantity"]["value"], 105);
    assert_eq!(o["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
}

mod a_record_another_source_owns_waits_and_the_rest_of_its_page_goes_in {
    use super::*;
    #[test]
    fn sqlite() {
        super::a_record_another_source_owns_waits(Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::a_record_another_source_owns_waits(Backend::Postgres)
    }
}

/// A source-of-truth rule gives patients' names to the registration system: the vendor may
/// create a Patient, but its page renaming one is refused by the store as a whole; applied
/// again record by record, the rename waits in the exception queue with the rule's words, the
/// page's other records go in and the cursor moves on (the source is not stuck on that page).
fn a_record_another_source_owns_waits(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (settings, store) = migrated_store(backend, dir.path());
    let routes: emrsync::routing::config::Routes = serde_json::from_value(json!({"truth": [{
        "domain": "adt", "resources": ["Patient"], "elements": ["name"],
        "owners": ["hl7v2 REG@GOOD HEALTH"]}]}))
    .unwrap();
    store
        .write_rows(|c| emrsync::routing::revisions::record(c, &routes, "test").map(|_| ()))
        .unwrap();
    let ingest = emrsync::startup::ingest(store.clone(), &settings).unwrap();
    let maps = maps();
    let key = emrsync::adapters::hl7v2::identity::secret(&store).unwrap();
    let id_of = |t: &str, system: &str, value: &str| {
        emrsync::adapters::hl7v2::identity::stable_id(key.as_bytes(), t, &[system, value])
    };
    let cx = Context {
        id_of: &id_of,
        zone: Zone::default(),
    };
    let apply = |records: &[Value], cursor: &str| {
        let page = Page {
            record_type: "patient",
            records,
            cursor: Some(cursor.into()),
            also: None,
        };
        page::apply(&ingest, "pm", &maps, &cx, &page).unwrap()
    };
    let first = apply(&[json!({"id": 1, "last_name": "Nguyen"})], "c1");
    assert_eq!((first.accepted, first.refused), (1, 0));
    let second = apply(
        &[
            json!({"id": 1, "last_name": "Renamed"}),
            json!({"id": 2, "last_name": "Okafor"}),
        ],
        "c2",
    );
    assert_eq!((second.accepted, second.refused), (1, 1));
    assert_eq!(second.refusals[0].0, 0);
    let system = "https://pm.example.org/patient-id";
    let one = store
        .current("Patient", &id_of("Patient", system, "1"))
        .unwrap();
    assert_eq!(
        (one.version_id, one.json()["name"][0]["family"].clone()),
        (1, json!("Nguyen"))
    );
    assert!(
        store
            .current("Patient", &id_of("Patient", system, "2"))
            .is_ok()
    );
    assert_eq!(
        store
            .read(|c| page::cursor(c, "pm", "patient"))
            .unwrap()
            .as_deref(),
        Some("c2")
    );
    let waiting = store.read(|c| page::open(c, "pm", 10)).unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(
        waiting[0].reason.contains("belongs to the 'adt' domain")
            && waiting[0].reason.contains("vendor pm"),
        "{}",
        waiting[0].reason
    );
}
