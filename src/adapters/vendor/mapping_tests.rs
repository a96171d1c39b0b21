use super::*;
use serde_json::json;

fn id_of(t: &str, system: &str, value: &str) -> String {
    crate::adapters::hl7v2::identity::stable_id(b"test", t, &[system, value])
}

fn cx() -> Context<'static> {
    Context {
        id_of: &id_of,
        zone: Zone::parse("America/Chicago").unwrap(),
    }
}

/// A practice-management system's patients and appointments, as a source would declare them.
fn maps() -> Maps {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({
        "patient": {
            "resourceType": "Patient",
            "key": "$.id",
            "identifierSystem": "https://pm.example.org/patient-id",
            "elements": [
                {"to": "/name/0/family", "from": "$.last_name", "required": true},
                {"to": "/name/0/given/0", "from": "$.first_name"},
                {"to": "/birthDate", "from": "$.dob", "date": "%m/%d/%Y"},
                {"to": "/gender", "from": "$.sex",
                 "codes": {"M": "male", "F": "female"}, "otherwise": "unknown"},
                {"to": "/telecom/0/system", "value": "phone"},
                {"to": "/telecom/0/value", "from": "$.contact.phone"},
                {"to": "/active", "from": "$.is_active", "as": "boolean"}
            ]
        },
        "appointment": {
            "resourceType": "Appointment",
            "key": "$.appointment_id",
            "identifierSystem": "https://pm.example.org/appointment-id",
            "elements": [
                {"to": "/status", "from": "$.state",
                 "codes": {"scheduled": "booked", "cancelled": "cancelled", "done": "fulfilled"}},
                {"to": "/start", "from": "$.starts", "dateTime": "%Y-%m-%d %H:%M"},
                {"to": "/minutesDuration", "from": "$.length", "as": "integer"},
                {"to": "/participant/0/actor", "from": "$.patient_id", "reference": "patient"},
                {"to": "/participant/0/status", "value": "accepted"}
            ]
        }
    }))
    .unwrap();
    Maps::compile("pm", records).unwrap()
}

#[test]
fn a_patient_record_becomes_a_patient_with_its_vendor_id() {
    let record = json!({"id": 4711, "last_name": "Nguyen", "first_name": "Thi", "dob": "03/07/1961",
        "sex": "F", "contact": {"phone": "555-0100"}, "is_active": "Y"});
    let p = maps().map("patient", &record, &cx()).unwrap();
    assert_eq!(p.rtype, "Patient");
    assert_eq!(
        p.id,
        id_of("Patient", "https://pm.example.org/patient-id", "4711")
    );
    assert_eq!(
        p.body,
        json!({"resourceType": "Patient", "id": p.id,
            "identifier": [{"system": "https://pm.example.org/patient-id", "value": "4711"}],
            "name": [{"family": "Nguyen", "given": ["Thi"]}], "birthDate": "1961-03-07",
            "gender": "female", "telecom": [{"system": "phone", "value": "555-0100"}],
            "active": true})
    );
}

#[test]
fn absent_values_are_left_out_and_unknown_codes_take_the_fallback() {
    let record = json!({"id": "A-1", "last_name": "Doe", "sex": "X", "first_name": null,
        "dob": ""});
    let p = maps().map("patient", &record, &cx()).unwrap();
    assert_eq!(p.body["gender"], "unknown");
    assert!(p.body.get("birthDate").is_none());
    assert_eq!(p.body["name"], json!([{"family": "Doe"}]));
    // the constant element is there even when the mapped one beside it is not
    assert_eq!(p.body["telecom"], json!([{"system": "phone"}]));
}

#[test]
fn an_appointment_refers_to_the_patient_its_vendor_id_names() {
    let m = maps();
    let record = json!({"appointment_id": "ap-9", "state": "scheduled", "patient_id": 4711,
        "starts": "2026-07-01 09:30", "length": "20"});
    let a = m.map("appointment", &record, &cx()).unwrap();
    let patient = m
        .map("patient", &json!({"id": 4711, "last_name": "N"}), &cx())
        .unwrap();
    assert_eq!(
        a.body["participant"][0]["actor"]["reference"],
        format!("Patient/{}", patient.id)
    );
    assert_eq!(a.body["status"], "booked");
    assert_eq!(a.body["minutesDuration"], 20);
    // no offset in the vendor's time: the source's zone, summer time in July
    assert_eq!(a.body["start"], "2026-07-01T09:30:00-05:00");
}

#[test]
fn a_record_that_cannot_be_mapped_says_which_element_and_path() {
    let m = maps();
    let bad_date = json!({"id": 1, "last_name": "Roe", "dob": "1961-03-07"});
    let r = m.map("patient", &bad_date, &cx()).unwrap_err();
    assert_eq!(
        (r.element.as_str(), r.path.as_str()),
        ("/birthDate", "$.dob")
    );
    assert!(r.reason.contains("%m/%d/%Y"), "{r}");

    let no_family = json!({"id": 2, "first_name": "Ann"});
    let r = m.map("patient", &no_family, &cx()).unwrap_err();
    assert_eq!(r.element, "/name/0/family");

    let no_key = json!({"last_name": "Roe"});
    assert_eq!(m.map("patient", &no_key, &cx()).unwrap_err().element, "key");

    let unknown_state = json!({"appointment_id": 3, "state": "maybe"});
    let r = m.map("appointment", &unknown_state, &cx()).unwrap_err();
    assert!(r.reason.contains("'maybe'"), "{r}");

    let not_a_number = json!({"appointment_id": 4, "length": "twenty"});
    let r = m.map("appointment", &not_a_number, &cx()).unwrap_err();
    assert_eq!(r.element, "/minutesDuration");

    let object_for_id = json!({"appointment_id": {"nested": 1}});
    assert_eq!(
        m.map("appointment", &object_for_id, &cx())
            .unwrap_err()
            .element,
        "key"
    );
}

#[test]
fn a_path_that_finds_several_values_is_refused_not_guessed() {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({"p": {
        "resourceType": "Patient", "key": "$.id", "identifierSystem": "urn:x",
        "elements": [{"to": "/name/0/family", "from": "$.names[*].last"}]}}))
    .unwrap();
    let m = Maps::compile("s", records).unwrap();
    let r = m
        .map(
            "p",
            &json!({"id": 1, "names": [{"last": "A"}, {"last": "B"}]}),
            &cx(),
        )
        .unwrap_err();
    assert!(r.reason.contains("several"), "{r}");
    let one = m
        .map("p", &json!({"id": 1, "names": [{"last": "A"}]}), &cx())
        .unwrap();
    assert_eq!(one.body["name"][0]["family"], "A");
}

#[test]
fn mistakes_in_a_map_are_said_when_it_is_loaded() {
    let compile = |map: Value| {
        let records: BTreeMap<String, RecordMap> =
            serde_json::from_value(json!({ "p": map })).unwrap();
        Maps::compile("s", records).unwrap_err()
    };
    let base = |elements: Value| {
        json!({"resourceType": "Patient", "key": "$.id", "identifierSystem": "urn:x",
            "elements": elements})
    };
    assert!(
        compile(base(json!([{"to": "/gender", "from": "$.[oops"}]))).contains("/gender"),
        "a bad JSONPath"
    );
    assert!(compile(base(json!([{"to": "/id", "from": "$.id"}]))).contains("server's"));
    assert!(compile(base(json!([{"to": "gender", "from": "$.g"}]))).contains("gender"));
    assert!(
        compile(base(json!([{"to": "/gender"}]))).contains("either"),
        "neither from nor value"
    );
    assert!(
        compile(base(
            json!([{"to": "/generalPractitioner/0", "from": "$.gp", "reference": "doctor"}])
        ))
        .contains("no record type doctor")
    );
    assert!(
        compile(base(json!([{"to": "/telecom/99/value", "from": "$.t"}]))).contains("positions")
    );
    let mut wrong_type = base(json!([]));
    wrong_type["resourceType"] = json!("Patients");
    assert!(compile(wrong_type).contains("resource type"));
    // unknown settings are refused, not ignored
    let typo: Result<BTreeMap<String, RecordMap>, _> = serde_json::from_value(json!({"p": {
        "resourceType": "Patient", "key": "$.id", "identifierSystem": "urn:x",
        "elements": [{"to": "/gender", "from": "$.g", "code": {"M": "male"}}]}}));
    assert!(typo.is_err());
}

#[test]
fn a_list_of_date_formats_is_tried_in_order() {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({"p": {
        "resourceType": "Patient", "key": "$.id", "identifierSystem": "urn:x",
        "elements": [{"to": "/birthDate", "from": "$.dob", "date": ["%m/%d/%Y", "%Y-%m-%d"]}]}}))
    .unwrap();
    let m = Maps::compile("s", records).unwrap();
    for dob in ["03/07/1961", "1961-03-07"] {
        let p = m.map("p", &json!({"id": 1, "dob": dob}), &cx()).unwrap();
        assert_eq!(p.body["birthDate"], "1961-03-07");
    }
    let r = m
        .map("p", &json!({"id": 1, "dob": "7 March 1961"}), &cx())
        .unwrap_err();
    assert!(r.reason.contains("%m/%d/%Y or %Y-%m-%d"), "{r}");
}

#[test]
fn a_template_is_placed_only_with_its_value_and_a_default_without() {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({"p": {
        "resourceType": "Patient", "key": "$.id", "identifierSystem": "urn:x",
        "elements": [
            {"to": "/telecom/0", "from": "$.cell", "template": {"system": "phone", "use": "mobile", "value": "{}"}},
            {"to": "/gender", "from": "$.sex", "codes": {"M": "male"}, "default": "unknown"}
        ]}}))
    .unwrap();
    let m = Maps::compile("s", records).unwrap();
    let with = m
        .map("p", &json!({"id": 1, "cell": "555", "sex": "M"}), &cx())
        .unwrap();
    assert_eq!(
        with.body["telecom"],
        json!([{"system": "phone", "use": "mobile", "value": "555"}])
    );
    assert_eq!(with.body["gender"], "male");
    let without = m.map("p", &json!({"id": 1}), &cx()).unwrap();
    assert!(without.body.get("telecom").is_none());
    assert_eq!(without.body["gender"], "unknown");
}

#[test]
fn a_time_with_its_own_offset_keeps_it() {
    let records: BTreeMap<String, RecordMap> = serde_json::from_value(json!({"e": {
        "resourceType": "Encounter", "key": "$.id", "identifierSystem": "urn:x",
        "elements": [{"to": "/period/start", "from": "$.at", "dateTime": "%Y-%m-%dT%H:%M:%S%z"}]}}))
    .unwrap();
    let m = Maps::compile("s", records).unwrap();
    let e = m
        .map(
            "e",
            &json!({"id": 1, "at": "2026-01-05T08:00:00+0100"}),
            &cx(),
        )
        .unwrap();
    assert_eq!(e.body["period"]["start"], "2026-01-05T08:00:00+01:00");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            "[0-9/ :-]{0,16}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("last_name".to_string()),
                        Just("dob".to_string()),
                        Just("sex".to_string()),
                        Just("contact".to_string()),
                        Just("phone".to_string()),
                        Just("patient_id".to_string()),
                        Just("starts".to_string()),
                        Just("length".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Whatever a vendor sends, a record is mapped or refused with a reason: never a
        // panic, and what is mapped carries the record's vendor id.
        #[test]
        fn any_record_is_mapped_or_refused(record in value()) {
            let m = maps();
            for record_type in ["patient", "appointment"] {
                match m.map(record_type, &record, &cx()) {
                    Ok(s) => {
                        prop_assert!(s.body["identifier"][0]["value"].is_string());
                        prop_assert_eq!(&s.body["id"], &Value::String(s.id.clone()));
                    }
                    Err(r) => prop_assert!(!r.reason.is_empty()),
                }
            }
        }
    }
}
