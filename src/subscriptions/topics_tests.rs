//! Tests of the topic catalogue: it loads, and each topic fires on what it should and not on
//! what it should not.

use super::*;
use serde_json::json;

#[test]
fn the_catalogue_loads_and_each_topic_has_a_trigger() {
    assert!(catalogue().len() >= 12);
    for t in catalogue() {
        assert!(!t.triggers.is_empty(), "{}", t.url);
        assert!(find(&t.url).is_some());
    }
}

fn enc(status: &str, location: &str) -> Value {
    json!({"resourceType":"Encounter","status":status,"class":{"code":"IMP"},
        "subject":{"reference":"Patient/p"},
        "location":[{"location":{"reference":location}}]})
}

fn change<'a>(
    action: Action,
    previous: Option<&'a Value>,
    current: Option<&'a Value>,
) -> Change<'a> {
    Change {
        rtype: "Encounter",
        action,
        previous,
        current,
    }
}

#[test]
fn encounter_topics_fire_on_their_transitions_only() {
    let start = find("http://emrsync.org/SubscriptionTopic/encounter-start").unwrap();
    let end = find("http://emrsync.org/SubscriptionTopic/encounter-end").unwrap();
    let transfer = find("http://emrsync.org/SubscriptionTopic/encounter-transfer").unwrap();
    let planned = enc("planned", "Location/a");
    let in_a = enc("in-progress", "Location/a");
    let in_b = enc("in-progress", "Location/b");
    let done = enc("finished", "Location/b");

    assert!(start.fires(&change(Action::Create, None, Some(&in_a))));
    assert!(!start.fires(&change(Action::Create, None, Some(&planned))));
    assert!(start.fires(&change(Action::Update, Some(&planned), Some(&in_a))));
    assert!(!start.fires(&change(Action::Update, Some(&in_a), Some(&in_b))));
    assert!(transfer.fires(&change(Action::Update, Some(&in_a), Some(&in_b))));
    assert!(!transfer.fires(&change(Action::Update, Some(&in_a), Some(&in_a))));
    assert!(!transfer.fires(&change(Action::Update, Some(&in_b), Some(&done))));
    assert!(end.fires(&change(Action::Update, Some(&in_b), Some(&done))));
    assert!(!end.fires(&change(Action::Update, Some(&done), Some(&done))));
    assert!(!end.fires(&change(Action::Delete, Some(&done), None)));
}

fn fires(
    topic: &str,
    rtype: &str,
    action: Action,
    previous: Option<&Value>,
    current: Option<&Value>,
) -> bool {
    find(&format!("http://emrsync.org/SubscriptionTopic/{topic}"))
        .unwrap()
        .fires(&Change {
            rtype,
            action,
            previous,
            current,
        })
}

#[test]
fn each_topic_fires_on_what_it_should_and_not_on_what_it_should_not() {
    let lab = |status: &str| {
        json!({"resourceType":"Observation","status":status,"code":{"text":"x"},
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]})
    };
    let vital = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
        "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}]});
    let (c, u, d) = (Action::Create, Action::Update, Action::Delete);
    assert!(fires(
        "lab-result",
        "Observation",
        c,
        None,
        Some(&lab("final"))
    ));
    assert!(fires(
        "lab-result",
        "Observation",
        u,
        Some(&lab("final")),
        Some(&lab("corrected"))
    ));
    assert!(!fires(
        "lab-result",
        "Observation",
        c,
        None,
        Some(&lab("preliminary"))
    ));
    assert!(!fires("lab-result", "Observation", c, None, Some(&vital)));
    let report = json!({"resourceType":"DiagnosticReport","status":"amended","code":{"text":"x"}});
    assert!(fires(
        "lab-result",
        "DiagnosticReport",
        u,
        Some(&report),
        Some(&report)
    ));

    let problem = json!({"resourceType":"Condition","subject":{"reference":"Patient/p"},
        "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}]});
    let diagnosis = json!({"resourceType":"Condition","subject":{"reference":"Patient/p"},
        "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}]});
    assert!(fires(
        "problem-list-change",
        "Condition",
        c,
        None,
        Some(&problem)
    ));
    assert!(fires(
        "problem-list-change",
        "Condition",
        d,
        Some(&problem),
        None
    ));
    assert!(
        fires(
            "problem-list-change",
            "Condition",
            u,
            Some(&problem),
            Some(&diagnosis)
        ),
        "taken off the list"
    );
    assert!(!fires(
        "problem-list-change",
        "Condition",
        c,
        None,
        Some(&diagnosis)
    ));
    assert!(!fires(
        "problem-list-change",
        "Condition",
        d,
        Some(&diagnosis),
        None
    ));

    let order = |status: &str| json!({"resourceType":"ServiceRequest","status":status,"intent":"order","subject":{"reference":"Patient/p"}});
    assert!(fires(
        "order-placed",
        "ServiceRequest",
        c,
        None,
        Some(&order("active"))
    ));
    assert!(fires(
        "order-placed",
        "ServiceRequest",
        u,
        Some(&order("draft")),
        Some(&order("active"))
    ));
    assert!(!fires(
        "order-placed",
        "ServiceRequest",
        u,
        Some(&order("active")),
        Some(&order("active"))
    ));
    assert!(!fires(
        "order-placed",
        "ServiceRequest",
        c,
        None,
        Some(&order("draft"))
    ));

    let shot = |status: &str| json!({"resourceType":"Immunization","status":status,"vaccineCode":{"text":"x"},"patient":{"reference":"Patient/p"},"occurrenceDateTime":"2026"});
    assert!(fires(
        "immunization-recorded",
        "Immunization",
        c,
        None,
        Some(&shot("completed"))
    ));
    assert!(!fires(
        "immunization-recorded",
        "Immunization",
        c,
        None,
        Some(&shot("not-done"))
    ));

    let doc =
        |status: &str| json!({"resourceType":"DocumentReference","status":status,"content":[]});
    assert!(fires(
        "document-added",
        "DocumentReference",
        c,
        None,
        Some(&doc("current"))
    ));
    assert!(!fires(
        "document-added",
        "DocumentReference",
        c,
        None,
        Some(&doc("entered-in-error"))
    ));
    assert!(!fires(
        "document-added",
        "DocumentReference",
        u,
        Some(&doc("current")),
        Some(&doc("current"))
    ));

    let med = json!({"resourceType":"MedicationRequest","status":"active","intent":"order"});
    assert!(fires(
        "medication-change",
        "MedicationRequest",
        d,
        Some(&med),
        None
    ));
    let allergy = json!({"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/p"}});
    assert!(fires(
        "allergy-change",
        "AllergyIntolerance",
        u,
        Some(&allergy),
        Some(&allergy)
    ));
    let patient = json!({"resourceType":"Patient"});
    assert!(fires(
        "patient-demographics",
        "Patient",
        u,
        Some(&patient),
        Some(&patient)
    ));
    assert!(!fires(
        "patient-demographics",
        "Patient",
        d,
        Some(&patient),
        None
    ));
    assert!(!fires(
        "patient-demographics",
        "Observation",
        c,
        None,
        Some(&vital)
    ));
    assert!(fires(
        "resource-change",
        "Observation",
        d,
        Some(&vital),
        None
    ));
}
